package webhooker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moat-dev/moat/internal/apps"
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
	endpoints  map[string]*endpoint
	byApp      map[string][]*endpoint
	now        func() time.Time

	writer   *kafkago.Writer
	inflight sync.WaitGroup
	running  atomic.Bool
	stats    counters

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
}

type counters struct {
	delivered, retried, deferred, dead, bad atomic.Int64
}

// New returns a worker delivering the notifications of the apps in reg.
// deliveries may be nil (no delivery log); log may be nil (slog.Default).
// The registry is read once: restart the worker to apply a changed apps
// file.
func New(cfg Config, reg *apps.Registry, deliveries DeliveryLog, log *slog.Logger) (*Worker, error) {
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
		endpoints:  map[string]*endpoint{},
		byApp:      map[string][]*endpoint{},
		now:        time.Now,
	}
	strict, private := newClient(cfg, false), newClient(cfg, true)
	for _, app := range reg.All() {
		for _, h := range app.Webhooks {
			k := endpointKey(app.ID, h.ID)
			if h.ID == "" || w.endpoints[k] != nil {
				log.Warn("webhook endpoint skipped: its id is empty or not unique in the app", "app", app.ID, "endpoint", h.ID)
				continue
			}
			e := newEndpoint(cfg, app, h, strict, private)
			if e.urlErr != nil {
				log.Warn("webhook endpoint has an invalid url; its deliveries will be dead-lettered", "app", app.ID, "endpoint", h.ID, "err", e.urlErr)
			}
			w.endpoints[k] = e
			w.byApp[app.ID] = append(w.byApp[app.ID], e)
		}
	}
	return w, nil
}

// Stats returns the worker's counters.
func (w *Worker) Stats() Stats {
	return Stats{
		Delivered:    w.stats.delivered.Load(),
		Retried:      w.stats.retried.Load(),
		Deferred:     w.stats.deferred.Load(),
		DeadLettered: w.stats.dead.Load(),
		BadRecords:   w.stats.bad.Load(),
	}
}

// consumer is one reader: the incidents (tier 0) or a retry tier.
type consumer struct {
	topic  string
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
		reader: w.newReader(schemas.TopicIncidents, schemas.GroupWebhooker),
		track:  newTracker(w.cfg.MaxPending),
	}}
	for _, t := range w.cfg.tiers() {
		consumers = append(consumers, &consumer{
			topic:  schemas.TopicWebhookRetry(t),
			tier:   t,
			reader: w.newReader(schemas.TopicWebhookRetry(t), schemas.GroupWebhookerRetryTier(t)),
			track:  newTracker(w.cfg.MaxPending),
		})
	}
	w.log.Info("webhooker started", "endpoints", len(w.endpoints), "tiers", len(consumers)-1, "max_attempts", w.cfg.MaxAttempts())

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
	if err := w.writer.Close(); err != nil {
		w.log.Warn("close writer", "err", err)
	}
	fctx, cancel := context.WithTimeout(context.Background(), finalTimeout)
	defer cancel()
	if err := w.deliveries.Flush(fctx); err != nil {
		w.log.Warn("flush delivery log", "err", err)
	}
	s := w.Stats()
	w.log.Info("webhooker stopped", "delivered", s.Delivered, "retried", s.Retried, "deferred", s.Deferred, "dead_lettered", s.DeadLettered)
	return nil
}

func (w *Worker) newReader(topic, group string) *kafkago.Reader {
	return kafkago.NewReader(kafkago.ReaderConfig{
		Brokers:  w.cfg.Kafka.Brokers,
		GroupID:  group,
		Topic:    topic,
		MinBytes: 1,
		MaxBytes: 10 << 20,
		// A long poll: the broker answers as soon as a record arrives.
		MaxWait:       time.Second,
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
