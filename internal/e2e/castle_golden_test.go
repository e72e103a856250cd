package e2e_test

import (
	"testing"
	"time"

	"github.com/moat-dev/moat/internal/stacktest"
)

// TestCastleResponsesGolden pins the bodies of Castle's routes as the
// official SDKs read them (testdata/castle; -update rewrites them): risk,
// filter and authenticate, the devices API and its commands, reviews and
// impersonation. Ids, times and tokens are masked.
func TestCastleResponsesGolden(t *testing.T) {
	s := stacktest.New(t, stacktest.Options{})
	a := stacktest.Secret("app-a")
	ctx := `"context":{"ip":"203.0.113.9","headers":{"User-Agent":"` + chromeUA + `","Accept-Language":"en-US","Accept":"*/*"}}`
	code, risk := s.Post("/v1/risk", a, `{"type":"$login","status":"$succeeded","user":{"id":"gina","email":"gina@example.com"},"request_token":"rt-g1",`+ctx+`}`)
	if code != 201 {
		t.Fatalf("risk: %d %s", code, risk)
	}
	token := loginRisk(t, s, a, "gina", chromeUA, "").Device.Token
	names := map[string]string{token: "device token"}
	goldenIn(t, "castle", "risk", risk, names)
	code, expanded := s.Post("/v1/risk", a, `{"type":"$login","status":"$succeeded","user":{"id":"gina"},"request_token":"rt-g2","expand":["all"],`+ctx+`}`)
	if code != 201 {
		t.Fatalf("risk expanded: %d %s", code, expanded)
	}
	goldenIn(t, "castle", "risk_expanded", expanded, names)
	code, filter := s.Post("/v1/filter", a, `{"type":"$registration","status":"$attempted","params":{"email":"new@example.com"},"request_token":"rt-g3",`+ctx+`}`)
	if code != 201 {
		t.Fatalf("filter: %d %s", code, filter)
	}
	goldenIn(t, "castle", "filter", filter, names)
	code, auth := s.Post("/v1/authenticate", a, `{"event":"$login.succeeded","user_id":"gina",`+ctx+`}`)
	if code != 201 {
		t.Fatalf("authenticate: %d %s", code, auth)
	}
	goldenIn(t, "castle", "authenticate", auth, names)

	s.WaitCount(20*time.Second, 1, "SELECT count() FROM devices_state WHERE app_id = 'app-a' AND user_id = 'gina'")
	for _, c := range []struct{ method, path, name string }{
		{"GET", "/v1/users/gina/devices?cid=nope", "devices"},
		{"GET", "/v1/devices/" + token, "device"},
		{"PUT", "/v1/devices/" + token + "/approve", "approve"},
		{"PUT", "/v1/devices/" + token + "/report", "report"},
		{"PUT", "/v1/users/gina/archive_devices", "archive_devices"},
		{"GET", "/v1/devices/" + token, "device_after_archive"},
		{"GET", "/v1/devices/nope", "not_found"},
		{"GET", "/v1/users/gina/devices", "unauthorized"},
	} {
		secret := a
		if c.name == "unauthorized" {
			secret = "wrong"
		}
		_, body := s.Do(c.method, c.path, secret, "")
		goldenIn(t, "castle", c.name, body, names)
	}
	if code, body := s.Do("PUT", "/v1/users/gina/recover", a, ""); code != 204 || body != "" {
		t.Errorf("recover: %d %q", code, body)
	}
	imp := `{"user_id":"gina","properties":{"impersonator":"support@example.com"},"context":{"ip":"203.0.113.1","user_agent":"` + chromeUA + `"}}`
	for _, m := range []string{"POST", "DELETE"} {
		_, body := s.Do(m, "/v1/impersonate", a, imp)
		goldenIn(t, "castle", "impersonate_"+m, body, names)
	}
}
