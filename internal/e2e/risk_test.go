package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/moat-dev/moat/internal/stacktest"
)

func keys(m map[string]json.RawMessage) string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return strings.Join(ks, ",")
}

func riskBody(user, token string, extra string) string {
	return fmt.Sprintf(`{"type":"$login","status":"$succeeded","user":{"id":%q,"email":"%s@example.com"},"request_token":%q,
		"context":{"ip":"203.0.113.7","headers":{"User-Agent":%q,"Accept-Language":"en"}}%s}`, user, user, token, chromeUA, extra)
}

// TestRiskFilterAuthenticateShapes checks the Castle response shapes of the
// scored calls, answered through the log by the scorer.
func TestRiskFilterAuthenticateShapes(t *testing.T) {
	s := stacktest.New(t, stacktest.Options{})
	a := stacktest.Secret("app-a")
	tests := []struct {
		name, path, body string
		status           int
		keys             string
	}{
		{"risk", "/v1/risk", riskBody("u1", "tok-1", ""), 201, "device,metrics,policy,risk,scores,signals"},
		{"filter", "/v1/filter", `{"type":"$registration","status":"$attempted","params":{"email":"x@example.com"},"request_token":"tok-2","context":{"ip":"203.0.113.8","headers":{"User-Agent":"curl/8"}}}`,
			201, "device,metrics,policy,risk,scores,signals"},
		{"authenticate", "/v1/authenticate", `{"event":"$login.succeeded","user_id":"u1","context":{"ip":"203.0.113.7","client_id":"c1","headers":{"User-Agent":"curl/8"}}}`,
			201, "action,device_token,policy,risk,risk_policy,signals,user_id"},
		{"risk expanded", "/v1/risk", riskBody("u1", "tok-3", `,"expand":["all"]`), 201,
			"authenticated,contributions,created_at,device,email,endpoint,id,ip,metrics,policy,properties,risk,scores,signals,status,type,user"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := s.Post(tt.path, a, tt.body)
			var m map[string]json.RawMessage
			if err := json.Unmarshal([]byte(body), &m); err != nil || code != tt.status {
				t.Fatalf("%d %s", code, body)
			}
			if got := keys(m); got != tt.keys {
				t.Errorf("keys %s, want %s\n%s", got, tt.keys, body)
			}
			if tt.path == "/v1/authenticate" {
				var r struct {
					Action, UserID, DeviceToken string
				}
				json.Unmarshal([]byte(body), &r)
				if r.Action == "" || !strings.Contains(body, `"user_id":"u1"`) || !strings.Contains(body, `"type":"authentication"`) {
					t.Errorf("authenticate body %s", body)
				}
				return
			}
			var r struct {
				Policy struct{ Action, ID, RevisionID string } `json:"policy"`
				Scores map[string]struct {
					Score *float64 `json:"score"`
				} `json:"scores"`
				Device struct{ Token string } `json:"device"`
			}
			json.Unmarshal([]byte(body), &r)
			if r.Policy.Action == "" || r.Policy.ID == "" || len(r.Scores) != 3 || r.Device.Token == "" {
				t.Errorf("body %s", body)
			}
			for _, k := range []string{"account_takeover", "account_abuse", "bot"} {
				if r.Scores[k].Score == nil {
					t.Errorf("no scores.%s.score in %s", k, body)
				}
			}
		})
	}
	// Scored calls are kept in the timeline like every other call, with
	// their decision.
	s.WaitEvents("app-a", uint64(len(tests)), 20*time.Second)
	if n := s.Count(`SELECT count() FROM events FINAL WHERE app_id = 'app-a' AND kind IN ('risk', 'filter', 'authenticate')
		AND action != '' AND policy_id != '' AND policy_revision_id != '' AND length(contribution_names) > 0`); n != uint64(len(tests)) {
		t.Errorf("%d decisions with action, policy and contributions in ClickHouse, want %d", n, len(tests))
	}
}

// TestRiskValidation: Castle's 422s for scored calls.
func TestRiskValidation(t *testing.T) {
	s := stacktest.New(t, stacktest.Options{NoWorkers: true})
	a := stacktest.Secret("app-a")
	for _, tt := range []struct{ name, path, body, typ string }{
		{"no token", "/v1/risk", `{"type":"$login","status":"$succeeded","user":{"id":"u"},"context":{"ip":"1.2.3.4"}}`, "invalid_request_token"},
		{"no context", "/v1/filter", `{"type":"$login","status":"$attempted","request_token":"t"}`, "invalid_parameters"},
		{"no user", "/v1/risk", `{"type":"$login","status":"$succeeded","request_token":"t","context":{"ip":"1.2.3.4"}}`, "invalid_parameters"},
	} {
		code, body := s.Post(tt.path, a, tt.body)
		if code != 422 || !strings.Contains(body, `"type":"`+tt.typ+`"`) {
			t.Errorf("%s: %d %s", tt.name, code, body)
		}
	}
	if n := s.Records("moat.events.v1"); n != 0 {
		t.Errorf("%d invalid calls reached the log", n)
	}
}

// TestTestTokensForTestAppsOnly: Castle's sandbox tokens force the
// decision for test apps and are ignored for live apps.
func TestTestTokensForTestAppsOnly(t *testing.T) {
	s := stacktest.New(t, stacktest.Options{})
	code, body := s.Post("/v1/risk", stacktest.Secret("app-a"), riskBody("u1", "test|policy.action:deny|risk:0.95", ""))
	if code != 201 || !strings.Contains(body, `"action":"deny"`) || !strings.Contains(body, `"risk":0.95`) {
		t.Errorf("test app: %d %s", code, body)
	}
	code, body = s.Post("/v1/risk", stacktest.Secret("app-b"), riskBody("u1", "test|policy.action:deny|risk:0.95", ""))
	if code != 201 || strings.Contains(body, `"action":"deny"`) {
		t.Errorf("live app honoured a test token: %d %s", code, body)
	}
}

// TestRiskDeadline stops the scorer: apps get their failover on the
// deadline, and the event is scored once the scorer is back.
func TestRiskDeadline(t *testing.T) {
	s := stacktest.New(t, stacktest.Options{})
	s.StopScorer()
	code, body := s.Post("/v1/risk", stacktest.Secret("app-b"), riskBody("u1", "t1", ""))
	if code != http.StatusServiceUnavailable || !strings.Contains(body, `"type":"service_unavailable"`) {
		t.Errorf("failover error: %d %s", code, body)
	}
	code, body = s.Post("/v1/risk", stacktest.Secret("app-c"), riskBody("u1", "t2", ""))
	if code != 201 || !strings.Contains(body, `"action":"challenge"`) || !strings.Contains(body, `"failover":true`) || !strings.Contains(body, `"failover_reason":"timeout"`) {
		t.Errorf("failover challenge: %d %s", code, body)
	}
	s.StartScorer()
	s.WaitEvents("app-b", 1, 30*time.Second)
	s.WaitEvents("app-c", 1, 30*time.Second)
}

func signalsOf(t *testing.T, body string) map[string]bool {
	t.Helper()
	var r struct {
		Signals map[string]json.RawMessage `json:"signals"`
	}
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	out := map[string]bool{}
	for k := range r.Signals {
		out[k] = true
	}
	return out
}

// TestScorerStateSurvivesRestart: the scorer learns a user's device, is
// restarted (its memory gone), restores the user from the changelog, and
// still knows the device; a different device is new.
func TestScorerStateSurvivesRestart(t *testing.T) {
	s := stacktest.New(t, stacktest.Options{})
	a := stacktest.Secret("app-a")
	login := func(user, ua, token string) map[string]bool {
		body := fmt.Sprintf(`{"type":"$login","status":"$succeeded","user":{"id":%q,"email":"alice@example.com"},"request_token":%q,
			"context":{"ip":"203.0.113.7","headers":{"User-Agent":%q,"Accept-Language":"en-US","Accept":"*/*"}}}`, user, token, ua)
		code, resp := s.Post("/v1/risk", a, body)
		if code == 201 {
			return signalsOf(t, resp)
		}
		// While a restarted scorer joins the group and restores its
		// partitions, a call can time out (503); it is scored anyway: read
		// its decision from the timeline.
		if code != 503 {
			t.Fatalf("%d %s", code, resp)
		}
		q := "SELECT count() FROM events FINAL WHERE app_id = 'app-a' AND request_token = ?"
		s.WaitCount(30*time.Second, 1, q, token)
		var sig []string
		if err := s.Conn.QueryRow(context.Background(), "SELECT signals FROM events FINAL WHERE app_id = 'app-a' AND request_token = ?", token).Scan(&sig); err != nil {
			t.Fatal(err)
		}
		out := map[string]bool{}
		for _, x := range sig {
			out[x] = true
		}
		return out
	}
	for i := 0; i < 3; i++ {
		login("alice", chromeUA, fmt.Sprintf("t%d", i))
	}
	s.StopScorer()
	s.StartScorer()
	// Wait until the new scorer answers, with another user's login.
	login("warmup", chromeUA, "t-warmup")
	firefox := "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0"
	// Only a scorer that restored alice's history can tell Firefox is new
	// to her: a user without history gets no new_* signals.
	if sig := login("alice", firefox, "t-new"); !sig["new_device"] {
		t.Errorf("a new device was not flagged after the restart (history lost?): %v", sig)
	}
	if sig := login("alice", chromeUA, "t-known"); sig["new_device"] {
		t.Errorf("a known device was flagged new after the restart: %v", sig)
	}
}

// TestReviewOpensOnChallenge: a challenged $succeeded login is a review
// the app can read back by id; another app cannot.
func TestReviewOpensOnChallenge(t *testing.T) {
	s := stacktest.New(t, stacktest.Options{})
	a := stacktest.Secret("app-a")
	code, body := s.Post("/v1/risk", a, riskBody("rita", "test|policy.action:challenge", `,"expand":["all"]`))
	var r struct {
		ID     string                  `json:"id"`
		Policy struct{ Action string } `json:"policy"`
	}
	if err := json.Unmarshal([]byte(body), &r); code != 201 || err != nil || r.Policy.Action != "challenge" || r.ID == "" {
		t.Fatalf("%d %s", code, body)
	}
	s.WaitEvents("app-a", 1, 20*time.Second)
	code, body = s.Do("GET", "/v1/reviews/"+r.ID, a, "")
	if code != 200 || !strings.Contains(body, `"user_id":"rita"`) || !strings.Contains(body, `"ip":"203.0.113.7"`) || !strings.Contains(body, `"browser":"Chrome"`) {
		t.Errorf("review: %d %s", code, body)
	}
	if code2, body2 := s.Do("GET", "/v1/reviews/"+r.ID+".json", a, ""); code2 != 200 || body2 != body {
		t.Errorf("review with .json: %d %s", code2, body2)
	}
	if code, body := s.Do("GET", "/v1/reviews/"+r.ID, stacktest.Secret("app-b"), ""); code != 404 {
		t.Errorf("app b read app a's review: %d %s", code, body)
	}
	if code, _ := s.Do("GET", "/v1/reviews/not-a-review", a, ""); code != 404 {
		t.Errorf("bad id: %d", code)
	}
}
