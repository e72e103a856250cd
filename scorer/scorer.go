// Package scorer is the scoring role: Kafka consumer workers that read the
// event log, derive each event's device (user agent, fingerprint, device
// token) and, as the risk engine grows, its signals and scores, and append a
// decision to the decisions topic.
//
// Consume, decide and produce happen in one Kafka transaction per poll
// (franz-go GroupTransactSession): the decisions and the consumed offsets
// commit together, so a crash or a rebalance neither loses nor duplicates a
// decision as seen by read-committed consumers.
package scorer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/moat-dev/moat/internal/kafka"
	"github.com/moat-dev/moat/internal/metrics"
	"github.com/moat-dev/moat/schemas"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Config configures a scorer worker.
type Config struct {
	Kafka kafka.Config
	// TransactionalID must be unique per running scorer instance and stable
	// across its restarts (for example "moat-scorer-" + pod name), so that
	// a restarted instance fences its zombie predecessor.
	TransactionalID string
	// MaxPollRecords bounds one transaction.
	MaxPollRecords int
	// BatchWait is how long a transaction stays open for more records
	// after it began, while it holds fewer than MaxPollRecords. Every
	// transaction costs several broker round trips (produce, offsets
	// commit, heartbeat, EndTxn), so under load a few milliseconds here buy
	// much larger transactions. The records polled meanwhile are decided,
	// produced and replied to at once: it delays the commit, not a scored
	// call's answer (only a read right after the answer waits for the
	// commit, see api.Pending).
	BatchWait time.Duration
	// Metrics records decisions and transactions (optional).
	Metrics *metrics.Metrics
	// Erasures names the users deleted through the privacy API (the
	// internal/privacy registry, caught up before Run); nil skips no one,
	// though user.delete commands still drop the user's state.
	Erasures Erasures
}

// Validate checks the configuration.
func (c Config) Validate() error {
	if c.TransactionalID == "" {
		return errors.New("scorer: transactional id is required")
	}
	if c.MaxPollRecords < 1 {
		return errors.New("scorer: max poll records must be at least 1")
	}
	return c.Kafka.Validate()
}

// Worker consumes TopicEvents and produces TopicDecisions.
type Worker struct {
	cfg     Config
	decider *Decider
	log     *slog.Logger
	sess    *kgo.GroupTransactSession
	store   *stateStore
	lag     *metrics.LagTracker
	replies *replier
	// scratch is the buffer decisions are encoded in (process runs on one
	// goroutine).
	scratch []byte
}

// New connects a worker to the brokers. Call Run to start it.
func New(cfg Config, decider *Decider, log *slog.Logger) (*Worker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	w := &Worker{cfg: cfg, decider: decider, log: log.With("role", "scorer")}
	w.store = newStateStore(cfg.Kafka, decider.NewState, w.log)
	w.store.metrics = cfg.Metrics
	w.lag = cfg.Metrics.ConsumerLag(schemas.GroupScorer, metrics.ReadCommitted())
	replies, err := newReplier(cfg.Kafka, w.log)
	if err != nil {
		return nil, err
	}
	sess, err := w.session().open()
	if err != nil {
		replies.close()
		return nil, err
	}
	w.sess, w.replies = sess, replies
	return w, nil
}

// session is how the worker opens its transactional session.
func (w *Worker) session() *txnSession {
	return &txnSession{
		name: "scorer", kafka: w.cfg.Kafka, txnID: w.cfg.TransactionalID,
		group: schemas.GroupScorer, topic: schemas.TopicEvents,
		// Changelog records carry the partition of the event they come
		// from; every other record is placed by its key (murmur2).
		partitioner: kgo.BasicConsistentPartitioner(func(topic string) func(*kgo.Record, int) int {
			if topic == schemas.TopicScorerState {
				return func(r *kgo.Record, _ int) int { return int(r.Partition) }
			}
			p := kgo.StickyKeyPartitioner(nil).ForTopic(topic)
			return func(r *kgo.Record, n int) int { return p.Partition(r, n) }
		}),
		log: w.log,
		// A rebalance may hand our partitions to another worker: forget
		// their users, the next owner restores them from the changelog.
		revoked: func(ps map[string][]int32) {
			w.store.dropOnNextPoll.Store(true)
			w.lag.Forget(ps)
		},
	}
}

// Run consumes until ctx ends, then leaves the group and closes the client.
// An open transaction is aborted on shutdown; its events are decided again
// by whichever worker owns their partition next.
func (w *Worker) Run(ctx context.Context) error {
	defer func() { w.sess.Close(); w.replies.close(); w.lag.ForgetAll() }()
	for {
		fetches := w.sess.PollRecords(ctx, w.cfg.MaxPollRecords)
		if fetches.IsClientClosed() || ctx.Err() != nil {
			return nil
		}
		fetches.EachError(func(topic string, p int32, err error) {
			w.log.Warn("fetch failed", "topic", topic, "partition", p, "err", err)
		})
		if w.store.dropOnNextPoll.Swap(false) {
			w.store.reset()
		}
		if fetches.NumRecords() == 0 {
			continue
		}
		start := time.Now()
		fetches, err := w.transact(ctx, fetches)
		w.cfg.Metrics.Transaction(time.Since(start), err)
		if err == nil {
			w.lag.Observe(fetches)
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			w.log.Error("transaction failed; the batch will be decided again", "err", err)
			w.store.reset() // it may hold changes that never committed
			if err := w.restart(ctx); err != nil {
				return nil // ctx ended while reconnecting
			}
		}
	}
}

// pollMore polls, until deadline, for up to max more records to decide in
// the open transaction. It returns false when the transaction should end
// now: the deadline passed, a rebalance is under way, or ctx ended.
func (w *Worker) pollMore(ctx context.Context, deadline time.Time, max int) (kgo.Fetches, bool) {
	left := time.Until(deadline)
	if left <= 0 || max <= 0 || w.store.dropOnNextPoll.Load() {
		return nil, false
	}
	pctx, cancel := context.WithTimeout(ctx, left)
	defer cancel()
	more := w.sess.PollRecords(pctx, max)
	if more.IsClientClosed() || ctx.Err() != nil {
		return nil, false
	}
	more.EachError(func(topic string, p int32, err error) {
		if !errors.Is(err, context.DeadlineExceeded) {
			w.log.Warn("fetch failed", "topic", topic, "partition", p, "err", err)
		}
	})
	return more, true
}

// restart replaces the session after a failed transaction (see
// txnSession.reopen).
func (w *Worker) restart(ctx context.Context) error {
	sess, err := w.session().reopen(ctx, w.sess)
	if err != nil {
		return err
	}
	w.sess = sess
	return nil
}

// transact decides fetches, and what more arrives within BatchWait, in one
// transaction, and returns all it decided.
func (w *Worker) transact(ctx context.Context, fetches kgo.Fetches) (kgo.Fetches, error) {
	// Restore newly owned partitions before the transaction starts, so a
	// long restore cannot outlive the transaction timeout.
	var rerr error
	fetches.EachPartition(func(p kgo.FetchTopicPartition) {
		if rerr == nil && len(p.Records) > 0 {
			rerr = w.store.ensure(ctx, p.Partition)
		}
	})
	if rerr != nil {
		return fetches, fmt.Errorf("scorer: restore state: %w", rerr)
	}
	if err := w.sess.Begin(); err != nil {
		return fetches, fmt.Errorf("scorer: begin transaction: %w", err)
	}
	deadline := time.Now().Add(w.cfg.BatchWait)
	var (
		mu      sync.Mutex
		prodErr error
	)
	promise := func(r *kgo.Record, err error) {
		w.afterProduce(r, err)
		if err != nil {
			mu.Lock()
			prodErr = errors.Join(prodErr, err)
			mu.Unlock()
		}
	}
	var procErr error
	decide := func(r *kgo.Record) {
		if procErr != nil {
			return
		}
		outs, err := w.process(ctx, r)
		if err != nil {
			procErr = err
			return
		}
		for _, out := range outs {
			w.sess.Produce(ctx, out, promise)
		}
	}
	fetches.EachRecord(decide)
	// Records that arrive while the transaction is open join it and are
	// decided as they come. A partition newly assigned meanwhile is
	// restored in the transaction (by process), which a transaction outlives
	// unless the changelog is huge; then it fails and is retried, restored
	// before it begins.
	for procErr == nil {
		more, ok := w.pollMore(ctx, deadline, w.cfg.MaxPollRecords-fetches.NumRecords())
		if !ok {
			break
		}
		more.EachRecord(decide)
		if more.NumRecords() > 0 {
			fetches = append(fetches, more...)
		}
	}
	if procErr != nil {
		prodErr = errors.Join(prodErr, procErr)
	}
	mu.Lock()
	try := kgo.TransactionEndTry(prodErr == nil)
	mu.Unlock()
	committed, err := w.sess.End(ctx, try)
	if err != nil {
		return fetches, fmt.Errorf("scorer: end transaction: %w", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if prodErr != nil {
		return fetches, fmt.Errorf("scorer: produce decisions: %w", prodErr)
	}
	if !committed {
		return fetches, errors.New("scorer: transaction aborted by a rebalance")
	}
	return fetches, nil
}

// process turns one event record into its decision record, the user's new
// state on the changelog, the notifications it raises and, for a
// synchronous call, the reply to the waiting ingest instance; or into a
// dead letter when the record cannot be decoded. It fails only when the
// user's state cannot be restored.
func (w *Worker) process(ctx context.Context, r *kgo.Record) ([]*kgo.Record, error) {
	var ev schemas.Event
	if err := schemas.DecodeEvent(r.Value, &ev); err != nil || !ev.Kind.Known() || ev.ID == "" || ev.AppID == "" {
		reason := "unknown event kind or missing id"
		if err != nil {
			reason = err.Error()
		}
		w.log.Error("undecodable event sent to the dead-letter topic", "partition", r.Partition, "offset", r.Offset, "err", reason)
		w.cfg.Metrics.DeadLettered()
		return []*kgo.Record{deadLetter(r, reason)}, nil
	}
	if out, ok, err := w.privacy(ctx, r, &ev); ok {
		return out, err
	}
	st, err := w.store.get(ctx, r.Partition, r.Key)
	if err != nil {
		return nil, fmt.Errorf("scorer: restore state of partition %d: %w", r.Partition, err)
	}
	d, notes := w.decider.Decide(&ev, st.(*UserState))
	w.cfg.Metrics.Decided(string(ev.Kind), d.Action, d.Signals)
	var obs []schemas.Observation
	if w.decider.shared != nil {
		obs = d.Observations
	}
	// The records of one event are allocated together, in the order they
	// are produced: the decision, the reply of a command, the
	// notifications, the observations, the state.
	n := 2 + len(notes) + len(obs)
	if ev.ReplyTo != "" {
		n++
	}
	block := make([]kgo.Record, n)
	out := make([]*kgo.Record, 0, n)
	next := func() *kgo.Record {
		r := &block[0]
		block = block[1:]
		return r
	}
	// The decision is encoded into the worker's buffer, then copied once
	// into a slice of its size, rather than grown from a guess.
	w.scratch = d.AppendJSON(w.scratch[:0])
	b := bytes.Clone(w.scratch)
	if cap(w.scratch) > maxScratch {
		w.scratch = nil
	}
	rec := next()
	*rec = kgo.Record{Topic: schemas.TopicDecisions, Key: r.Key, Value: b, Headers: decisionHeaders}
	out = append(out, rec)
	if ev.ReplyTo != "" {
		out = w.reply(out, &ev, b, decisionHeaders, next)
	}
	for i := range notes {
		nb, err := notes[i].AppendJSON(w.scratch[:0])
		if err != nil {
			return nil, fmt.Errorf("scorer: encode notification: %w", err)
		}
		w.scratch = nb
		nb = bytes.Clone(nb)
		rec := next()
		*rec = kgo.Record{Topic: schemas.TopicIncidents, Key: notes[i].Key(), Value: nb, Headers: notificationHeaders}
		out = append(out, rec)
	}
	out = appendObservationRecords(out, obs, next)
	sr := next()
	if err := w.store.record(sr, r.Partition, r.Key); err != nil {
		return nil, err
	}
	return append(out, sr), nil
}

// maxScratch bounds the encoding buffer a worker keeps between events.
const maxScratch = 1 << 20

// The schema headers of the records the scorer writes, shared by all of
// them (nothing modifies a produced record's headers).
var (
	decisionHeaders     = []kgo.RecordHeader{{Key: schemas.HeaderSchema, Value: []byte("decision.v1")}}
	notificationHeaders = []kgo.RecordHeader{{Key: schemas.HeaderSchema, Value: []byte("notification.v1")}}
	observationHeaders  = []kgo.RecordHeader{{Key: schemas.HeaderSchema, Value: []byte("observation.v1")}}
	stateHeaders        = []kgo.RecordHeader{{Key: schemas.HeaderSchema, Value: []byte("scorer-state.v1")}}
)

func deadLetter(r *kgo.Record, reason string) *kgo.Record {
	return &kgo.Record{
		Topic: schemas.TopicDeadLetter,
		Key:   r.Key,
		Value: r.Value,
		Headers: append(append([]kgo.RecordHeader(nil), r.Headers...),
			kgo.RecordHeader{Key: schemas.HeaderError, Value: []byte(reason)},
			kgo.RecordHeader{Key: schemas.HeaderSource, Value: []byte(r.Topic + "/" + strconv.Itoa(int(r.Partition)) + "/" + strconv.FormatInt(r.Offset, 10))},
		),
	}
}
