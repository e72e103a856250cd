package api_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/moat-dev/moat/api"
	"github.com/moat-dev/moat/ingest"
	"github.com/moat-dev/moat/internal/apps"
	"github.com/moat-dev/moat/internal/httpapi"
	"github.com/moat-dev/moat/internal/kafka"
	"github.com/moat-dev/moat/internal/privacy"
	"github.com/moat-dev/moat/schemas"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// privacyEnv is the api role's privacy routes on a kfake broker, with a
// registry of its own and a second one, as another api instance would
// run it. (The ClickHouse side, $email deletes and exports are covered by
// internal/e2e.)
type privacyEnv struct {
	t       *testing.T
	logs    *lockedBuffer
	cluster *kfake.Cluster
	kcfg    kafka.Config
	url     string
	other   *privacy.Registry // another instance's registry
}

const secretUserID = "user-7f3a-secret-id"

func newPrivacyEnv(t *testing.T) *privacyEnv {
	t.Helper()
	logs := &lockedBuffer{}
	log := testLog(logs)
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	kcfg := kafka.Config{Brokers: cluster.ListenAddrs(), Partitions: 3, ReplicationFactor: 1, Retention: 24 * time.Hour}
	cl, err := kgo.NewClient(kgo.SeedBrokers(kcfg.Brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := kafka.EnsureTopics(ctx, cl, kcfg, schemas.AllTopics()...); err != nil {
		t.Fatal(err)
	}
	reg, err := apps.New([]apps.App{{ID: "shop", Secret: shopSecret}, {ID: "other", Secret: otherSecret}})
	if err != nil {
		t.Fatal(err)
	}
	h, err := privacy.NewHasher([]byte(strings.Repeat("d", 32)))
	if err != nil {
		t.Fatal(err)
	}
	registry := func() *privacy.Registry {
		r, err := privacy.NewRegistry(kcfg, h, log)
		if err != nil {
			t.Fatal(err)
		}
		run(t, r.Run)
		return r
	}
	w, err := privacy.NewWriter(kcfg, h, time.Second, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Close)
	prod, err := ingest.NewProducer(ingest.Config{Kafka: kcfg, ProduceTimeout: time.Second}, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(prod.Close)
	ech := httpapi.New(httpapi.Config{BodyLimit: 1 << 16}, log)
	ech.Use(httpapi.Authenticate(reg))
	api.NewHandler(api.NewStore(nil, "moat"), nil, prod, log).WithPrivacy(registry(), w).Routes(ech.Group(""))
	srv := httptest.NewServer(ech)
	t.Cleanup(srv.Close)
	return &privacyEnv{t: t, logs: logs, cluster: cluster, kcfg: kcfg, url: srv.URL, other: registry()}
}

func (e *privacyEnv) do(method, path, secret, body string) (int, string) {
	e.t.Helper()
	req, err := http.NewRequest(method, e.url+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if secret != "" {
		req.SetBasicAuth("", secret)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// events reads the events topic until it holds n records of the given
// kinds.
func (e *privacyEnv) events(n int, kinds ...schemas.Kind) []*kgo.Record {
	e.t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.kcfg.Brokers...), kgo.ConsumeTopics(schemas.TopicEvents),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		e.t.Fatal(err)
	}
	defer cl.Close()
	var out []*kgo.Record
	for deadline := time.Now().Add(10 * time.Second); len(out) < n && time.Now().Before(deadline); {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
			var ev schemas.Event
			if json.Unmarshal(r.Value, &ev) == nil {
				for _, k := range kinds {
					if ev.Kind == k {
						out = append(out, r)
					}
				}
			}
		})
		cancel()
	}
	return out
}

func TestPrivacyRequestsValidate(t *testing.T) {
	e := newPrivacyEnv(t)
	for _, c := range []struct {
		method, path, secret, body string
		status                     int
		typ                        string
	}{
		{"DELETE", "/v1/privacy/users", "", `{"identifier":"u1","identifier_type":"$id"}`, 401, "unauthorized"},
		{"POST", "/v1/privacy/users", "", `{"identifier":"u1","identifier_type":"$id"}`, 401, "unauthorized"},
		{"DELETE", "/v1/privacy/users/u1", "wrong-secret", ``, 401, "unauthorized"},
		{"POST", "/v1/privacy/users/u1", "", ``, 401, "unauthorized"},
		{"GET", "/v1/privacy/users/u1/export", "", ``, 401, "unauthorized"},
		{"DELETE", "/v1/privacy/users", shopSecret, `{"identifier":"u1",`, 400, "bad_request"},
		{"POST", "/v1/privacy/users", shopSecret, `not json`, 400, "bad_request"},
		{"DELETE", "/v1/privacy/users", shopSecret, ``, 400, "bad_request"},
		{"DELETE", "/v1/privacy/users", shopSecret, `{"identifier":"u1","identifier_type":"$phone"}`, 422, "invalid_parameters"},
		{"DELETE", "/v1/privacy/users", shopSecret, `{"identifier":"u1"}`, 422, "invalid_parameters"},
		{"POST", "/v1/privacy/users", shopSecret, `{"identifier":"u1","identifier_type":7}`, 422, "invalid_parameters"},
		{"DELETE", "/v1/privacy/users", shopSecret, `{"identifier_type":"$id"}`, 422, "invalid_parameters"},
		{"DELETE", "/v1/privacy/users", shopSecret, `{"identifier":"","identifier_type":"$id"}`, 422, "invalid_parameters"},
		{"DELETE", "/v1/privacy/users", shopSecret, `{"identifier":{"a":1},"identifier_type":"$id"}`, 422, "invalid_parameters"},
		{"DELETE", "/v1/privacy/users", shopSecret, `{"identifier":"not-an-email","identifier_type":"$email"}`, 422, "invalid_parameters"},
		{"DELETE", "/v1/privacy/users", shopSecret, `{"identifier":"` + strings.Repeat("x", 1025) + `","identifier_type":"$id"}`, 422, "invalid_parameters"},
		{"GET", "/v1/privacy/users/u1/export?identifier_type=$phone", shopSecret, ``, 422, "invalid_parameters"},
	} {
		code, body := e.do(c.method, c.path, c.secret, c.body)
		var eb struct{ Type, Message string }
		if err := json.Unmarshal([]byte(body), &eb); code != c.status || err != nil || eb.Type != c.typ || eb.Message == "" {
			t.Errorf("%s %s %s: %d %s, want %d %s", c.method, c.path, c.body, code, body, c.status, c.typ)
		}
	}
	// Only the valid request that follows writes a command.
	if code, body := e.do("DELETE", "/v1/privacy/users", shopSecret, `{"identifier":"u1","identifier_type":"$id"}`); code != 202 {
		t.Fatalf("%d %s", code, body)
	}
	if n := len(e.events(1, schemas.KindUserDelete, schemas.KindUserAccess)); n != 1 {
		t.Errorf("%d commands on the log, want the valid request's only", n)
	}
}

// TestPrivacyDeleteRecordsErasure: a delete answers 202 {} once the hashed
// registry record and the user.delete command (keyed like the user's
// events) are committed; another api instance's registry forgets the user
// after it synced; the user id is never logged, nor stored in the
// registry.
func TestPrivacyDeleteRecordsErasure(t *testing.T) {
	e := newPrivacyEnv(t)
	before := time.Now().Add(-time.Second)
	for _, c := range []struct{ method, path, body string }{
		{"DELETE", "/v1/privacy/users", `{"identifier":"` + secretUserID + `","identifier_type":"$id"}`},
		{"DELETE", "/v1/privacy/users/legacy-" + secretUserID, `{"sent_at":"2026-01-01T00:00:00Z"}`}, // node sends bodies on DELETE
		{"DELETE", "/v1/privacy/users", `{"identifier":42,"identifier_type":"$id"}`},                 // numeric ids
	} {
		if code, body := e.do(c.method, c.path, shopSecret, c.body); code != http.StatusAccepted || body != "{}\n" {
			t.Fatalf("%s %s: %d %q", c.method, c.path, code, body)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.other.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{secretUserID, "legacy-" + secretUserID, "42"} {
		if !e.other.Forgotten("shop", id, "", time.Now().Add(-time.Second)) {
			t.Errorf("another instance does not know %s was deleted", id)
		}
		if e.other.Forgotten("other", id, "", before) {
			t.Errorf("%s is forgotten in another app", id)
		}
		if e.other.Forgotten("shop", id, "", time.Now().Add(time.Minute)) {
			t.Errorf("data of %s after the deletion is forgotten", id)
		}
	}
	recs := e.events(3, schemas.KindUserDelete)
	if len(recs) != 3 {
		t.Fatalf("%d user.delete commands on the events topic, want 3", len(recs))
	}
	for _, r := range recs {
		var ev schemas.Event
		_ = json.Unmarshal(r.Value, &ev)
		if ev.AppID != "shop" || string(r.Key) != string(ev.Key()) || !strings.HasPrefix(string(r.Key), "shop\x00u:") || ev.ReceivedAt.Before(before) {
			t.Errorf("command %s = %+v", r.Key, ev)
		}
	}
	// (The request log names the path at debug level only.)
	for _, line := range strings.Split(e.logs.String(), "\n") {
		if strings.Contains(line, secretUserID) && !strings.Contains(line, "level=DEBUG") {
			t.Errorf("a deleted user id was logged: %s", line)
		}
	}
	if !strings.Contains(e.logs.String(), "privacy delete recorded") {
		t.Error("the deletions were not logged at all")
	}
}

func TestPrivacyAccessRequestIsRecorded(t *testing.T) {
	e := newPrivacyEnv(t)
	if code, body := e.do("POST", "/v1/privacy/users", shopSecret, `{"identifier":"Ann@Example.com","identifier_type":"$email"}`); code != 202 || body != "{}\n" {
		t.Fatalf("%d %q", code, body)
	}
	if code, body := e.do("POST", "/v1/privacy/users/u9", shopSecret, ``); code != 202 || body != "{}\n" {
		t.Fatalf("legacy: %d %q", code, body)
	}
	recs := e.events(2, schemas.KindUserAccess)
	got := map[string]bool{}
	for _, r := range recs {
		var ev schemas.Event
		_ = json.Unmarshal(r.Value, &ev)
		got[ev.AppID+"/"+ev.User.ID+"/"+ev.User.Email] = true
	}
	if len(recs) != 2 || !got["shop//ann@example.com"] || !got["shop/u9/"] {
		t.Errorf("access requests on the log: %v", got)
	}
	// An access request forgets no one.
	if e.other.Forgotten("shop", "u9", "ann@example.com", time.Now().Add(-time.Hour)) {
		t.Error("an access request deleted the user")
	}
}

// TestPrivacyDeleteWithoutBroker: when Kafka does not acknowledge, the
// answer is 503 service_unavailable and nothing is forgotten.
func TestPrivacyDeleteWithoutBroker(t *testing.T) {
	e := newPrivacyEnv(t)
	e.cluster.Close()
	start := time.Now()
	code, body := e.do("DELETE", "/v1/privacy/users", shopSecret, `{"identifier":"u1","identifier_type":"$id"}`)
	if code != http.StatusServiceUnavailable || !strings.Contains(body, `"type":"service_unavailable"`) {
		t.Fatalf("%d %s", code, body)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("the 503 took %v", d)
	}
	if e.other.Forgotten("shop", "u1", "", time.Now().Add(-time.Hour)) {
		t.Error("an unacknowledged delete was applied")
	}
}
