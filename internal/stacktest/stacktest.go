// Package stacktest runs Moat's pipeline inside a test: a kfake broker over
// TCP, the ingest HTTP API on an httptest server, the scorer and projector
// workers, and a fresh database on the test's real ClickHouse (chtest).
// Nothing is mocked. Import it only from _test.go files; the package's
// TestMain must call chtest.Main.
package stacktest

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/labstack/echo/v4"
	"github.com/moat-dev/moat/api"
	"github.com/moat-dev/moat/ingest"
	"github.com/moat-dev/moat/internal/apps"
	"github.com/moat-dev/moat/internal/bearer"
	"github.com/moat-dev/moat/internal/chtest"
	"github.com/moat-dev/moat/internal/httpapi"
	"github.com/moat-dev/moat/internal/kafka"
	"github.com/moat-dev/moat/internal/lists"
	"github.com/moat-dev/moat/internal/metrics"
	"github.com/moat-dev/moat/internal/privacy"
	"github.com/moat-dev/moat/internal/useragent"
	"github.com/moat-dev/moat/projector"
	"github.com/moat-dev/moat/schemas"
	"github.com/moat-dev/moat/scorer"
	"github.com/moat-dev/moat/scorer/fingerprint"
	"github.com/moat-dev/moat/scorer/risk"
	"github.com/moat-dev/moat/webhooker"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Apps are the tenants every stack serves.
var Apps = []apps.App{
	{ID: "app-a", Name: "App A", Secret: "secret-a-0123456789abcdef0123456", Test: true},
	{ID: "app-b", Name: "App B", Secret: "secret-b-0123456789abcdef0123456", Risk: apps.RiskSettings{TimeoutMS: 300}},
	{ID: "app-c", Name: "App C", Secret: "secret-c-0123456789abcdef0123456", Risk: apps.RiskSettings{TimeoutMS: 300, Failover: "challenge"}},
	// app-warmup's calls only wait for the scorer to be ready.
	{ID: "app-warmup", Name: "Warm-up", Secret: "secret-w-0123456789abcdef0123456"},
}

// DeviceKey is the fingerprint key of every stack.
var DeviceKey = []byte("stacktest-device-key-0123456789abcdef")

// Options tune a stack.
type Options struct {
	// ProduceTimeout of ingest (default 2 s).
	ProduceTimeout time.Duration
	// NoWorkers leaves the scorer and projector stopped.
	NoWorkers bool
	// Persist keeps the broker's log in a directory, so RestartBroker can
	// stop it and start it again with every record.
	Persist bool
	// WebhookURL, when set, gives app-a a webhook endpoint there (loopback
	// allowed) and runs a webhooker.
	WebhookURL string
	// Policies are the apps' risk policies (by app id); SetPolicies
	// changes them.
	Policies map[string]*risk.Policy
	// ProjectorFlush is the projector's flush interval (default 100 ms):
	// a long one makes the views lag behind the log.
	ProjectorFlush time.Duration
	// SessionTimeout is the scorer's and the end-user routes' session
	// timeout (default 20 minutes).
	SessionTimeout time.Duration
	// BearerTTL is the end-user bearer tokens' validity (default 15
	// minutes); TokenRate and IPRate are the end-user routes' calls per
	// minute per bearer token and per client IP (0: unlimited).
	BearerTTL         time.Duration
	TokenRate, IPRate int
	// ActivationTTL is the activation tokens' validity (default 5
	// minutes).
	ActivationTTL time.Duration
}

// Stack is one running pipeline.
type Stack struct {
	t       testing.TB
	Cluster *kfake.Cluster
	Kafka   kafka.Config
	Conn    driver.Conn
	DB      string
	URL     string
	Log     *slog.Logger
	Hasher  *fingerprint.Hasher
	Decider *scorer.Decider
	Admin   *kadm.Client
	// Lists is the follower of the lists topic that both the Lists API
	// and the scorer's policies read (as in moat dev).
	Lists *lists.Follower
	// Privacy is the registry of forgotten users that the privacy API,
	// the scorer and the projector share (as in moat dev).
	Privacy *privacy.Registry
	Metrics *metrics.Metrics
	// EndUser serves the end-user routes (/api/...) and Signer signs their
	// bearer tokens (key BearerKey).
	EndUser *api.EndUserHandler
	Signer  *bearer.Signer

	mu      sync.Mutex
	workers map[string]*worker
	dataDir string
	port    int
	apps    *apps.Registry
	// projectorFlush is Options.ProjectorFlush.
	projectorFlush time.Duration
	sessionTimeout time.Duration
}

type worker struct {
	cancel context.CancelFunc
	done   chan error
}

// New starts a stack; everything stops when the test ends.
func New(t testing.TB, o Options) *Stack {
	t.Helper()
	if o.ProduceTimeout == 0 {
		o.ProduceTimeout = 2 * time.Second
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	conn, db := chtest.NewDatabase(t)
	s := &Stack{t: t, Conn: conn, DB: db, Log: log, workers: map[string]*worker{}, projectorFlush: 100 * time.Millisecond}
	if o.ProjectorFlush > 0 {
		s.projectorFlush = o.ProjectorFlush
	}
	if o.Persist {
		s.dataDir = t.TempDir()
	}
	s.startBroker()
	t.Cleanup(func() { s.Cluster.Close() })
	kcfg := kafka.DefaultConfig()
	kcfg.Brokers = s.Cluster.ListenAddrs()
	kcfg.Partitions = 3
	s.Kafka = kcfg

	cl, err := kgo.NewClient(kgo.SeedBrokers(kcfg.Brokers...))
	if err != nil {
		t.Fatalf("stacktest: admin client: %v", err)
	}
	t.Cleanup(cl.Close)
	s.Admin = kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := kafka.EnsureTopics(ctx, cl, kcfg, schemas.AllTopics()...); err != nil {
		t.Fatalf("stacktest: %v", err)
	}

	list := append([]apps.App(nil), Apps...)
	if o.WebhookURL != "" {
		list[0].Webhooks = []apps.Webhook{{ID: "hook", URL: o.WebhookURL, AllowPrivate: true}}
	}
	reg, err := apps.New(list)
	if err != nil {
		t.Fatal(err)
	}
	s.apps = reg
	s.Hasher, err = fingerprint.New(DeviceKey)
	if err != nil {
		t.Fatal(err)
	}
	ua, err := useragent.New(0)
	if err != nil {
		t.Fatal(err)
	}
	s.Lists, err = lists.NewFollower(kcfg, log)
	if err != nil {
		t.Fatal(err)
	}
	lctx, lcancel := context.WithCancel(context.Background())
	ldone := make(chan struct{})
	go func() { defer close(ldone); _ = s.Lists.Run(lctx) }()
	t.Cleanup(func() { lcancel(); <-ldone })
	s.Decider = scorer.NewDecider(ua, s.Hasher, scorer.Enrichment{}, o.Policies)
	s.Decider.SetLists(s.Lists.Index())
	s.sessionTimeout = o.SessionTimeout
	s.Decider.SetSessionTimeout(o.SessionTimeout)
	ph, err := privacy.NewHasher(DeviceKey)
	if err != nil {
		t.Fatal(err)
	}
	if s.Privacy, err = privacy.NewRegistry(kcfg, ph, log); err != nil {
		t.Fatal(err)
	}
	pctx, pcancel := context.WithCancel(context.Background())
	pdone := make(chan struct{})
	go func() { defer close(pdone); _ = s.Privacy.Run(pctx) }()
	t.Cleanup(func() { pcancel(); <-pdone })
	pw, err := privacy.NewWriter(kcfg, ph, o.ProduceTimeout, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pw.Close)

	s.Metrics = metrics.New()
	prod, err := ingest.NewProducer(ingest.Config{Kafka: kcfg, ProduceTimeout: o.ProduceTimeout, Linger: time.Millisecond, Metrics: s.Metrics}, log)
	if err != nil {
		t.Fatal(err)
	}
	e := httpapi.New(httpapi.Config{BodyLimit: 1 << 20, Metrics: s.Metrics}, log)
	e.Use(httpapi.Authenticate(reg, httpapi.WithBearer(api.BearerPrefix, s.bearerAuth)))
	authed := e.Group("")
	replies, err := ingest.NewReplies(ctx, kcfg, log)
	if err != nil {
		t.Fatal(err)
	}
	rctx, rcancel := context.WithCancel(context.Background())
	rdone := make(chan struct{})
	go func() { defer close(rdone); _ = replies.Run(rctx) }()
	t.Cleanup(func() { rcancel(); <-rdone })
	ingest.NewHandler(prod, replies, log).Routes(authed)
	api.NewHandler(api.NewStore(conn, db), s.Hasher, prod, log).WithPrivacy(s.Privacy, pw).Routes(authed)
	s.Signer, err = bearer.NewSigner(BearerKey, o.BearerTTL, nil)
	if err != nil {
		t.Fatal(err)
	}
	pending, err := api.NewPending(kcfg, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pending.Close)
	s.EndUser, err = api.NewEndUserHandler(api.EndUserConfig{
		Store: api.NewStore(conn, db), Pending: pending, UA: ua, FP: s.Hasher, Apps: reg, Signer: s.Signer,
		Out: prod, Replies: replies, SessionTimeout: o.SessionTimeout, ActivationTTL: o.ActivationTTL, Erasures: s.Privacy,
		TokenLimit: bearer.NewLimiter(o.TokenRate, time.Minute, 0, nil), IPLimit: bearer.NewLimiter(o.IPRate, time.Minute, 0, nil), Log: log,
	})
	if err != nil {
		t.Fatal(err)
	}
	s.EndUser.Routes(authed)
	lw, err := lists.NewWriter(kcfg, o.ProduceTimeout, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(lw.Close)
	api.NewListsHandler(lists.NewService(s.Lists, lw, o.ProduceTimeout, log), log).Routes(authed)
	srv := httptest.NewServer(e)
	s.URL = srv.URL
	t.Cleanup(func() { srv.Close(); prod.Close() })

	if !o.NoWorkers {
		s.StartScorer()
		s.StartProjector()
		if o.WebhookURL != "" {
			s.StartWebhooker()
		}
		s.WaitScorer()
	}
	return s
}

// BearerKey is the bearer token key of every stack.
var BearerKey = []byte("stacktest-bearer-key-0123456789abcdef")

// bearerAuth authenticates the end-user routes (s.EndUser, set once the
// stack is built).
func (s *Stack) bearerAuth(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error { return s.EndUser.Authenticate(next)(c) }
}

// WaitScorer waits until the scorer answers scored calls (it has joined its
// group) for users on every partition: a partition's first event makes the
// scorer restore that partition's state, which on a loaded machine can
// outlast a call's deadline, so tests' first calls must not be the ones to
// pay it. 24 warm-up users miss one of the stack's 3 partitions with
// probability 3·(2/3)^24, about 2 in 10,000.
func (s *Stack) WaitScorer() {
	s.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for u := 0; u < 24; u++ {
		for {
			code, body := s.Post("/v1/risk", Secret("app-warmup"), fmt.Sprintf(`{"type":"$login","status":"$succeeded","user":{"id":"warmup-%d"},
			"request_token":"warmup","context":{"ip":"192.0.2.1","headers":{"User-Agent":"curl/8"}}}`, u))
			if code == http.StatusCreated {
				break
			}
			if code != http.StatusServiceUnavailable || time.Now().After(deadline) {
				s.t.Fatalf("stacktest: scorer not ready: %d %s", code, body)
			}
		}
	}
}

func (s *Stack) startBroker() {
	opts := []kfake.Opt{kfake.NumBrokers(1)}
	if s.dataDir != "" {
		opts = append(opts, kfake.DataDir(s.dataDir), kfake.SyncWrites())
	}
	if s.port != 0 {
		opts = append(opts, kfake.Ports(s.port))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		s.t.Fatalf("stacktest: start kfake: %v", err)
	}
	s.Cluster = c
	if s.port == 0 {
		_, port, _ := strings.Cut(c.ListenAddrs()[0], ":")
		fmt.Sscan(port, &s.port)
	}
}

// RestartBroker stops the broker, waits down, and starts it again on the
// same port with its persisted log (Options.Persist is required).
func (s *Stack) RestartBroker(down time.Duration) {
	s.t.Helper()
	if s.dataDir == "" {
		s.t.Fatal("stacktest: RestartBroker needs Options.Persist")
	}
	s.Cluster.Close()
	time.Sleep(down)
	s.startBroker()
}

func (s *Stack) start(name string, run func(ctx context.Context) error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.workers[name]; ok {
		s.t.Fatalf("stacktest: %s already running", name)
	}
	ctx, cancel := context.WithCancel(context.Background())
	w := &worker{cancel: cancel, done: make(chan error, 1)}
	s.workers[name] = w
	go func() { w.done <- run(ctx) }()
	s.t.Cleanup(func() { s.stop(name) })
}

func (s *Stack) stop(name string) {
	s.mu.Lock()
	w, ok := s.workers[name]
	delete(s.workers, name)
	s.mu.Unlock()
	if !ok {
		return
	}
	w.cancel()
	select {
	case err := <-w.done:
		if err != nil {
			s.t.Errorf("stacktest: %s: %v", name, err)
		}
	case <-time.After(30 * time.Second):
		s.t.Errorf("stacktest: %s did not stop within 30s", name)
	}
}

// StartScorer starts a scorer worker.
func (s *Stack) StartScorer() {
	w, err := scorer.New(scorer.Config{Kafka: s.Kafka, TransactionalID: "stacktest-scorer", MaxPollRecords: 1000, Metrics: s.Metrics, Erasures: s.Privacy}, s.Decider, s.Log)
	if err != nil {
		s.t.Fatal(err)
	}
	s.start("scorer", s.afterPrivacy(w.Run))
}

// SetPolicies replaces the apps' risk policies (list conditions included):
// stop the scorer first and start it again after.
func (s *Stack) SetPolicies(p map[string]*risk.Policy) {
	s.t.Helper()
	ua, err := useragent.New(0)
	if err != nil {
		s.t.Fatal(err)
	}
	s.Decider = scorer.NewDecider(ua, s.Hasher, scorer.Enrichment{}, p)
	s.Decider.SetLists(s.Lists.Index())
	s.Decider.SetSessionTimeout(s.sessionTimeout)
}

// StopScorer stops the scorer and waits for it.
func (s *Stack) StopScorer() { s.stop("scorer") }

// StartProjector starts a projector worker flushing every
// Options.ProjectorFlush.
func (s *Stack) StartProjector() {
	w, err := projector.New(projector.Config{Kafka: s.Kafka, Database: s.DB, BatchSize: 5000, FlushInterval: s.projectorFlush, InsertTimeout: 10 * time.Second, Metrics: s.Metrics, Erasures: s.Privacy}, s.Conn, s.Log)
	if err != nil {
		s.t.Fatal(err)
	}
	s.start("projector", s.afterPrivacy(w.Run))
}

// afterPrivacy delays run until the privacy registry has read every
// deletion committed so far, as the roles do.
func (s *Stack) afterPrivacy(run func(context.Context) error) func(context.Context) error {
	return func(ctx context.Context) error {
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := s.Privacy.Sync(sctx)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		return run(ctx)
	}
}

// StartWebhooker starts a webhooker logging its attempts to ClickHouse,
// retrying after 1 s and 2 s.
func (s *Stack) StartWebhooker() {
	cfg := webhooker.DefaultConfig()
	cfg.Kafka = s.Kafka
	cfg.Schedule = []time.Duration{time.Second, 2 * time.Second}
	w, err := webhooker.New(cfg, s.apps, webhooker.NewClickHouseLog(s.Conn, s.DB), s.Log)
	if err != nil {
		s.t.Fatal(err)
	}
	s.start("webhooker", w.Run)
}

// StopProjector stops the projector and waits for it.
func (s *Stack) StopProjector() { s.stop("projector") }

// Do sends a request authenticated with secret ("" for none) and returns
// the status and body.
func (s *Stack) Do(method, path, secret, body string, hdr ...string) (int, string) {
	s.t.Helper()
	req, err := http.NewRequest(method, s.URL+path, strings.NewReader(body))
	if err != nil {
		s.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if secret != "" {
		req.SetBasicAuth("", secret)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatalf("stacktest: %s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// Post is Do with POST.
func (s *Stack) Post(path, secret, body string) (int, string) {
	s.t.Helper()
	return s.Do(http.MethodPost, path, secret, body)
}

// Count runs a count query and returns its result.
func (s *Stack) Count(query string, args ...any) uint64 {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var n uint64
	if err := s.Conn.QueryRow(ctx, query, args...).Scan(&n); err != nil {
		s.t.Fatalf("stacktest: %s: %v", query, err)
	}
	return n
}

// WaitCount polls a count query until it returns want, and fails the test
// if it does not within timeout.
func (s *Stack) WaitCount(timeout time.Duration, want uint64, query string, args ...any) {
	s.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		n := s.Count(query, args...)
		if n == want {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("stacktest: %s = %d after %v, want %d", query, n, timeout, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Events counts the app's rows in events as a query sees them (FINAL).
func (s *Stack) Events(appID string) uint64 {
	return s.Count("SELECT count() FROM events FINAL WHERE app_id = ?", appID)
}

// WaitEvents waits until the app has want rows in events (FINAL) and
// fails the test if it does not happen within timeout, or if more appear.
func (s *Stack) WaitEvents(appID string, want uint64, timeout time.Duration) {
	s.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		n := s.Events(appID)
		if n == want {
			return
		}
		if n > want {
			s.t.Fatalf("stacktest: %d events for %s, want %d", n, appID, want)
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("stacktest: %d events for %s after %v, want %d", n, appID, timeout, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Records returns how many records topic holds (sum of end offsets).
func (s *Stack) Records(topic string) int64 {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ends, err := s.Admin.ListEndOffsets(ctx, topic)
	if err != nil {
		s.t.Fatalf("stacktest: end offsets of %s: %v", topic, err)
	}
	var n int64
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err != nil {
			s.t.Fatalf("stacktest: end offset of %s/%d: %v", topic, o.Partition, o.Err)
		}
		n += o.Offset
	})
	return n
}

// Secret returns the API secret of an app in Apps.
func Secret(appID string) string {
	for _, a := range Apps {
		if a.ID == appID {
			return a.Secret
		}
	}
	panic(fmt.Sprintf("stacktest: no app %q", appID))
}
