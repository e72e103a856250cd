package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moat-dev/moat/api"
	"github.com/moat-dev/moat/internal/apps"
	"github.com/moat-dev/moat/internal/endpoints"
	"github.com/moat-dev/moat/internal/httpapi"
	"github.com/moat-dev/moat/internal/kafka"
	"github.com/moat-dev/moat/schemas"
	"github.com/moat-dev/moat/webhooker"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

const (
	shopSecret  = "shop-api-secret-0123456789abcdef"
	otherSecret = "other-api-secret-0123456789abcde"
)

// env is the api role's endpoint routes (with their own registry table)
// and a webhooker (with its own table holding the key), as two processes
// would run them, on a kfake broker over TCP.
type env struct {
	t       *testing.T
	logs    *lockedBuffer // every log line of both processes, debug level
	url     string
	cluster *kfake.Cluster
	kcfg    kafka.Config
	prod    *kgo.Client
	worker  *webhooker.Worker
	config  *receiver // app shop's apps-file endpoint "security"
}

// lockedBuffer is an io.Writer safe for concurrent use.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if os.Getenv("API_DEBUG") != "" {
		os.Stderr.Write(p)
	}
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// testLog logs everything, at debug level, to buf.
func testLog(buf *lockedBuffer) *slog.Logger {
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func run(t *testing.T, f func(ctx context.Context) error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
}

func newEnv(t *testing.T) *env {
	t.Helper()
	logs := &lockedBuffer{}
	log := testLog(logs)
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	kcfg := kafka.Config{Brokers: cluster.ListenAddrs(), Partitions: 3, ReplicationFactor: 1, Retention: 24 * time.Hour}
	prod, err := kgo.NewClient(kgo.SeedBrokers(kcfg.Brokers...), kgo.ProducerLinger(0))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(prod.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := kafka.EnsureTopics(ctx, prod, kcfg, schemas.AllTopics()...); err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, logs: logs, cluster: cluster, kcfg: kcfg, prod: prod}
	e.config = newReceiver(t, "whsec-config-secret-of-shop")
	reg, err := apps.New([]apps.App{
		{ID: "shop", Secret: shopSecret, AllowPrivateEndpoints: true, Webhooks: []apps.Webhook{
			{ID: "security", URL: e.config.srv.URL, Secrets: []string{"whsec-config-secret-of-shop"}, AllowPrivate: true},
		}},
		{ID: "other", Secret: otherSecret},
	})
	if err != nil {
		t.Fatal(err)
	}
	key, err := endpoints.NewCipher(bytes.Repeat([]byte{42}, endpoints.KeySize))
	if err != nil {
		t.Fatal(err)
	}
	table := func(c *endpoints.Cipher) *endpoints.Table {
		tb, err := endpoints.NewTable(kcfg, c, log)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(tb.Close)
		run(t, tb.Run)
		return tb
	}

	// The api process.
	mgr, err := endpoints.NewManager(endpoints.ManagerConfig{Kafka: kcfg, ProduceTimeout: time.Second, MaxPerApp: 5}, table(nil), key, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(mgr.Close)
	ech := httpapi.New(httpapi.Config{BodyLimit: 1 << 16}, log)
	ech.Use(httpapi.Authenticate(reg))
	api.NewHandler(nil, nil, nil, log).WithEndpoints(mgr).Routes(ech.Group(""))
	srv := httptest.NewServer(ech)
	t.Cleanup(srv.Close)
	e.url = srv.URL

	// The webhooker process.
	cfg := webhooker.DefaultConfig()
	cfg.Kafka = kcfg
	cfg.Schedule = []time.Duration{100 * time.Millisecond, 200 * time.Millisecond}
	cfg.ConnectTimeout, cfg.RequestTimeout = 300*time.Millisecond, 500*time.Millisecond
	cfg.CommitInterval, cfg.ShutdownGrace = 50*time.Millisecond, time.Second
	e.worker, err = webhooker.New(cfg, reg, nil, log, webhooker.WithEndpoints(table(key)))
	if err != nil {
		t.Fatal(err)
	}
	run(t, e.worker.Run)
	return e
}

// do sends a request as the app with secret and decodes the JSON answer
// into out (when not nil).
func (e *env) do(method, path, secret, body string, out any) (int, string) {
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
	if out != nil && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			e.t.Fatalf("%s %s: %d %s: %v", method, path, res.StatusCode, b, err)
		}
	}
	return res.StatusCode, string(b)
}

// create creates an endpoint of shop and fails the test unless it is 201.
func (e *env) create(body string) api.WebhookEndpoint {
	e.t.Helper()
	var ep api.WebhookEndpoint
	if code, b := e.do("POST", "/v1/webhooks/endpoints", shopSecret, body, &ep); code != http.StatusCreated {
		e.t.Fatalf("create: %d %s", code, b)
	}
	return ep
}

// incident appends a notification of app to the incidents topic, as the
// scorer would.
func (e *env) incident(app, typ string, i int) schemas.Notification {
	e.t.Helper()
	n := schemas.Notification{V: 1, ID: fmt.Sprintf("%s-%s-%d", app, typ, i), AppID: app, Type: typ, CreatedAt: time.Now().UTC(),
		UserID: "u1", Data: json.RawMessage(fmt.Sprintf(`{"i":%d}`, i))}
	v, _ := json.Marshal(n)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.prod.ProduceSync(ctx, &kgo.Record{Topic: schemas.TopicIncidents, Key: n.Key(), Value: v}).FirstErr(); err != nil {
		e.t.Fatal(err)
	}
	return n
}

// delivery is one request a receiver got.
type delivery struct {
	typ, id, deliveryID string
	body                []byte
	castleSig, moatSig  string
}

// receiver is a webhook endpoint recording what it gets.
type receiver struct {
	srv     *httptest.Server
	mu      sync.Mutex
	secrets []string
	got     []delivery
	arrived chan delivery
}

func newReceiver(t *testing.T, secrets ...string) *receiver {
	rc := &receiver{secrets: secrets, arrived: make(chan delivery, 100)}
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var env struct {
			Type string `json:"type"`
			Data struct {
				ID string `json:"id"`
			} `json:"data"`
		}
		_ = json.Unmarshal(b, &env)
		d := delivery{typ: env.Type, id: env.Data.ID, deliveryID: r.Header.Get(webhooker.HeaderDeliveryID), body: b,
			castleSig: r.Header.Get(webhooker.HeaderCastleSignature), moatSig: r.Header.Get(webhooker.HeaderSignature)}
		rc.mu.Lock()
		rc.got = append(rc.got, d)
		rc.mu.Unlock()
		rc.arrived <- d
	}))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) count() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return len(rc.got)
}

// next waits for the next delivery and checks both signatures with the
// receiver's secrets.
// deliveryWait bounds how long a test waits for a delivery that must
// come. It is generous on purpose: CI machines are shared and slow, and
// these tests assert that deliveries arrive, not how fast (the delivery
// latency is measured by the load harness).
const deliveryWait = 20 * time.Second

func (rc *receiver) next(t *testing.T, within time.Duration) delivery {
	t.Helper()
	select {
	case d := <-rc.arrived:
		rc.mu.Lock()
		secrets := rc.secrets
		rc.mu.Unlock()
		if !webhooker.Verify(secrets[0], d.body, d.castleSig) {
			t.Errorf("X-Castle-Signature of %s does not verify", d.typ)
		}
		if err := webhooker.VerifyTimestamped(d.moatSig, d.body, time.Now(), webhooker.DefaultTolerance, secrets...); err != nil {
			t.Errorf("X-Moat-Signature of %s: %v", d.typ, err)
		}
		return d
	case <-time.After(within):
		t.Fatalf("no delivery within %s", within)
		return delivery{}
	}
}

func (rc *receiver) quietFor(t *testing.T, d time.Duration, what string) {
	t.Helper()
	n := rc.count()
	time.Sleep(d)
	if got := rc.count(); got != n {
		t.Fatalf("%s: %d unexpected deliveries", what, got-n)
	}
}

func (e *env) get(id, secret string) (int, api.WebhookEndpoint) {
	var ep api.WebhookEndpoint
	code, _ := e.do("GET", "/v1/webhooks/endpoints/"+id, secret, "", &ep)
	return code, ep
}

// TestEndpointsCRUD: create (201, the secret once), get, list, update,
// rotate and revoke, delete (204), each visible to the next read at once.
func TestEndpointsCRUD(t *testing.T) {
	e := newEnv(t)
	ep := e.create(`{"url":"https://hooks.example.com/moat?token=t","types":["$review.opened","$incident.confirmed"],"description":"SOC"}`)
	if !strings.HasPrefix(ep.ID, "ep_") || !strings.HasPrefix(ep.Secret, "whsec_") || ep.Source != api.SourceAPI || !ep.Enabled ||
		ep.Description != "SOC" || !slices.Equal(ep.Types, []string{"$incident.confirmed", "$review.opened"}) ||
		!slices.Equal(ep.SecretHints, []string{endpoints.Hint(ep.Secret)}) || ep.CreatedAt == nil || ep.UpdatedAt == nil {
		t.Fatalf("created %+v", ep)
	}
	secret := ep.Secret

	code, got := e.get(ep.ID, shopSecret)
	if code != http.StatusOK || got.URL != ep.URL || got.Secret != "" || got.Description != "SOC" {
		t.Fatalf("get right after create: %d %+v", code, got)
	}
	var list api.WebhookEndpointList
	if code, b := e.do("GET", "/v1/webhooks/endpoints", shopSecret, "", &list); code != http.StatusOK || list.TotalCount != 2 || len(list.Data) != 2 {
		t.Fatalf("list: %d %s", code, b)
	}
	if c := list.Data[0]; c.ID != "security" || c.Source != api.SourceConfig || !c.Enabled || len(c.Types) != 0 || c.CreatedAt != nil ||
		!slices.Equal(c.SecretHints, []string{endpoints.Hint("whsec-config-secret-of-shop")}) {
		t.Fatalf("config endpoint listed as %+v", c)
	}
	if list.Data[1].ID != ep.ID {
		t.Fatalf("list %+v", list.Data)
	}

	var up api.WebhookEndpoint
	code, b := e.do("PATCH", "/v1/webhooks/endpoints/"+ep.ID, shopSecret, `{"url":"https://hooks.example.com/v2","types":null,"enabled":false,"description":""}`, &up)
	if code != http.StatusOK || up.URL != "https://hooks.example.com/v2" || len(up.Types) != 0 || up.Enabled || up.Description != "" || up.Secret != "" || *up.UpdatedAt < *up.CreatedAt {
		t.Fatalf("patch: %d %s", code, b)
	}
	if _, got := e.get(ep.ID, shopSecret); got.URL != up.URL || got.Enabled {
		t.Fatalf("get after patch: %+v", got)
	}
	// Rotate: a new secret, returned once; the old one stays active second.
	var rot api.WebhookEndpoint
	if code, b := e.do("PATCH", "/v1/webhooks/endpoints/"+ep.ID, shopSecret, `{"rotate_secret":true}`, &rot); code != http.StatusOK ||
		!strings.HasPrefix(rot.Secret, "whsec_") || rot.Secret == secret || !slices.Equal(rot.SecretHints, []string{endpoints.Hint(rot.Secret), endpoints.Hint(secret)}) {
		t.Fatalf("rotate: %d %s", code, b)
	}
	var rev api.WebhookEndpoint
	if code, b := e.do("PATCH", "/v1/webhooks/endpoints/"+ep.ID, shopSecret, `{"revoke_previous_secret":true}`, &rev); code != http.StatusOK ||
		!slices.Equal(rev.SecretHints, []string{endpoints.Hint(rot.Secret)}) || rev.Secret != "" {
		t.Fatalf("revoke: %d %s", code, b)
	}

	if code, b := e.do("DELETE", "/v1/webhooks/endpoints/"+ep.ID, shopSecret, "", nil); code != http.StatusNoContent || b != "" {
		t.Fatalf("delete: %d %q", code, b)
	}
	if code, _ := e.get(ep.ID, shopSecret); code != http.StatusNotFound {
		t.Fatalf("get after delete: %d", code)
	}
	if code, _ := e.do("DELETE", "/v1/webhooks/endpoints/"+ep.ID, shopSecret, "", nil); code != http.StatusNotFound {
		t.Fatalf("second delete: %d", code)
	}
	if _, b := e.do("GET", "/v1/webhooks/endpoints", shopSecret, "", &list); list.TotalCount != 1 {
		t.Fatalf("list after delete: %s", b)
	}
}

// TestEndpointsErrors: every error status, with its JSON body.
func TestEndpointsErrors(t *testing.T) {
	e := newEnv(t)
	ep := e.create(`{"url":"https://hooks.example.com/x"}`)
	long := "https://hooks.example.com/" + strings.Repeat("a", 2048)
	cases := []struct {
		name, method, path, secret, body string
		status                           int
		typ, msg                         string
	}{
		{"no auth", "GET", "/v1/webhooks/endpoints", "", "", 401, "unauthorized", ""},
		{"bad json", "POST", "/v1/webhooks/endpoints", shopSecret, `{"url":`, 400, "bad_request", "JSON"},
		{"not an object", "POST", "/v1/webhooks/endpoints", shopSecret, `["https://x.example"]`, 400, "bad_request", "JSON"},
		{"empty body", "POST", "/v1/webhooks/endpoints", shopSecret, ``, 400, "bad_request", "JSON"},
		{"no url", "POST", "/v1/webhooks/endpoints", shopSecret, `{"types":[]}`, 422, "invalid_parameters", "url is required"},
		{"url not a string", "POST", "/v1/webhooks/endpoints", shopSecret, `{"url":5}`, 422, "invalid_parameters", "url must be a string"},
		{"ftp", "POST", "/v1/webhooks/endpoints", shopSecret, `{"url":"ftp://x.example/"}`, 422, "invalid_parameters", "http or https"},
		{"no host", "POST", "/v1/webhooks/endpoints", shopSecret, `{"url":"https:///path"}`, 422, "invalid_parameters", "no host"},
		{"relative", "POST", "/v1/webhooks/endpoints", shopSecret, `{"url":"/hook"}`, 422, "invalid_parameters", "url"},
		{"white space", "POST", "/v1/webhooks/endpoints", shopSecret, `{"url":" https://x.example/"}`, 422, "invalid_parameters", "white space"},
		{"too long", "POST", "/v1/webhooks/endpoints", shopSecret, `{"url":"` + long + `"}`, 422, "invalid_parameters", "longer than 2048"},
		{"private ip", "POST", "/v1/webhooks/endpoints", otherSecret, `{"url":"http://10.1.2.3/hook"}`, 422, "invalid_parameters", "private"},
		{"loopback v6", "POST", "/v1/webhooks/endpoints", otherSecret, `{"url":"http://[::1]:8080/hook"}`, 422, "invalid_parameters", "loopback"},
		{"localhost", "POST", "/v1/webhooks/endpoints", otherSecret, `{"url":"http://localhost:8080/hook"}`, 422, "invalid_parameters", "localhost"},
		{"metadata even when private is allowed", "POST", "/v1/webhooks/endpoints", shopSecret, `{"url":"http://169.254.169.254/latest"}`, 422, "invalid_parameters", "metadata"},
		{"unknown type", "POST", "/v1/webhooks/endpoints", shopSecret, `{"url":"https://x.example/","types":["$incident.confirmed","$nope"]}`, 422, "invalid_parameters", `types[1] "$nope"`},
		{"types not an array", "POST", "/v1/webhooks/endpoints", shopSecret, `{"url":"https://x.example/","types":"$review.opened"}`, 422, "invalid_parameters", "types must be an array"},
		{"enabled not a bool", "POST", "/v1/webhooks/endpoints", shopSecret, `{"url":"https://x.example/","enabled":"yes"}`, 422, "invalid_parameters", "enabled must be true or false"},
		{"description too long", "POST", "/v1/webhooks/endpoints", shopSecret, `{"url":"https://x.example/","description":"` + strings.Repeat("é", 513) + `"}`, 422, "invalid_parameters", "description is longer than 512"},
		{"unknown field", "POST", "/v1/webhooks/endpoints", shopSecret, `{"url":"https://x.example/","secret":"mine"}`, 422, "invalid_parameters", "secret is not a known field"},
		{"allow_private is not the tenant's to set", "POST", "/v1/webhooks/endpoints", otherSecret, `{"url":"https://x.example/","allow_private":true}`, 422, "invalid_parameters", "allow_private is not a known field"},
		{"patch typo", "PATCH", "/v1/webhooks/endpoints/" + ep.ID, shopSecret, `{"enable":false}`, 422, "invalid_parameters", "enable is not a known field"},
		{"patch bad url", "PATCH", "/v1/webhooks/endpoints/" + ep.ID, shopSecret, `{"url":"gopher://x"}`, 422, "invalid_parameters", "http or https"},
		{"patch url null", "PATCH", "/v1/webhooks/endpoints/" + ep.ID, shopSecret, `{"url":null}`, 422, "invalid_parameters", "url must be a string"},
		{"patch rotate not a bool", "PATCH", "/v1/webhooks/endpoints/" + ep.ID, shopSecret, `{"rotate_secret":1}`, 422, "invalid_parameters", "rotate_secret must be true or false"},
		{"patch bad json", "PATCH", "/v1/webhooks/endpoints/" + ep.ID, shopSecret, `nope`, 400, "bad_request", "JSON"},
		{"get unknown", "GET", "/v1/webhooks/endpoints/ep_unknown", shopSecret, "", 404, "not_found", ""},
		{"get overlong id", "GET", "/v1/webhooks/endpoints/" + strings.Repeat("x", 200), shopSecret, "", 404, "not_found", ""},
		{"patch unknown", "PATCH", "/v1/webhooks/endpoints/ep_unknown", shopSecret, `{"enabled":true}`, 404, "not_found", ""},
		{"delete unknown", "DELETE", "/v1/webhooks/endpoints/ep_unknown", shopSecret, "", 404, "not_found", ""},
		{"test unknown", "POST", "/v1/webhooks/endpoints/ep_unknown/test", shopSecret, "", 404, "not_found", ""},
		{"patch config endpoint", "PATCH", "/v1/webhooks/endpoints/security", shopSecret, `{"enabled":false}`, 409, "read_only", "apps file"},
		{"delete config endpoint", "DELETE", "/v1/webhooks/endpoints/security", shopSecret, "", 409, "read_only", "apps file"},
		{"wrong method", "PUT", "/v1/webhooks/endpoints/" + ep.ID, shopSecret, `{}`, 405, "method_not_allowed", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var body httpapi.Body
			code, raw := e.do(tc.method, tc.path, tc.secret, tc.body, &body)
			if code != tc.status || body.Type != tc.typ || !strings.Contains(body.Message, tc.msg) {
				t.Fatalf("%d %s, want %d %s containing %q", code, raw, tc.status, tc.typ, tc.msg)
			}
		})
	}
	// Private addresses are fine for an app that allows them.
	if ep := e.create(`{"url":"http://127.0.0.1:9/hook"}`); ep.URL != "http://127.0.0.1:9/hook" {
		t.Fatalf("private endpoint %+v", ep)
	}
	// The per-app limit (5 here: 2 created so far).
	for range 3 {
		e.create(`{"url":"https://hooks.example.com/more"}`)
	}
	var body httpapi.Body
	if code, raw := e.do("POST", "/v1/webhooks/endpoints", shopSecret, `{"url":"https://hooks.example.com/more"}`, &body); code != 422 || !strings.Contains(body.Message, "at most 5") {
		t.Fatalf("sixth endpoint: %d %s", code, raw)
	}
	// Nothing failed above wrote anything: 5 endpoints on the topic.
	var list api.WebhookEndpointList
	if e.do("GET", "/v1/webhooks/endpoints", shopSecret, "", &list); list.TotalCount != 6 {
		t.Fatalf("%d endpoints listed, want 5 and the apps file's", list.TotalCount)
	}
}

// TestEndpointsIsolation: an app never sees, changes, tests or deletes
// another app's endpoint: it is a 404, exactly like an unknown id.
func TestEndpointsIsolation(t *testing.T) {
	e := newEnv(t)
	ep := e.create(`{"url":"https://hooks.example.com/shop"}`)
	var unknown httpapi.Body
	e.do("GET", "/v1/webhooks/endpoints/ep_000000000000000000000000", otherSecret, "", &unknown)
	for _, r := range []struct{ method, path, body string }{
		{"GET", "/v1/webhooks/endpoints/" + ep.ID, ""},
		{"PATCH", "/v1/webhooks/endpoints/" + ep.ID, `{"url":"https://evil.example/"}`},
		{"POST", "/v1/webhooks/endpoints/" + ep.ID + "/test", ""},
		{"DELETE", "/v1/webhooks/endpoints/" + ep.ID, ""},
		{"GET", "/v1/webhooks/endpoints/security", ""},
		{"PATCH", "/v1/webhooks/endpoints/security", `{"enabled":false}`},
	} {
		var body httpapi.Body
		if code, raw := e.do(r.method, r.path, otherSecret, r.body, &body); code != http.StatusNotFound || body != unknown {
			t.Errorf("other app %s %s: %d %s", r.method, r.path, code, raw)
		}
	}
	var list api.WebhookEndpointList
	if code, raw := e.do("GET", "/v1/webhooks/endpoints", otherSecret, "", &list); code != 200 || list.TotalCount != 0 || len(list.Data) != 0 {
		t.Fatalf("other app's list: %d %s", code, raw)
	}
	if code, got := e.get(ep.ID, shopSecret); code != http.StatusOK || got.URL != "https://hooks.example.com/shop" {
		t.Fatalf("shop's endpoint after the other app's attempts: %d %+v", code, got)
	}
}

// TestEndpointSecretsNotShown: after the create and rotate answers, no
// response, no record on the topic and no log line (at debug level, of
// the api and of the webhooker signing with them) holds a secret.
func TestEndpointSecretsNotShown(t *testing.T) {
	e := newEnv(t)
	rc := newReceiver(t)
	ep := e.create(`{"url":"` + rc.srv.URL + `/s?token=urltoken"}`)
	var rot api.WebhookEndpoint
	e.do("PATCH", "/v1/webhooks/endpoints/"+ep.ID, shopSecret, `{"rotate_secret":true}`, &rot)
	secrets := []string{ep.Secret, rot.Secret}
	rc.secrets = []string{rot.Secret, ep.Secret}
	if code, b := e.do("POST", "/v1/webhooks/endpoints/"+ep.ID+"/test", shopSecret, "", nil); code != http.StatusAccepted {
		t.Fatalf("test: %d %s", code, b)
	}
	rc.next(t, deliveryWait)
	var all strings.Builder
	for _, path := range []string{"/v1/webhooks/endpoints", "/v1/webhooks/endpoints/" + ep.ID} {
		_, b := e.do("GET", path, shopSecret, "", nil)
		all.WriteString(b)
	}
	_, b := e.do("PATCH", "/v1/webhooks/endpoints/"+ep.ID, shopSecret, `{"description":"x"}`, nil)
	all.WriteString(b)
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.kcfg.Brokers...), kgo.ConsumeTopics(schemas.TopicEndpoints), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for n := 0; n < 3; {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %d records of the endpoints topic, want 3", n)
		}
		fs.EachRecord(func(r *kgo.Record) {
			n++
			all.Write(r.Value)
			all.Write(r.Key)
		})
	}
	logs := e.logs.String()
	if !strings.Contains(logs, "endpoint created") || !strings.Contains(logs, ep.ID) {
		t.Fatalf("the logs do not show the endpoint's life:\n%s", logs)
	}
	all.WriteString(logs)
	out := all.String()
	if !strings.Contains(out, "/s?token=urltoken") || !strings.Contains(out, "secret_hints") {
		t.Fatalf("nothing was read: %s", out)
	}
	if strings.Contains(logs, "urltoken") {
		t.Fatal("the endpoint url reached the logs")
	}
	for _, s := range secrets {
		if !strings.HasPrefix(s, "whsec_") || strings.Contains(out, s) || strings.Contains(out, strings.TrimPrefix(s, "whsec_")) {
			t.Fatalf("secret %s shown or stored in plaintext", endpoints.Hint(s))
		}
	}
}

// TestEndpointsDeliver: an endpoint created through the API gets signed
// incidents within a couple of seconds from a running webhooker; a types
// update filters; the test notification goes to that endpoint only; a
// delete stops deliveries.
func TestEndpointsDeliver(t *testing.T) {
	e := newEnv(t)
	rc := newReceiver(t)
	bystander := newReceiver(t)
	ep := e.create(`{"url":"` + rc.srv.URL + `/hook"}`)
	rc.secrets = []string{ep.Secret}
	by := e.create(`{"url":"` + bystander.srv.URL + `"}`)
	bystander.secrets = []string{by.Secret}
	start := time.Now()
	n := e.incident("shop", schemas.NotifyIncidentConfirmed, 1)
	e.incident("other", schemas.NotifyIncidentConfirmed, 1)
	d := rc.next(t, deliveryWait)
	t.Logf("delivered %s after the incident", time.Since(start))
	if d.typ != schemas.NotifyIncidentConfirmed || d.deliveryID != webhooker.DeliveryID("shop", ep.ID, n.ID) {
		t.Fatalf("delivery %+v", d)
	}
	bystander.next(t, deliveryWait)
	e.config.next(t, deliveryWait)

	// Types: reviews only.
	if code, b := e.do("PATCH", "/v1/webhooks/endpoints/"+ep.ID, shopSecret, `{"types":["$review.opened"]}`, nil); code != 200 {
		t.Fatalf("patch: %d %s", code, b)
	}
	e.incident("shop", schemas.NotifyIncidentConfirmed, 2)
	e.incident("shop", schemas.NotifyReviewOpened, 3)
	if d := rc.next(t, deliveryWait); d.typ != schemas.NotifyReviewOpened {
		t.Fatalf("got %s, want only the review", d.typ)
	}
	for range 2 {
		bystander.next(t, deliveryWait)
		e.config.next(t, deliveryWait)
	}
	rc.quietFor(t, 300*time.Millisecond, "a type the endpoint no longer wants")

	// The test notification: signed, to that endpoint only, although it
	// subscribed to reviews only.
	var test api.WebhookTest
	if code, b := e.do("POST", "/v1/webhooks/endpoints/"+ep.ID+"/test", shopSecret, "", &test); code != http.StatusAccepted || test.Type != schemas.NotifyWebhookTest {
		t.Fatalf("test: %d %s", code, b)
	}
	d = rc.next(t, deliveryWait)
	if d.typ != schemas.NotifyWebhookTest || d.id != test.ID || d.deliveryID != test.DeliveryID {
		t.Fatalf("test delivery %+v, answer %+v", d, test)
	}
	// The apps file's endpoint can be tested too.
	if code, b := e.do("POST", "/v1/webhooks/endpoints/security/test", shopSecret, "", &test); code != http.StatusAccepted {
		t.Fatalf("test of the config endpoint: %d %s", code, b)
	}
	if d := e.config.next(t, deliveryWait); d.typ != schemas.NotifyWebhookTest || d.id != test.ID {
		t.Fatalf("config endpoint's test delivery %+v", d)
	}
	bystander.quietFor(t, 300*time.Millisecond, "a test notification addressed elsewhere")

	// Delete: nothing more.
	if code, _ := e.do("DELETE", "/v1/webhooks/endpoints/"+ep.ID, shopSecret, "", nil); code != http.StatusNoContent {
		t.Fatal("delete failed")
	}
	e.incident("shop", schemas.NotifyReviewOpened, 4)
	bystander.next(t, deliveryWait)
	rc.quietFor(t, 300*time.Millisecond, "deleted endpoint")
	if s := e.worker.Stats(); s.DeadLettered != 0 || s.Dropped != 0 {
		t.Fatalf("webhooker stats %+v", s)
	}
}

// TestEndpointsUnavailable: without a broker, commands and reads answer
// 503 service_unavailable promptly.
func TestEndpointsUnavailable(t *testing.T) {
	e := newEnv(t)
	ep := e.create(`{"url":"https://hooks.example.com/u"}`)
	// Let the webhooker finish starting (it creates its topics) before
	// the broker goes away: its start-up is not what this test is about.
	for deadline := time.Now().Add(20 * time.Second); !strings.Contains(e.logs.String(), "webhooker started"); {
		if time.Now().After(deadline) {
			t.Fatal("the webhooker did not start")
		}
		time.Sleep(20 * time.Millisecond)
	}
	e.cluster.Close()
	for _, r := range []struct{ method, path, body string }{
		{"POST", "/v1/webhooks/endpoints", `{"url":"https://hooks.example.com/v"}`},
		{"PATCH", "/v1/webhooks/endpoints/" + ep.ID, `{"enabled":false}`},
		{"DELETE", "/v1/webhooks/endpoints/" + ep.ID, ""},
		{"GET", "/v1/webhooks/endpoints", ""},
		{"POST", "/v1/webhooks/endpoints/security/test", ""},
	} {
		start := time.Now()
		var body httpapi.Body
		code, raw := e.do(r.method, r.path, shopSecret, r.body, &body)
		if code != http.StatusServiceUnavailable || body.Type != "service_unavailable" {
			t.Errorf("%s %s: %d %s", r.method, r.path, code, raw)
		}
		if took := time.Since(start); took > 20*time.Second {
			t.Errorf("%s %s took %s", r.method, r.path, took)
		}
	}
}
