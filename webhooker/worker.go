package webhooker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moat-dev/moat/internal/apps"
	"github.com/moat-dev/moat/internal/endpoints"
	"github.com/moat-dev/moat/internal/metrics"
	"github.com/moat-dev/moat/schemas"
	kafkago "github.com/segmentio/kafka-go"
)

// finalTimeout bounds the commits, the writer close and the log flush of a
// shutdown.
const finalTimeout = 10 * time.Second

// Worker delivers notifications. Create it with New; Run it once.
type Worker struct {
	cfg        Config
	reg        *apps.Registry
	deliveries DeliveryLog
	log        *slog.Logger
	now        func() time.Time

	// static are the apps file's endpoints, src the live registry of
	// API-managed ones (nil: none), set the endpoints in use.
	static          []*endpoint
	src             EndpointSource
	strict, private *http.Client
	set             atomic.Pointer[endpointSet]
	rebuild         sync.Mutex
	warned          map[string]bool // guarded by rebuild

	writer   *kafkago.Writer
	inflight sync.WaitGroup
	running  atomic.Bool
	stats    counters
	metrics  *metrics.Metrics

	// skipFinalCommit makes Run return without its final commits, as if
	// the process had died (tests).
	skipFinalCommit bool
}

// Stats are counters since the worker started.
type Stats struct {
	// Delivered, Retried (a retry was scheduled after a failed attempt),
	// Deferred (scheduled without a request: sick or saturated endpoint)
	// and DeadLettered deliveries.
	Delivered, Retried, Deferred, DeadLettered int64
	// BadRecords went to schemas.TopicDeadLetter undecoded.
	BadRecords int64
	// Dropped deliveries: their endpoint was deleted through the API while
	// they waited for a retry, or a test notification's endpoint is gone.
	Dropped int64
}

type counters struct {
	delivered, retried, deferred, dead, bad, dropped atomic.Int64
}

// EndpointSource is the live registry of API-managed endpoints
// (*endpoints.Table). The worker reads it whenever its Version changes, so
// endpoints created, changed or deleted through the API apply without a
// restart.
type EndpointSource interface {
	// Version changes whenever an endpoint is created, updated or deleted.
	Version() uint64
	// Snapshot returns every endpoint and the version they are at.
	Snapshot() (uint64, []endpoints.Endpoint)
	// Deleted reports whether the endpoint was deleted.
	Deleted(appID, id string) bool
	// Sync waits until the registry has applied every write made so far.
	Sync(ctx context.Context) error
}

// Option configures New.
type Option func(*Worker)

// WithEndpoints makes the worker deliver to the endpoints of src as well as
// to the apps file's. An apps-file endpoint wins over a registry endpoint
// with the same app and id; registry endpoints of apps that are not in the
// apps file are ignored.
func WithEndpoints(src EndpointSource) Option { return func(w *Worker) { w.src = src } }

// WithMetrics exports each reader's lag (kafka-go Reader.Stats().Lag) as
// moat_consumer_lag_records{group, topic, partition="all"}, updated every
// CommitInterval.
func WithMetrics(m *metrics.Metrics) Option { return func(w *Worker) { w.metrics = m } }

// endpointSet is the endpoints in use: the apps file's and the registry's
// at one version of the registry. It is never modified once stored.
type endpointSet struct {
	version uint64
	byKey   map[string]*endpoint
	byApp   map[string][]*endpoint
}

// syncTimeout bounds the wait for the registry when a delivery names an
// endpoint the worker does not know.
const syncTimeout = 5 * time.Second

// New returns a worker delivering the notifications of the apps in reg.
// deliveries may be nil (no delivery log); log may be nil (slog.Default).
// The apps file (reg) is read once: restart the worker to apply a changed
// apps file. Endpoints of WithEndpoints apply live.
func New(cfg Config, reg *apps.Registry, deliveries DeliveryLog, log *slog.Logger, opts ...Option) (*Worker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if reg == nil {
		return nil, errors.New("webhooker: no apps registry")
	}
	if deliveries == nil {
		deliveries = NopLog{}
	}
	if log == nil {
		log = slog.Default()
	}
	log = log.With("component", "webhooker")
	w := &Worker{
		cfg:        cfg,
		reg:        reg,
		deliveries: deliveries,
		log:        log,
		now:        time.Now,
		strict:     newClient(cfg, false),
		private:    newClient(cfg, true),
		warned:     map[string]bool{},
	}
	for _, o := range opts {
		o(w)
	}
	seen := map[string]bool{}
	for _, app := range reg.All() {
		for _, h := range app.Webhooks {
			k := endpointKey(app.ID, h.ID)
			if h.ID == "" || seen[k] {
				log.Warn("webhook endpoint skipped: its id is empty or not unique in the app", "app", app.ID, "endpoint", h.ID)
				continue
			}
			seen[k] = true
			e := newEndpoint(cfg, app, h, w.strict, w.private)
			if e.confErr != nil {
				log.Warn("webhook endpoint has an invalid url; its deliveries will be dead-lettered", "app", app.ID, "endpoint", h.ID, "err", e.confErr)
			}
			w.static = append(w.static, e)
		}
	}
	var version uint64
	var managed []endpoints.Endpoint
	if w.src != nil {
		version, managed = w.src.Snapshot()
	}
	w.set.Store(w.buildSet(version, managed, nil))
	return w, nil
}

// current returns the endpoints in use, first rebuilding them when the
// registry changed.
func (w *Worker) current() *endpointSet {
	set := w.set.Load()
	if w.src == nil || w.src.Version() == set.version {
		return set
	}
	w.rebuild.Lock()
	defer w.rebuild.Unlock()
	set = w.set.Load()
	v, managed := w.src.Snapshot()
	if v == set.version {
		return set
	}
	next := w.buildSet(v, managed, set)
	w.set.Store(next)
	w.log.Info("webhook endpoints changed", "version", v, "endpoints", len(next.byKey))
	return next
}

// buildSet returns the apps file's endpoints and those of managed, at
// version v of the registry. Endpoints unchanged since prev are kept as
// they are, and a changed one keeps its health when its URL did not
// change. w.rebuild is held, or the worker is being created.
func (w *Worker) buildSet(v uint64, managed []endpoints.Endpoint, prev *endpointSet) *endpointSet {
	set := &endpointSet{version: v, byKey: map[string]*endpoint{}, byApp: map[string][]*endpoint{}}
	add := func(e *endpoint) {
		set.byKey[endpointKey(e.appID, e.id)] = e
		set.byApp[e.appID] = append(set.byApp[e.appID], e)
	}
	for _, e := range w.static {
		add(e)
	}
	for _, m := range managed {
		k := endpointKey(m.AppID, m.ID)
		if set.byKey[k] != nil {
			w.warnOnce(k+"\x00dup", "API endpoint ignored: the apps file has an endpoint with its id", "app", m.AppID, "endpoint", m.ID)
			continue
		}
		app, ok := w.reg.Get(m.AppID)
		if !ok {
			w.warnOnce(k+"\x00app", "API endpoint ignored: its app is not in the apps file", "app", m.AppID, "endpoint", m.ID)
			continue
		}
		var old *endpoint
		if prev != nil {
			if o := prev.byKey[k]; o != nil && o.managed {
				old = o
			}
		}
		e := newManagedEndpoint(w.cfg, app, m, w.strict, w.private, old)
		if old != nil && old.sameAs(e) {
			e = old
		} else if e.confErr != nil {
			w.log.Error("webhook endpoint unusable; its deliveries will be dead-lettered", "app", m.AppID, "endpoint", m.ID, "err", e.confErr)
		}
		add(e)
	}
	return set
}

func (w *Worker) warnOnce(key, msg string, args ...any) {
	if w.warned[key] {
		return
	}
	w.warned[key] = true
	w.log.Warn(msg, args...)
}

// lookup returns the endpoint a delivery names, syncing with the registry
// first when it is unknown (it may have just been created); nil when there
// is no such endpoint.
func (w *Worker) lookup(ctx context.Context, appID, endpointID string) *endpoint {
	k := endpointKey(appID, endpointID)
	if e := w.current().byKey[k]; e != nil || w.src == nil {
		return e
	}
	sctx, cancel := context.WithTimeout(ctx, syncTimeout)
	defer cancel()
	if err := w.src.Sync(sctx); err != nil && ctx.Err() == nil {
		w.log.Warn("endpoint registry not synced", "err", err)
	}
	return w.current().byKey[k]
}

// syncEndpoints waits until the registry has caught up with its topic,
// retrying while the broker does not answer. It returns false when ctx
// ended first.
func (w *Worker) syncEndpoints(ctx context.Context) bool {
	for {
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := w.src.Sync(sctx)
		cancel()
		if err == nil {
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		w.log.Warn("endpoint registry not caught up yet; retrying", "err", err)
		if !sleep(ctx, time.Second) {
			return false
		}
	}
}

// Stats returns the worker's counters.
func (w *Worker) Stats() Stats {
	return Stats{
		Delivered:    w.stats.delivered.Load(),
		Retried:      w.stats.retried.Load(),
		Deferred:     w.stats.deferred.Load(),
		DeadLettered: w.stats.dead.Load(),
		BadRecords:   w.stats.bad.Load(),
		Dropped:      w.stats.dropped.Load(),
	}
}

// consumer is one reader: the incidents (tier 0) or a retry tier.
type consumer struct {
	topic  string
	group  string
	tier   time.Duration
	reader *kafkago.Reader
	track  *tracker
}

// Run consumes until ctx ends, then stops fetching, lets the attempts in
// flight finish for up to ShutdownGrace (abandoning the rest: they are
// delivered again after a restart), commits what is settled and returns
// nil. It returns an error only when it cannot start (topics cannot be
// created). Run may be called once.
func (w *Worker) Run(ctx context.Context) error {
	if !w.running.CompareAndSwap(false, true) {
		return errors.New("webhooker: Run called twice")
	}
	if err := w.ensureTopics(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	// Retries name their endpoint: know every API-managed endpoint before
	// reading them.
	if w.src != nil && !w.syncEndpoints(ctx) {
		return nil
	}
	w.writer = &kafkago.Writer{
		Addr:         kafkago.TCP(w.cfg.Kafka.Brokers...),
		Balancer:     &kafkago.Murmur2Balancer{},
		RequiredAcks: kafkago.RequireAll,
		BatchTimeout: 2 * time.Millisecond,
		BatchSize:    200,
		MaxAttempts:  3,
		WriteTimeout: 10 * time.Second,
		ErrorLogger:  kafkaLogger(w.log, slog.LevelWarn),
	}
	consumers := []*consumer{{
		topic:  schemas.TopicIncidents,
		group:  schemas.GroupWebhooker,
		reader: w.newReader(schemas.TopicIncidents, schemas.GroupWebhooker),
		track:  newTracker(w.cfg.MaxPending),
	}}
	for _, t := range w.cfg.tiers() {
		consumers = append(consumers, &consumer{
			topic:  schemas.TopicWebhookRetry(t),
			group:  schemas.GroupWebhookerRetryTier(t),
			tier:   t,
			reader: w.newReader(schemas.TopicWebhookRetry(t), schemas.GroupWebhookerRetryTier(t)),
			track:  newTracker(w.cfg.MaxPending),
		})
	}
	w.log.Info("webhooker started", "endpoints", len(w.current().byKey), "tiers", len(consumers)-1, "max_attempts", w.cfg.MaxAttempts())

	// Attempts run on work, which outlives ctx by up to ShutdownGrace.
	work, abandon := context.WithCancel(context.WithoutCancel(ctx))
	defer abandon()

	var fetchers sync.WaitGroup
	for _, c := range consumers {
		fetchers.Go(func() { w.fetchLoop(ctx, work, c) })
	}
	stopBackground := make(chan struct{})
	var background sync.WaitGroup
	background.Go(func() { w.commitLoop(stopBackground, consumers) })
	background.Go(func() { w.flushLoop(stopBackground) })

	<-ctx.Done()
	fetchers.Wait()
	settled := make(chan struct{})
	go func() { w.inflight.Wait(); close(settled) }()
	grace := time.NewTimer(w.cfg.ShutdownGrace)
	select {
	case <-settled:
		grace.Stop()
	case <-grace.C:
		w.log.Warn("abandoning deliveries in flight; they will be repeated after a restart")
		abandon()
		<-settled
	}
	close(stopBackground)
	background.Wait()

	if !w.skipFinalCommit {
		w.commitAll(consumers)
	}
	var closers sync.WaitGroup
	for _, c := range consumers {
		closers.Go(func() {
			t0 := time.Now()
			if err := c.reader.Close(); err != nil {
				w.log.Warn("close reader", "topic", c.topic, "err", err)
			}
			w.log.Debug("reader closed", "topic", c.topic, "took", time.Since(t0))
		})
	}
	closers.Wait()
	for _, c := range consumers {
		w.metrics.ConsumerLag(c.group).ForgetAll()
	}
	if err := w.writer.Close(); err != nil {
		w.log.Warn("close writer", "err", err)
	}
	fctx, cancel := context.WithTimeout(context.Background(), finalTimeout)
	defer cancel()
	if err := w.deliveries.Flush(fctx); err != nil {
		w.log.Warn("flush delivery log", "err", err)
	}
	s := w.Stats()
	w.log.Info("webhooker stopped", "delivered", s.Delivered, "retried", s.Retried, "deferred", s.Deferred, "dead_lettered", s.DeadLettered, "dropped", s.Dropped)
	return nil
}

func (w *Worker) newReader(topic, group string) *kafkago.Reader {
	return kafkago.NewReader(kafkago.ReaderConfig{
		Brokers:  w.cfg.Kafka.Brokers,
		GroupID:  group,
		Topic:    topic,
		MinBytes: 1,
		MaxBytes: 10 << 20,
		// Incidents are written in Kafka transactions (the scorer's,
		// the api's commands): read committed, so a notification of a
		// transaction still open is not delivered before it commits.
		// kafka-go stops at the last stable offset but, unlike the Java
		// client and franz-go, does not drop the records of aborted
		// transactions, and hands the commit and abort markers out as
		// messages (skipped: txnMarker). An aborted transaction's
		// notifications are those its events raise again when they are
		// decided again, with the same ids (docs/architecture.md).
		IsolationLevel: kafkago.ReadCommitted,
		// A long poll: the broker answers as soon as a record arrives;
		// it may not wake a read-committed poll when a transaction
		// commits, so the poll is kept short.
		MaxWait:       250 * time.Millisecond,
		QueueCapacity: 1000,
		// Offsets are committed only through CommitMessages, in batches,
		// synchronously (commitLoop).
		CommitInterval: 0,
		StartOffset:    kafkago.FirstOffset,
		Logger:         kafkaLogger(w.log, slog.LevelDebug),
		ErrorLogger:    kafkaLogger(w.log, slog.LevelWarn),
	})
}

func kafkaLogger(log *slog.Logger, level slog.Level) kafkago.Logger {
	log = log.With("component", "kafka-go")
	return kafkago.LoggerFunc(func(msg string, args ...any) {
		if log.Enabled(context.Background(), level) {
			log.Log(context.Background(), level, fmt.Sprintf(msg, args...))
		}
	})
}

// ensureTopics creates the topics the worker uses that do not exist yet.
func (w *Worker) ensureTopics(ctx context.Context) error {
	topics := append([]string{schemas.TopicIncidents}, w.cfg.Topics()...)
	retention := fmt.Sprint(w.cfg.Kafka.Retention.Milliseconds())
	if w.cfg.Kafka.Retention < 0 {
		retention = "-1"
	}
	req := &kafkago.CreateTopicsRequest{}
	for _, t := range topics {
		req.Topics = append(req.Topics, kafkago.TopicConfig{
			Topic:             t,
			NumPartitions:     int(w.cfg.Kafka.Partitions),
			ReplicationFactor: int(w.cfg.Kafka.ReplicationFactor),
			ConfigEntries:     []kafkago.ConfigEntry{{ConfigName: "retention.ms", ConfigValue: retention}},
		})
	}
	cl := &kafkago.Client{Addr: kafkago.TCP(w.cfg.Kafka.Brokers...), Timeout: 30 * time.Second}
	resp, err := cl.CreateTopics(ctx, req)
	if err != nil {
		return fmt.Errorf("webhooker: create topics: %w", err)
	}
	for t, err := range resp.Errors {
		if err != nil && !errors.Is(err, kafkago.TopicAlreadyExists) {
			return fmt.Errorf("webhooker: create topic %s: %w", t, err)
		}
	}
	return nil
}

// fetchLoop fetches c's records until ctx ends and starts their
// deliveries on work.
func (w *Worker) fetchLoop(ctx, work context.Context, c *consumer) {
	for {
		if err := c.track.acquire(ctx); err != nil {
			return
		}
		m, err := c.reader.FetchMessage(ctx)
		if err != nil {
			c.track.release()
			if ctx.Err() != nil {
				return
			}
			w.log.Warn("fetch failed", "topic", c.topic, "err", err)
			if !sleep(ctx, time.Second) {
				return
			}
			continue
		}
		if c.tier == 0 {
			w.handleIncident(work, c, m)
		} else if !w.handleRetry(ctx, work, c, m) {
			return
		}
	}
}

// commitLoop commits settled offsets every CommitInterval until stop.
func (w *Worker) commitLoop(stop <-chan struct{}, consumers []*consumer) {
	t := time.NewTicker(w.cfg.CommitInterval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			w.commitAll(consumers)
			w.reportLag(consumers)
		}
	}
}

func (w *Worker) commitAll(consumers []*consumer) {
	for _, c := range consumers {
		msgs := c.track.ready()
		if len(msgs) == 0 {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), finalTimeout)
		err := c.reader.CommitMessages(ctx, msgs...)
		cancel()
		if err != nil {
			w.log.Warn("commit failed; retrying at the next interval", "topic", c.topic, "err", err)
			continue
		}
		c.track.committed(msgs)
	}
}

// flushLoop flushes the delivery log every LogFlushInterval until stop.
func (w *Worker) flushLoop(stop <-chan struct{}) {
	t := time.NewTicker(w.cfg.LogFlushInterval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), finalTimeout)
			if err := w.deliveries.Flush(ctx); err != nil {
				w.log.Warn("flush delivery log; rows kept for the next flush", "err", err)
			}
			cancel()
		}
	}
}

// sleep waits d or until ctx ends; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// reportLag sets each reader's lag. kafka-go reports one figure per group
// reader (the lag after the last batch it fetched, of whichever partition
// that was), so partition is "all". Nothing else reads the readers' Stats
// (which reset their counters).
func (w *Worker) reportLag(consumers []*consumer) {
	if w.metrics == nil {
		return
	}
	for _, c := range consumers {
		w.metrics.ConsumerLag(c.group).SetAll(c.topic, c.reader.Stats().Lag)
	}
}
