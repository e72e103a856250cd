package webhooker

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moat-dev/moat/schemas"
)

// memLog is an in-memory DeliveryLog.
type memLog struct {
	mu   sync.Mutex
	rows []Attempt
}

func (m *memLog) Log(a Attempt) {
	m.mu.Lock()
	m.rows = append(m.rows, a)
	m.mu.Unlock()
}

func (m *memLog) Flush(context.Context) error { return nil }

func (m *memLog) all() []Attempt {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]Attempt(nil), m.rows...)
}

// checkDeliveryIDs fails the test if a request's delivery id is not the
// one of its notification and endpoint: retries and duplicates must repeat
// the id.
func checkDeliveryIDs(t *testing.T, rc *receiver, appID, endpointID string) {
	t.Helper()
	for _, r := range rc.requests() {
		if want := DeliveryID(appID, endpointID, r.n.ID); r.deliveryID != want {
			t.Errorf("notification %s: delivery id %s, want %s", r.n.ID, r.deliveryID, want)
		}
	}
}

func deadLetters(t *testing.T, brokers []string, want int) []schemas.WebhookDelivery {
	t.Helper()
	var out []schemas.WebhookDelivery
	for _, r := range readTopic(t, brokers, schemas.TopicWebhookDeadLetter, want, 10*time.Second) {
		var d schemas.WebhookDelivery
		if err := json.Unmarshal(r.Value, &d); err != nil {
			t.Fatalf("dead letter: %v", err)
		}
		out = append(out, d)
	}
	return out
}

func TestFailsThenSucceeds(t *testing.T) {
	brokers := newCluster(t)
	rc := newReceiver(t, endpointSecrets("a"), func(n int, _ *http.Request) int {
		if n <= 3 {
			return http.StatusInternalServerError
		}
		return http.StatusOK
	})
	cfg := testConfig(brokers)
	cfg.BreakerThreshold = 10
	log := &memLog{}
	w := startWorker(t, cfg, registry(t, testApp("a", rc.srv.URL)), log)
	newProducer(t, brokers).send(t, notification("a", 1))

	eventually(t, 10*time.Second, "delivery", func() bool { return len(rc.deliveredIDs()) == 1 })
	reqs := rc.requests()
	if len(reqs) != 4 {
		t.Fatalf("%d requests, want 4", len(reqs))
	}
	for i, r := range reqs {
		if r.attempt != i+1 {
			t.Errorf("request %d: attempt header %d", i, r.attempt)
		}
		if i > 0 {
			if gap, min := r.at.Sub(reqs[i-1].at), cfg.Schedule[i-1]; gap < min {
				t.Errorf("attempt %d came %s after the previous one, schedule says %s", i+1, gap, min)
			}
		}
	}
	rc.checkSignatures()
	checkDeliveryIDs(t, rc, "a", "ep0")

	w.stop(t)
	if s := w.w.Stats(); s.Delivered != 1 || s.Retried != 3 || s.DeadLettered != 0 {
		t.Fatalf("stats %+v", s)
	}
	var outcomes []string
	for _, a := range log.all() {
		outcomes = append(outcomes, a.Outcome)
		if a.DeliveryID != reqs[0].deliveryID || a.AppID != "a" || a.EndpointID != "ep0" || a.Type != schemas.NotifyIncidentConfirmed {
			t.Errorf("log row %+v", a)
		}
	}
	if got := strings.Join(outcomes, ","); got != "retry,retry,retry,delivered" {
		t.Fatalf("delivery log outcomes %s", got)
	}
}

func TestHangingEndpointDeadLetters(t *testing.T) {
	brokers := newCluster(t)
	rc := newReceiver(t, endpointSecrets("a"), always(0))
	cfg := testConfig(brokers)
	start := time.Now()
	startWorker(t, cfg, registry(t, testApp("a", rc.srv.URL)), nil)
	n := notification("a", 1)
	newProducer(t, brokers).send(t, n)

	dl := deadLetters(t, brokers, 1)[0]
	if dl.Attempts != cfg.MaxAttempts() || dl.Notification.ID != n.ID || dl.DeliveryID != DeliveryID("a", "ep0", n.ID) || dl.LastStatus != 0 {
		t.Fatalf("dead letter %+v", dl)
	}
	if !strings.Contains(dl.LastError, "timeout") && !strings.Contains(dl.LastError, "unhealthy") {
		t.Fatalf("last error %q", dl.LastError)
	}
	if got := rc.requestCount(); got < 1 || got > cfg.MaxAttempts() {
		t.Fatalf("%d requests for %d attempts", got, cfg.MaxAttempts())
	}
	t.Logf("dead-lettered after %s and %d requests: %s", time.Since(start).Round(time.Millisecond), rc.requestCount(), dl.LastError)
}

func TestGoneDeadLettersAndReplay(t *testing.T) {
	brokers := newCluster(t)
	rc := newReceiver(t, endpointSecrets("a"), always(http.StatusGone))
	cfg := testConfig(brokers)
	log := &memLog{}
	startWorker(t, cfg, registry(t, testApp("a", rc.srv.URL)), log)
	n := notification("a", 1)
	newProducer(t, brokers).send(t, n)

	dl := deadLetters(t, brokers, 1)[0]
	if dl.Attempts != 1 || dl.LastStatus != http.StatusGone || !strings.Contains(dl.LastError, "410") {
		t.Fatalf("dead letter %+v", dl)
	}
	if rc.requestCount() != 1 {
		t.Fatalf("%d requests, want 1 (410 is permanent)", rc.requestCount())
	}
	if rows := log.all(); len(rows) != 1 || rows[0].Outcome != OutcomeDead || rows[0].Status != 410 {
		t.Fatalf("log %+v", rows)
	}

	// The receiver is back: replay the dead letter.
	rc.setRespond(always(http.StatusOK))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	opts := ReplayOptions{Tier: cfg.Schedule[0], Logger: testLogger(t)}
	for _, tc := range []struct {
		name string
		o    ReplayOptions
		want int
	}{
		{"dry run", ReplayOptions{DryRun: true}, 1},
		{"other app", ReplayOptions{AppID: "b", DryRun: true}, 0},
		{"future", ReplayOptions{Since: time.Now().Add(time.Hour), DryRun: true}, 0},
		{"past", ReplayOptions{Since: time.Now().Add(-time.Hour), EndpointID: "ep0", DryRun: true}, 1},
	} {
		tc.o.Logger = opts.Logger
		if got, err := Replay(ctx, brokers, tc.o); err != nil || got != tc.want {
			t.Fatalf("%s: Replay = %d, %v; want %d", tc.name, got, err, tc.want)
		}
	}
	if rc.requestCount() != 1 {
		t.Fatal("a dry run delivered")
	}
	got, err := Replay(ctx, brokers, opts)
	if err != nil || got != 1 {
		t.Fatalf("Replay = %d, %v", got, err)
	}
	eventually(t, 10*time.Second, "replayed delivery", func() bool { return len(rc.deliveredIDs()) == 1 })
	if id := rc.requests()[0].deliveryID; id != dl.DeliveryID {
		t.Fatalf("replay delivery id %s, want %s", id, dl.DeliveryID)
	}
	rc.checkSignatures()
}

// TestFlappingEndpoint: the endpoint is down (503) for 80ms out of every
// 480ms. Consecutive attempts are 100-115ms apart, longer than a down
// window and shorter than an up window, so every delivery gets through by
// its second attempt, whatever the phase.
func TestFlappingEndpoint(t *testing.T) {
	brokers := newCluster(t)
	epoch := time.Now()
	const down, period = 80 * time.Millisecond, 480 * time.Millisecond
	rc := newReceiver(t, endpointSecrets("a"), func(int, *http.Request) int {
		if time.Since(epoch)%period < down {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	cfg := testConfig(brokers)
	cfg.Schedule = []time.Duration{100 * time.Millisecond, 100 * time.Millisecond, 100 * time.Millisecond}
	cfg.BreakerThreshold = 1000 // this test is about retries, not the breaker
	w := startWorker(t, cfg, registry(t, testApp("a", rc.srv.URL)), nil)
	p := newProducer(t, brokers)
	const total = 60
	for i := range total {
		p.send(t, notification("a", i))
		time.Sleep(20 * time.Millisecond)
	}
	eventually(t, 15*time.Second, "all deliveries", func() bool { return len(rc.deliveredIDs()) == total })
	for i := range total {
		if rc.deliveredIDs()[DeliveryID("a", "ep0", notification("a", i).ID)] == 0 {
			t.Errorf("notification %d not delivered", i)
		}
	}
	rc.checkSignatures()
	checkDeliveryIDs(t, rc, "a", "ep0")
	w.stop(t)
	s := w.w.Stats()
	if s.Retried == 0 || s.DeadLettered != 0 {
		t.Fatalf("stats %+v: want some retries and no dead letters", s)
	}
	t.Logf("%d requests for %d notifications, stats %+v", rc.requestCount(), total, s)
}

// TestRestartLosesNothing kills a worker in the middle of deliveries (some
// hanging, some scheduled for retry), without its final commit, and checks
// that a new worker delivers every notification.
func TestRestartLosesNothing(t *testing.T) {
	brokers := newCluster(t)
	rc := newReceiver(t, endpointSecrets("a"), func(n int, _ *http.Request) int {
		if n%2 == 1 {
			return 0 // hang
		}
		return http.StatusServiceUnavailable
	})
	cfg := testConfig(brokers)
	cfg.Schedule = []time.Duration{200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond}
	cfg.RequestTimeout = 2 * time.Second
	cfg.ConnectTimeout = 200 * time.Millisecond
	cfg.BreakerThreshold = 1000
	cfg.ShutdownGrace = 0
	reg := registry(t, testApp("a", rc.srv.URL))
	const total = 40
	ns := make([]schemas.Notification, total)
	for i := range ns {
		ns[i] = notification("a", i)
	}
	w1 := startWorker(t, cfg, reg, nil, func(w *Worker) { w.skipFinalCommit = true })
	newProducer(t, brokers).send(t, ns...)
	eventually(t, 10*time.Second, "the first requests", func() bool { return rc.requestCount() >= total })
	time.Sleep(250 * time.Millisecond) // some retries are scheduled, some due
	w1.stop(t)
	s1 := w1.w.Stats()

	rc.setRespond(always(http.StatusOK))
	w2 := startWorker(t, cfg, reg, nil)
	eventually(t, 20*time.Second, "every delivery after the restart", func() bool { return len(rc.deliveredIDs()) == total })
	for _, n := range ns {
		if rc.deliveredIDs()[DeliveryID("a", "ep0", n.ID)] == 0 {
			t.Errorf("notification %s lost", n.ID)
		}
	}
	rc.checkSignatures()
	checkDeliveryIDs(t, rc, "a", "ep0")
	w2.stop(t)
	s2 := w2.w.Stats()
	if s1.DeadLettered+s2.DeadLettered != 0 {
		t.Fatalf("dead letters: %+v %+v", s1, s2)
	}
	t.Logf("before the kill: %+v; after: %+v; %d requests", s1, s2, rc.requestCount())
}

// TestIsolation: while app "slow"'s endpoint times out on every request, app
// "fast"'s endpoint gets each notification within a second of its
// production.
func TestIsolation(t *testing.T) {
	brokers := newCluster(t)
	slow := newReceiver(t, endpointSecrets("slow"), always(0))
	fast := newReceiver(t, endpointSecrets("fast"), always(http.StatusOK))
	cfg := testConfig(brokers)
	// A second endpoint of the slow app shares nothing with the fast app.
	w := startWorker(t, cfg, registry(t, testApp("slow", slow.srv.URL, slow.srv.URL+"/2"), testApp("fast", fast.srv.URL)), nil)
	p := newProducer(t, brokers)

	// Warm up: the consumers have joined once the first one is delivered.
	p.send(t, notification("fast", 9999))
	<-fast.arrived

	const total = 100
	sent := make([]time.Time, total)
	for i := range total {
		sent[i] = time.Now()
		p.send(t, notification("slow", i), notification("fast", i))
		time.Sleep(10 * time.Millisecond)
	}
	var lat []time.Duration
	timeout := time.After(15 * time.Second)
	for len(lat) < total {
		select {
		case r := <-fast.arrived:
			lat = append(lat, r.at.Sub(sent[r.index]))
		case <-timeout:
			t.Fatalf("only %d of %d fast deliveries arrived", len(lat), total)
		}
	}
	p50, p99, worst := percentile(lat, 50), percentile(lat, 99), percentile(lat, 100)
	t.Logf("fast app, produce to receive: p50 %s p99 %s max %s; slow endpoint got %d requests; stats %+v",
		p50, p99, worst, slow.requestCount(), w.w.Stats())
	if worst > time.Second {
		t.Fatalf("a healthy endpoint waited %s (p99 %s) behind a hanging one", worst, p99)
	}
	if w.w.Stats().Deferred == 0 {
		t.Fatal("the hanging endpoint's breaker never opened")
	}
	fast.checkSignatures()
}

// TestPrivateAddressRefused: an endpoint on 127.0.0.1 without AllowPrivate
// gets nothing, and the delivery is dead-lettered at once.
func TestPrivateAddressRefused(t *testing.T) {
	brokers := newCluster(t)
	rc := newReceiver(t, endpointSecrets("a"), always(http.StatusOK))
	app := testApp("a", rc.srv.URL)
	app.Webhooks[0].AllowPrivate = false
	startWorker(t, testConfig(brokers), registry(t, app), nil)
	newProducer(t, brokers).send(t, notification("a", 1))
	dl := deadLetters(t, brokers, 1)[0]
	if dl.Attempts != 1 || !strings.Contains(dl.LastError, "refused") || strings.Contains(dl.LastError, rc.srv.URL) {
		t.Fatalf("dead letter %+v", dl)
	}
	if n := rc.requestCount(); n != 0 {
		t.Fatalf("the refused endpoint got %d requests", n)
	}
}

// TestRouting: types, several endpoints, apps without endpoints, unknown
// apps and undecodable records.
func TestRouting(t *testing.T) {
	brokers := newCluster(t)
	all := newReceiver(t, endpointSecrets("a"), always(http.StatusOK))
	reviews := newReceiver(t, endpointSecrets("a"), always(http.StatusOK))
	app := testApp("a", all.srv.URL, reviews.srv.URL)
	app.Webhooks[1].Types = []string{schemas.NotifyReviewOpened}
	app.Webhooks = append(app.Webhooks, webhook("ep2", "ftp://nope"))
	w := startWorker(t, testConfig(brokers), registry(t, app, testApp("quiet")), nil)

	incident, review := notification("a", 1), notification("a", 2)
	review.Type = schemas.NotifyReviewOpened
	p := newProducer(t, brokers)
	p.send(t, incident, review, notification("quiet", 1), notification("unknown", 1))
	if err := p.cl.ProduceSync(context.Background(), kgoRecord(schemas.TopicIncidents, "not json")).FirstErr(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "deliveries", func() bool {
		return len(all.deliveredIDs()) == 2 && len(reviews.deliveredIDs()) == 1
	})
	bad := readTopic(t, brokers, schemas.TopicDeadLetter, 1, 10*time.Second)[0]
	if string(bad.Value) != "not json" || headerValue(bad, schemas.HeaderError) == "" || headerValue(bad, schemas.HeaderSource) == "" {
		t.Fatalf("bad record dead letter %+v", bad)
	}
	// The endpoint with an ftp url dead-letters its deliveries (both types).
	dls := deadLetters(t, brokers, 2)
	for _, d := range dls {
		if d.EndpointID != "ep2" || !strings.Contains(d.LastError, "scheme") {
			t.Fatalf("dead letter %+v", d)
		}
	}
	if got := reviews.requests()[0].n.Type; got != schemas.NotifyReviewOpened {
		t.Fatalf("review endpoint got %s", got)
	}
	time.Sleep(100 * time.Millisecond)
	if len(all.requests()) != 2 || len(reviews.requests()) != 1 {
		t.Fatalf("extra requests: %d, %d", len(all.requests()), len(reviews.requests()))
	}
	w.stop(t)
	if s := w.w.Stats(); s.Delivered != 3 || s.BadRecords != 1 || s.DeadLettered != 2 {
		t.Fatalf("stats %+v", s)
	}
}

// lockedBuffer is an io.Writer safe for concurrent use.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestLogsHoldNoSecrets runs retries, a dead letter and a refused address
// with debug logging and checks that no secret, credential or url token
// reaches the log or the dead letters.
func TestLogsHoldNoSecrets(t *testing.T) {
	brokers := newCluster(t)
	rc := newReceiver(t, endpointSecrets("a"), func(n int, r *http.Request) int {
		if strings.Contains(r.URL.Path, "gone") {
			return http.StatusGone
		}
		if n%3 == 1 {
			return http.StatusInternalServerError
		}
		return http.StatusOK
	})
	withCreds := strings.Replace(rc.srv.URL, "http://", "http://user:urlpassword@", 1)
	app := testApp("a", withCreds+"/hook?token=urltoken", rc.srv.URL+"/gone?token=urltoken", withCreds+"/refused?token=urltoken")
	app.Webhooks[2].AllowPrivate = false
	var buf lockedBuffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	w, err := New(testConfig(brokers), registry(t, app), nil, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	newProducer(t, brokers).send(t, notification("a", 1), notification("a", 2))
	dls := deadLetters(t, brokers, 4) // 2 gone, 2 refused
	eventually(t, 10*time.Second, "deliveries", func() bool { return w.Stats().Delivered == 2 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	var all strings.Builder
	all.WriteString(buf.String())
	for _, d := range dls {
		b, _ := json.Marshal(d)
		all.Write(b)
	}
	out := all.String()
	for _, s := range append(endpointSecrets("a"), app.Secret, "urlpassword", "urltoken") {
		if strings.Contains(out, s) {
			t.Errorf("%q leaked into the log or the dead letters", s)
		}
	}
	// The attempts are logged (so the check above looked at real output):
	// the refused deliveries always are; whether a 5xx shows as a
	// scheduled retry or as a deferral depends on the breaker's timing.
	if !strings.Contains(out, "refused") {
		t.Fatalf("log does not show the attempts:\n%s", out)
	}
}
