package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/moat-dev/moat/internal/stacktest"
	"github.com/moat-dev/moat/schemas"
	"github.com/moat-dev/moat/scorer/risk"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestListPoliciesThroughRisk: an app's policy denies IPs on its blocklist
// and allows devices on its allowlist, end to end: lists are managed with
// Castle's Lists API, and /v1/risk answers from the scorer, which looks
// the event up in the lists as of scoring time and records the matched
// item in the decision.
func TestListPoliciesThroughRisk(t *testing.T) {
	s := stacktest.New(t, stacktest.Options{})
	b := stacktest.Secret("app-b")
	create := func(path, body string) string {
		t.Helper()
		code, resp := s.Post(path, b, body)
		var r struct{ ID string }
		if err := json.Unmarshal([]byte(resp), &r); code != 201 || err != nil || r.ID == "" {
			t.Fatalf("POST %s: %d %s", path, code, resp)
		}
		return r.ID
	}
	blocked := create("/v1/lists", `{"name":"Blocked IPs","color":"$red","primary_field":"ip.value"}`)
	trusted := create("/v1/lists", `{"name":"Trusted devices","color":"$green","primary_field":"device.fingerprint"}`)

	// The app's policy names the lists by id (as an apps file would); the
	// scorer picks it up on restart.
	s.StopScorer()
	s.SetPolicies(map[string]*risk.Policy{"app-b": risk.NewPolicy("app-b-policy", "App B policy", risk.ActionAllow,
		risk.Rule{ID: "deny-blocked-ips", Name: "Deny blocked IPs", Action: risk.ActionDeny, Hard: true,
			InList: []risk.ListCond{{ListID: blocked}}},
		risk.Rule{ID: "allow-trusted-devices", Name: "Allow trusted devices", Action: risk.ActionAllow,
			InList: []risk.ListCond{{ListID: trusted, Field: schemas.ListFieldDeviceFingerprint}}},
		risk.Rule{ID: "challenge-logins", Name: "Challenge other logins", Action: risk.ActionChallenge, Types: []string{"$login"}},
	)})
	s.StartScorer()
	s.WaitScorer()

	type verdict struct {
		Policy struct{ Action, Name string } `json:"policy"`
		Device struct{ Fingerprint string }  `json:"device"`
	}
	n := 0
	login := func(secret string) (verdict, string) {
		t.Helper()
		n++
		token := fmt.Sprintf("lists-%d", n)
		code, resp := s.Post("/v1/risk", secret, riskBody("lena", token, ""))
		var v verdict
		if err := json.Unmarshal([]byte(resp), &v); code != 201 || err != nil {
			t.Fatalf("risk: %d %s", code, resp)
		}
		return v, token
	}
	v, _ := login(b)
	if v.Policy.Action != "challenge" || v.Policy.Name != "Challenge other logins" || v.Device.Fingerprint == "" {
		t.Fatalf("unlisted login: %+v", v)
	}
	// Trust the device: the next login from it is allowed.
	trustedItem := create("/v1/lists/"+trusted+"/items", `{"primary_value":"`+v.Device.Fingerprint+`","author":{"type":"$analyst_email","identifier":"ana@example.com"}}`)
	if v, _ = login(b); v.Policy.Action != "allow" || v.Policy.Name != "Allow trusted devices" {
		t.Errorf("trusted device: %+v", v)
	}
	// Block its network: the hard deny rule wins over the allowlist.
	item := create("/v1/lists/"+blocked+"/items", `{"primary_value":"203.0.113.0/24","comment":"abuse","author":{"type":"$analyst_email","identifier":"ana@example.com"}}`)
	v, denied := login(b)
	if v.Policy.Action != "deny" || v.Policy.Name != "Deny blocked IPs" {
		t.Errorf("blocked network: %+v", v)
	}
	// Another app's calls are not looked up in app b's lists, nor can it
	// read them.
	if v, _ := login(stacktest.Secret("app-a")); v.Policy.Action == "deny" {
		t.Errorf("app a denied by app b's blocklist: %+v", v)
	}
	if code, resp := s.Do("GET", "/v1/lists/"+blocked, stacktest.Secret("app-a"), ""); code != 404 || !strings.Contains(resp, `"type":"not_found"`) {
		t.Errorf("app a reads app b's list: %d %s", code, resp)
	}
	// Archiving the block lifts it.
	if code, resp := s.Do("DELETE", "/v1/lists/"+blocked+"/items/"+item+"/archive", b, ""); code != 200 {
		t.Fatalf("archive: %d %s", code, resp)
	}
	if v, _ = login(b); v.Policy.Action != "allow" {
		t.Errorf("after the block was archived: %+v", v)
	}

	// The denied decision on the log names the list item that matched.
	dec := decisionOf(t, s, denied)
	want := []schemas.ListMatch{{ListID: blocked, ItemID: item, Field: schemas.ListFieldIPValue},
		{ListID: trusted, ItemID: trustedItem, Field: schemas.ListFieldDeviceFingerprint}}
	if len(dec.Lists) != 2 || dec.Lists[0] != want[0] || dec.Lists[1] != want[1] || dec.Action != "deny" {
		t.Errorf("decision lists %+v action %s, want %+v", dec.Lists, dec.Action, want)
	}
	// And so does its row in ClickHouse.
	q := fmt.Sprintf("SELECT count() FROM events FINAL WHERE app_id = 'app-b' AND request_token = '%s' AND list_ids = ['%s', '%s'] AND list_item_ids = ['%s', '%s'] AND list_fields = ['%s', '%s']",
		denied, blocked, trusted, item, trustedItem, schemas.ListFieldIPValue, schemas.ListFieldDeviceFingerprint)
	s.WaitCount(20*time.Second, 1, q)
}

// decisionOf reads the decision of the call with request token token from
// the decisions topic.
func decisionOf(t *testing.T, s *stacktest.Stack, token string) schemas.Decision {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(s.Kafka.Brokers...), kgo.ConsumeTopics(schemas.TopicDecisions),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		fs := cl.PollFetches(ctx)
		cancel()
		var found *schemas.Decision
		fs.EachRecord(func(r *kgo.Record) {
			var d schemas.Decision
			if json.Unmarshal(r.Value, &d) == nil && d.Event.Context.RequestToken == token {
				found = &d
			}
		})
		if found != nil {
			return *found
		}
	}
	t.Fatalf("no decision for %s", token)
	return schemas.Decision{}
}
