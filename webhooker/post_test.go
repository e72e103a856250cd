package webhooker

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/moat-dev/moat/schemas"
)

func TestPostClassifies(t *testing.T) {
	cfg := testConfig([]string{"127.0.0.1:1"})
	cfg.MaxResponseBytes = 1 << 10
	w, err := New(cfg, registry(t, testApp("a")), nil, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	other := newReceiver(t, endpointSecrets("a"), always(200))
	tests := []struct {
		name       string
		handler    http.HandlerFunc
		wantStatus int
		wantOK     bool
		retryable  bool
		retryAfter time.Duration
		errHas     string
	}{
		{"200", func(w http.ResponseWriter, r *http.Request) {}, 200, true, false, 0, ""},
		{"204 with a huge body", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(202)
			w.Write([]byte(strings.Repeat("x", 1<<20)))
		}, 202, true, false, 0, ""},
		{"500", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "boom", 500) }, 500, false, true, 0, "status 500: boom"},
		{"503 retry-after", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Retry-After", "3")
			w.WriteHeader(503)
		}, 503, false, true, 3 * time.Second, "status 503"},
		{"408", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(408) }, 408, false, true, 0, ""},
		{"429", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(429)
		}, 429, false, true, time.Second, ""},
		{"400", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(400) }, 400, false, false, 0, "status 400"},
		{"410", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(410) }, 410, false, false, 0, "status 410"},
		{"302 not followed", func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, other.srv.URL, http.StatusFound)
		}, 302, false, false, 0, "redirects are not followed"},
		{"timeout", func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body) // lets the server notice the client hanging up
			<-r.Context().Done()
		}, 0, false, true, 0, "timeout"},
	}
	n := notification("a", 1)
	body, _ := Body(&n)
	d := &schemas.WebhookDelivery{DeliveryID: "d", Notification: n}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(tc.handler)
			defer srv.Close()
			defer srv.CloseClientConnections()
			a := testApp("a", srv.URL)
			e := newEndpoint(cfg, a, a.Webhooks[0], newClient(cfg, false), newClient(cfg, true))
			start := time.Now()
			r := w.post(context.Background(), e, d, body, 1)
			if r.status != tc.wantStatus || (r.err == nil) != tc.wantOK || (r.err != nil && r.retryable != tc.retryable) || r.retryAfter != tc.retryAfter {
				t.Fatalf("got status %d err %v retryable %v retryAfter %s", r.status, r.err, r.retryable, r.retryAfter)
			}
			if tc.errHas != "" && !strings.Contains(r.err.Error(), tc.errHas) {
				t.Fatalf("err %q does not contain %q", r.err, tc.errHas)
			}
			if time.Since(start) > cfg.RequestTimeout+200*time.Millisecond {
				t.Fatalf("attempt took %s, request timeout is %s", time.Since(start), cfg.RequestTimeout)
			}
		})
	}
	if n := other.requestCount(); n != 0 {
		t.Fatalf("the redirect target got %d requests", n)
	}
	// Connection refused is retryable.
	a := testApp("a", "http://127.0.0.1:1/")
	e := newEndpoint(cfg, a, a.Webhooks[0], newClient(cfg, false), newClient(cfg, true))
	if r := w.post(context.Background(), e, d, body, 1); r.err == nil || !r.retryable {
		t.Fatalf("connection refused: err %v retryable %v", r.err, r.retryable)
	}
}

func TestBreaker(t *testing.T) {
	cfg := testConfig([]string{"x:1"})
	a := testApp("a", "http://example.com")
	e := newEndpoint(cfg, a, a.Webhooks[0], nil, nil)
	now := time.Unix(1000, 0)
	for i := 0; i < cfg.BreakerThreshold; i++ {
		ok, probe, _ := e.admit(now)
		if !ok || probe {
			t.Fatalf("attempt %d refused while closed", i)
		}
		e.report(now, false, false, "boom", 0)
	}
	if ok, _, reason := e.admit(now); ok || !strings.Contains(reason, "boom") {
		t.Fatalf("open circuit admitted (reason %q)", reason)
	}
	later := now.Add(cfg.BreakerCooldown)
	ok, probe, _ := e.admit(later)
	if !ok || !probe {
		t.Fatal("no probe after the cooldown")
	}
	if ok, _, _ := e.admit(later); ok {
		t.Fatal("second probe admitted while one is in flight")
	}
	e.report(later, true, false, "still down", 0)
	if ok, _, _ := e.admit(later.Add(time.Millisecond)); ok {
		t.Fatal("failed probe did not reopen the circuit")
	}
	later = later.Add(cfg.BreakerCooldown)
	if ok, probe, _ := e.admit(later); !ok || !probe {
		t.Fatal("no second probe")
	}
	e.report(later, true, true, "", 0)
	if ok, probe, _ := e.admit(later); !ok || probe {
		t.Fatal("successful probe did not close the circuit")
	}
	// Retry-After pauses the endpoint at once.
	e.report(later, false, false, "429", time.Minute)
	if ok, _, _ := e.admit(later.Add(59 * time.Second)); ok {
		t.Fatal("Retry-After did not pause the endpoint")
	}
}

func TestTierFor(t *testing.T) {
	cfg := DefaultConfig()
	if cfg.MaxAttempts() != 12 {
		t.Fatalf("MaxAttempts = %d, want 12", cfg.MaxAttempts())
	}
	var total time.Duration
	for _, d := range cfg.Schedule {
		total += d
	}
	if total < 20*time.Hour || total > 28*time.Hour {
		t.Fatalf("schedule spans %s, want about a day", total)
	}
	for _, tc := range []struct {
		attempts   int
		retryAfter time.Duration
		want       time.Duration
	}{
		{1, 0, 30 * time.Second},
		{2, 0, 2 * time.Minute},
		{3, 0, 10 * time.Minute},
		{11, 0, 12 * time.Hour},
		{1, 45 * time.Second, 2 * time.Minute},
		{1, 30 * time.Second, 30 * time.Second},
		{1, 48 * time.Hour, 12 * time.Hour},
	} {
		if got := cfg.tierFor(tc.attempts, tc.retryAfter); got != tc.want {
			t.Errorf("tierFor(%d, %s) = %s, want %s", tc.attempts, tc.retryAfter, got, tc.want)
		}
	}
	want := []string{
		schemas.TopicWebhookDeadLetter, schemas.TopicDeadLetter,
		"moat.webhooks.retry.30s.v1", "moat.webhooks.retry.2m.v1", "moat.webhooks.retry.10m.v1",
		"moat.webhooks.retry.30m.v1", "moat.webhooks.retry.1h.v1", "moat.webhooks.retry.2h.v1", "moat.webhooks.retry.12h.v1",
	}
	if got := cfg.Topics(); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("Topics = %v", got)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	bad := cfg
	bad.Schedule = nil
	if bad.Validate() == nil {
		t.Fatal("empty schedule accepted")
	}
}
