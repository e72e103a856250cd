package e2e_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/moat-dev/moat/internal/stacktest"
	"github.com/moat-dev/moat/webhooker"
)

// TestDeniedLoginRaisesSignedIncident: a policy denial of a $succeeded
// login reaches the app's endpoint as a Castle $incident.confirmed webhook
// the SDKs' verifier accepts, once per user and device.
func TestDeniedLoginRaisesSignedIncident(t *testing.T) {
	type delivery struct {
		body []byte
		sig  string
		id   string
	}
	var mu sync.Mutex
	var got []delivery
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, delivery{b, r.Header.Get("X-Castle-Signature"), r.Header.Get("X-Moat-Delivery-Id")})
		mu.Unlock()
	}))
	defer recv.Close()
	s := stacktest.New(t, stacktest.Options{WebhookURL: recv.URL})
	secret := stacktest.Secret("app-a")
	start := time.Now()
	for i, tok := range []string{"test|policy.action:deny|risk:0.97", "test|policy.action:deny|risk:0.98"} {
		code, body := s.Post("/v1/risk", secret, riskBody("mallory-victim", tok, ""))
		if code != 201 {
			t.Fatalf("call %d: %d %s", i, code, body)
		}
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n >= 1 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(time.Second) // a second (duplicate) incident would arrive now
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 {
		t.Fatalf("%d deliveries, want exactly 1 (once per user and device)", len(got))
	}
	d := got[0]
	t.Logf("incident delivered %v after the first decision", time.Since(start))
	if !webhooker.Verify(secret, d.body, d.sig) || d.id == "" {
		t.Fatalf("signature %q does not verify (delivery id %q)", d.sig, d.id)
	}
	var env struct {
		APIVersion string `json:"api_version"`
		AppID      string `json:"app_id"`
		Type       string `json:"type"`
		Data       struct {
			UserID      string `json:"user_id"`
			DeviceToken string `json:"device_token"`
			Trigger     string `json:"trigger"`
			Context     struct {
				IP string `json:"ip"`
			} `json:"context"`
		} `json:"data"`
	}
	if err := json.Unmarshal(d.body, &env); err != nil {
		t.Fatal(err)
	}
	if env.APIVersion != "v1" || env.AppID != "app-a" || env.Type != "$incident.confirmed" || env.Data.UserID != "mallory-victim" ||
		env.Data.DeviceToken == "" || env.Data.Trigger != "$login.succeeded" || env.Data.Context.IP != "203.0.113.7" {
		t.Errorf("webhook body %s", d.body)
	}
	s.WaitCount(10*time.Second, 1, "SELECT count() FROM webhook_deliveries WHERE app_id = 'app-a' AND outcome = 'delivered'")
}
