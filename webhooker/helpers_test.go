package webhooker

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/moat-dev/moat/internal/apps"
	"github.com/moat-dev/moat/internal/chtest"
	"github.com/moat-dev/moat/internal/kafka"
	"github.com/moat-dev/moat/schemas"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

func TestMain(m *testing.M) { chtest.Main(m) }

// newCluster starts an in-process Kafka with the incidents topic.
func newCluster(t testing.TB) []string {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, schemas.TopicIncidents))
	if err != nil {
		t.Fatalf("kfake: %v", err)
	}
	t.Cleanup(c.Close)
	return c.ListenAddrs()
}

// testConfig is a configuration with a short schedule (4 attempts within
// about half a second) and short timeouts.
func testConfig(brokers []string) Config {
	cfg := DefaultConfig()
	cfg.Kafka = kafka.Config{Brokers: brokers, Partitions: 3, ReplicationFactor: 1, Retention: 24 * time.Hour}
	cfg.Schedule = []time.Duration{50 * time.Millisecond, 100 * time.Millisecond, 200 * time.Millisecond}
	cfg.ConnectTimeout = 200 * time.Millisecond
	cfg.RequestTimeout = 300 * time.Millisecond
	cfg.BreakerThreshold = 3
	cfg.BreakerCooldown = 200 * time.Millisecond
	cfg.CommitInterval = 50 * time.Millisecond
	cfg.LogFlushInterval = 100 * time.Millisecond
	cfg.ShutdownGrace = time.Second
	return cfg
}

func testLogger(t testing.TB) *slog.Logger {
	level := slog.LevelWarn
	if os.Getenv("WEBHOOKER_DEBUG") != "" {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: level}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(p[:len(p)-1]))
	return len(p), nil
}

// running is a worker started by startWorker.
type running struct {
	w      *Worker
	cancel context.CancelFunc
	done   chan error
}

// stop cancels the worker and waits for Run to return.
func (r *running) stop(t testing.TB) {
	t.Helper()
	r.cancel()
	select {
	case err := <-r.done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	r.done = nil
}

func startWorker(t testing.TB, cfg Config, reg *apps.Registry, dl DeliveryLog, tweak ...func(*Worker)) *running {
	t.Helper()
	w, err := New(cfg, reg, dl, testLogger(t))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	for _, f := range tweak {
		f(w)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{w: w, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- w.Run(ctx) }()
	t.Cleanup(func() {
		if r.done != nil {
			r.stop(t)
		}
	})
	return r
}

// received is one request a receiver got.
type received struct {
	deliveryID string
	attempt    int
	status     int
	at         time.Time
	n          schemas.Notification // from the body: ID from data.id
	index      int                  // data.i
}

// receiver is a webhook endpoint that verifies every request's signatures
// and answers what respond says (0: hang until the client gives up).
type receiver struct {
	t       testing.TB
	srv     *httptest.Server
	secrets []string

	mu        sync.Mutex
	respond   func(n int, r *http.Request) int
	count     int
	reqs      []received
	delivered map[string]int // delivery id -> 2xx answers
	problems  []string
	arrived   chan received
}

func newReceiver(t testing.TB, secrets []string, respond func(n int, r *http.Request) int) *receiver {
	rc := &receiver{t: t, secrets: secrets, respond: respond, delivered: map[string]int{}, arrived: make(chan received, 100000)}
	rc.srv = httptest.NewServer(http.HandlerFunc(rc.serve))
	t.Cleanup(func() {
		rc.srv.CloseClientConnections()
		rc.srv.Close()
	})
	return rc
}

func (rc *receiver) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	now := time.Now()
	rc.mu.Lock()
	rc.count++
	n := rc.count
	respond := rc.respond
	if err != nil {
		rc.problems = append(rc.problems, "read body: "+err.Error())
	}
	if !Verify(rc.secrets[0], body, r.Header.Get(HeaderCastleSignature)) {
		rc.problems = append(rc.problems, "X-Castle-Signature does not verify")
	}
	if err := VerifyTimestamped(r.Header.Get(HeaderSignature), body, now, DefaultTolerance, rc.secrets...); err != nil {
		rc.problems = append(rc.problems, "X-Moat-Signature: "+err.Error())
	}
	var env struct {
		APIVersion string          `json:"api_version"`
		AppID      string          `json:"app_id"`
		Type       string          `json:"type"`
		Data       json.RawMessage `json:"data"`
	}
	var data struct {
		ID string `json:"id"`
		I  int    `json:"i"`
	}
	if json.Unmarshal(body, &env) != nil || json.Unmarshal(env.Data, &data) != nil || env.APIVersion != "v1" {
		rc.problems = append(rc.problems, "bad envelope: "+string(body))
	}
	id := r.Header.Get(HeaderDeliveryID)
	if id == "" || r.Header.Get(HeaderIdempotencyKey) != id {
		rc.problems = append(rc.problems, "missing delivery id")
	}
	attempt, _ := strconv.Atoi(r.Header.Get(HeaderAttempt))
	rc.mu.Unlock()

	status := respond(n, r)
	if status == 0 {
		<-r.Context().Done()
		return
	}
	w.WriteHeader(status)
	got := received{deliveryID: id, attempt: attempt, status: status, at: now, index: data.I,
		n: schemas.Notification{ID: data.ID, AppID: env.AppID, Type: env.Type}}
	rc.mu.Lock()
	rc.reqs = append(rc.reqs, got)
	if status/100 == 2 {
		rc.delivered[id]++
	}
	rc.mu.Unlock()
	rc.arrived <- got
}

func (rc *receiver) setRespond(f func(n int, r *http.Request) int) {
	rc.mu.Lock()
	rc.respond = f
	rc.mu.Unlock()
}

// deliveredIDs returns the delivery ids answered 2xx.
func (rc *receiver) deliveredIDs() map[string]int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	out := make(map[string]int, len(rc.delivered))
	for k, v := range rc.delivered {
		out[k] = v
	}
	return out
}

func (rc *receiver) requests() []received {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]received(nil), rc.reqs...)
}

func (rc *receiver) requestCount() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.count
}

// checkSignatures fails the test if any request had a bad signature or
// envelope.
func (rc *receiver) checkSignatures() {
	rc.t.Helper()
	rc.mu.Lock()
	defer rc.mu.Unlock()
	for _, p := range rc.problems {
		rc.t.Error(p)
	}
}

// always answers status to every request.
func always(status int) func(int, *http.Request) int {
	return func(int, *http.Request) int { return status }
}

// testApp returns an app with one endpoint per URL (ids ep0, ep1, ...).
func testApp(id string, urls ...string) apps.App {
	a := apps.App{ID: id, Secret: "api-secret-of-" + id + "-0123456789"}
	for i, u := range urls {
		a.Webhooks = append(a.Webhooks, apps.Webhook{
			ID: "ep" + strconv.Itoa(i), URL: u, AllowPrivate: true,
			Secrets: []string{"whsec-new-" + id, "whsec-old-" + id},
		})
	}
	return a
}

func endpointSecrets(appID string) []string {
	return []string{"whsec-new-" + appID, "whsec-old-" + appID}
}

func registry(t testing.TB, list ...apps.App) *apps.Registry {
	t.Helper()
	reg, err := apps.New(list)
	if err != nil {
		t.Fatalf("apps: %v", err)
	}
	return reg
}

// notification returns notification i of app.
func notification(app string, i int) schemas.Notification {
	id := fmt.Sprintf("%s-n%04d", app, i)
	return schemas.Notification{
		V:         schemas.NotificationVersion,
		ID:        id,
		AppID:     app,
		Type:      schemas.NotifyIncidentConfirmed,
		CreatedAt: time.Date(2026, 1, 2, 3, 4, 5, 678e6, time.UTC),
		UserID:    fmt.Sprintf("user-%d", i%7),
		Data:      json.RawMessage(fmt.Sprintf(`{"id":%q,"i":%d,"device_token":"tok","user_id":"user-%d","trigger":"$login.succeeded","context":{},"policy":{}}`, id, i, i%7)),
	}
}

// producer writes notifications to the incidents topic, as the scorer
// would.
type producer struct{ cl *kgo.Client }

func newProducer(t testing.TB, brokers []string) *producer {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ProducerLinger(time.Millisecond))
	if err != nil {
		t.Fatalf("kgo: %v", err)
	}
	t.Cleanup(cl.Close)
	return &producer{cl: cl}
}

func (p *producer) send(t testing.TB, ns ...schemas.Notification) {
	t.Helper()
	recs := make([]*kgo.Record, len(ns))
	for i := range ns {
		v, err := json.Marshal(&ns[i])
		if err != nil {
			t.Fatal(err)
		}
		recs[i] = &kgo.Record{Topic: schemas.TopicIncidents, Key: ns[i].Key(), Value: v}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
}

// readTopic reads want records of topic from the start, or fails after
// timeout.
func readTopic(t testing.TB, brokers []string, topic string, want int, timeout time.Duration) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatalf("kgo: %v", err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var out []*kgo.Record
	for len(out) < want {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %s: got %d records, want %d", topic, len(out), want)
		}
		fs.EachRecord(func(r *kgo.Record) { out = append(out, r) })
	}
	return out
}

// eventually polls cond every 10ms until it holds or timeout passes.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// percentile returns the p-th percentile (0..100) of ds.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := int(float64(len(s)-1) * p / 100)
	return s[i]
}

func webhook(id, url string) apps.Webhook {
	return apps.Webhook{ID: id, URL: url, AllowPrivate: true}
}

func kgoRecord(topic, value string) *kgo.Record {
	return &kgo.Record{Topic: topic, Value: []byte(value)}
}

func headerValue(r *kgo.Record, key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}
