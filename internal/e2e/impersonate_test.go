package e2e_test

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/moat-dev/moat/internal/stacktest"
)

// TestImpersonation: while support impersonates a user, the user's events
// are kept in the timeline, marked, create no device and change no score;
// after the end, events count again.
func TestImpersonation(t *testing.T) {
	s := stacktest.New(t, stacktest.Options{})
	a := stacktest.Secret("app-a")
	firefox := "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0"
	login := func(ua, token string) map[string]bool {
		body := fmt.Sprintf(`{"type":"$login","status":"$succeeded","user":{"id":"ivy"},"request_token":%q,
			"context":{"ip":"203.0.113.7","headers":{"User-Agent":%q,"Accept-Language":"en-US"}}}`, token, ua)
		code, resp := s.Post("/v1/risk", a, body)
		if code != 201 {
			t.Fatalf("%d %s", code, resp)
		}
		return signalsOf(t, resp)
	}
	login(chromeUA, "t1")
	for _, tt := range []struct {
		method, body string
		status       int
	}{
		{"POST", `{"user_id":"ivy","properties":{"impersonator":"agent@example.com"},"context":{"ip":"198.51.100.2","user_agent":"curl/8"}}`, 200},
		{"POST", `{"properties":{}}`, 422},
		{"POST", `{"user_id":true}`, 422},
		{"POST", `not json`, 400},
	} {
		if code, resp := s.Do(tt.method, "/v1/impersonate", a, tt.body); code != tt.status {
			t.Errorf("%s %s: %d %s", tt.method, tt.body, code, resp)
		}
	}
	login(firefox, "t-imp") // the agent's browser
	if code, resp := s.Do("DELETE", "/v1/impersonate", a, `{"user_id":"ivy"}`); code != http.StatusOK || resp != `{"success":true}`+"\n" {
		t.Fatalf("end: %d %q", code, resp)
	}
	login(chromeUA, "t2")
	// The agent's browser taught the scorer nothing: it is new to ivy.
	if sig := login(firefox, "t3"); !sig["new_device"] {
		t.Errorf("the impersonator's device was learned: %v", sig)
	}
	s.WaitCount(20*time.Second, 6, "SELECT count() FROM events FINAL WHERE app_id = 'app-a' AND user_id = 'ivy'")
	if n := s.Count("SELECT count() FROM events FINAL WHERE app_id = 'app-a' AND request_token = 't-imp' AND impersonated = 1 AND device_token = ''"); n != 1 {
		t.Errorf("the impersonated login is not marked: %d", n)
	}
	// The user's own browsers are devices; the impersonated call made none
	// (t3 made Firefox one afterwards).
	s.WaitCount(10*time.Second, 2, "SELECT count() FROM devices_state WHERE app_id = 'app-a' AND user_id = 'ivy'")
}
