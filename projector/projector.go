// Package projector is the projection role: it consumes the decisions topic
// and materializes the timeline (events) and, through a ClickHouse
// materialized view, the per-device state (devices) in ClickHouse.
//
// Delivery is at-least-once with idempotent writes: offsets are committed
// only after ClickHouse accepted the batch that holds them, and a redelivered
// record writes the very same row again, which ReplacingMergeTree folds (and
// FINAL hides before the merge). So every decision is seen exactly once by a
// query, through crashes, rebalances and ClickHouse outages.
package projector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/cenkalti/backoff/v4"
	"github.com/moat-dev/moat/internal/kafka"
	"github.com/moat-dev/moat/internal/metrics"
	"github.com/moat-dev/moat/schemas"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Config configures a projector worker.
type Config struct {
	Kafka kafka.Config
	// Database is the ClickHouse database holding the views.
	Database string
	// BatchSize flushes once this many rows are buffered.
	BatchSize int
	// FlushInterval flushes buffered rows at least this often.
	FlushInterval time.Duration
	// InsertTimeout bounds one ClickHouse insert attempt.
	InsertTimeout time.Duration
	// Metrics records inserts and freshness (optional).
	Metrics *metrics.Metrics
	// Erasures names the users deleted through the privacy API (the
	// internal/privacy registry, caught up before Run): their rows are
	// never inserted. nil inserts every row, though user.delete commands
	// are still carried out.
	Erasures Erasures
	// MutationWait bounds how long a user's erasure waits for ClickHouse's
	// mutations to finish (default 2 minutes).
	MutationWait time.Duration
	// Cluster is the ClickHouse cluster whose servers hold the database in
	// the cluster form of the schema (schemas.ClusterMigrations): events
	// and the aggregates are Distributed tables over *_local tables. ""
	// is a single server. Erasure then mutates the local tables ON
	// CLUSTER and waits for the mutations of every shard, and inserts are
	// synchronous (docs/operations.md#clickhouse-cluster).
	Cluster string
}

// Validate checks the configuration.
func (c Config) Validate() error {
	switch {
	case c.Database == "":
		return errors.New("projector: database is required")
	case c.BatchSize < 1:
		return errors.New("projector: batch size must be at least 1")
	case c.FlushInterval <= 0 || c.FlushInterval > time.Minute:
		return errors.New("projector: flush interval must be in (0, 1m]")
	case c.InsertTimeout <= 0:
		return errors.New("projector: insert timeout must be positive")
	}
	if c.Cluster != "" {
		if err := schemas.ValidClusterName(c.Cluster); err != nil {
			return fmt.Errorf("projector: %w", err)
		}
	}
	return c.Kafka.Validate()
}

// Worker consumes TopicDecisions into ClickHouse.
type Worker struct {
	cfg  Config
	conn driver.Conn
	cl   *kgo.Client
	log  *slog.Logger
	lag  *metrics.LagTracker

	rows     []eventRow
	received []int64 // received_at (epoch ms) of each row, for freshness
	pending  int     // records polled since the last commit
	first    time.Time
	erasures []erasure // user.delete commands to carry out before the commit
}

// New connects a worker to the brokers. conn is not closed by the worker.
func New(cfg Config, conn driver.Conn, log *slog.Logger) (*Worker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	// Every decision is written in a scorer transaction.
	lag := cfg.Metrics.ConsumerLag(schemas.GroupProjector, metrics.ReadCommitted(), metrics.TransactionalTopic())
	forget := func(_ context.Context, _ *kgo.Client, ps map[string][]int32) { lag.Forget(ps) }
	opts := append(append(kafka.ClientOpts(cfg.Kafka, log, "moat-projector"), kafka.GroupOpts()...),
		kgo.ConsumerGroup(schemas.GroupProjector),
		kgo.ConsumeTopics(schemas.TopicDecisions),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.OnPartitionsRevoked(forget),
		kgo.OnPartitionsLost(forget),
	)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("projector: create kafka client: %w", err)
	}
	return &Worker{cfg: cfg, conn: conn, cl: cl, log: log.With("role", "projector"), lag: lag}, nil
}

// Run projects until ctx ends. On shutdown it flushes and commits what it
// buffered (within a bounded drain), then leaves the group.
func (w *Worker) Run(ctx context.Context) error {
	defer func() {
		w.cl.AllowRebalance() // leaving the group waits for a blocked rebalance
		w.cl.Close()
		w.lag.ForgetAll()
	}()
	for {
		pollCtx, cancel := context.WithTimeout(ctx, w.untilFlush())
		fetches := w.cl.PollRecords(pollCtx, w.cfg.BatchSize-len(w.rows))
		cancel()
		if fetches.IsClientClosed() {
			return nil
		}
		fetches.EachError(func(topic string, p int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
				w.log.Warn("fetch failed", "topic", topic, "partition", p, "err", err)
			}
		})
		n := 0
		fetches.EachRecord(func(r *kgo.Record) {
			w.add(r)
			if n++; n%yieldEvery == 0 {
				runtime.Gosched()
			}
		})
		w.lag.Observe(fetches)
		if ctx.Err() != nil {
			return w.drain()
		}
		if len(w.rows) >= w.cfg.BatchSize || len(w.erasures) > 0 || (w.pending > 0 && w.untilFlush() <= 0) {
			if err := w.flush(ctx); err != nil {
				if ctx.Err() != nil {
					return w.drain()
				}
				return err
			}
		}
		if w.pending == 0 {
			w.cl.AllowRebalance()
		}
	}
}

// yieldEvery is how many decisions the projector decodes before it lets
// other goroutines run (runtime.Gosched), as it does between the columns
// of an insert. A poll can hold thousands of decisions and a batch takes
// milliseconds per column; without yielding, the Go scheduler lets such a
// stretch hold its processor for up to 10 ms before preempting it. In
// `moat dev`, every role shares one process and two processors are
// common, so ingest's and the scorer's goroutines (a risk call's path)
// would wait behind it. A yield costs well under a microsecond.
const yieldEvery = 32

func (w *Worker) untilFlush() time.Duration {
	if w.pending == 0 {
		return w.cfg.FlushInterval
	}
	return w.cfg.FlushInterval - time.Since(w.first)
}

// add buffers one record's row. Records that cannot be decoded are logged
// and skipped from the view (they are kept on the decisions topic).
func (w *Worker) add(r *kgo.Record) {
	if w.pending == 0 {
		w.first = time.Now()
	}
	w.pending++
	// The decision is decoded into its row in place.
	w.rows = append(w.rows, eventRow{})
	row := &w.rows[len(w.rows)-1]
	if err := schemas.DecodeDecision(r.Value, &row.d); err != nil {
		w.dropLast()
		w.log.Error("undecodable decision left out of ClickHouse", "partition", r.Partition, "offset", r.Offset, "err", err)
		return
	}
	if row.d.Event.Kind == schemas.KindUserDelete {
		w.addErasure(&row.d)
		w.dropLast()
		return
	}
	if err := row.derive(r.Partition, r.Offset); err != nil {
		w.dropLast()
		w.log.Error("decision left out of ClickHouse", "partition", r.Partition, "offset", r.Offset, "err", err)
		return
	}
}

// dropLast drops the last buffered row.
func (w *Worker) dropLast() {
	n := len(w.rows) - 1
	w.rows[n] = eventRow{}
	w.rows = w.rows[:n]
}

// flush writes the buffered rows, retrying until ClickHouse takes them or
// ctx ends, and then commits the offsets of every record polled so far.
func (w *Worker) flush(ctx context.Context) error {
	w.dropForgotten()
	if len(w.rows) > 0 {
		b := backoff.WithContext(&backoff.ExponentialBackOff{
			InitialInterval: 100 * time.Millisecond, RandomizationFactor: 0.2, Multiplier: 2,
			MaxInterval: 5 * time.Second, MaxElapsedTime: 0, Stop: backoff.Stop, Clock: backoff.SystemClock,
		}, ctx)
		b.Reset()
		attempt := 0
		err := backoff.Retry(func() error {
			attempt++
			start := time.Now()
			err := w.insert(ctx)
			if err == nil {
				w.cfg.Metrics.Inserted(len(w.rows), time.Since(start), w.receivedMs())
			} else {
				w.cfg.Metrics.InsertFailed()
			}
			if err != nil && ctx.Err() == nil {
				w.log.Warn("clickhouse insert failed; retrying", "rows", len(w.rows), "attempt", attempt, "err", err)
			}
			return err
		}, b)
		if err != nil {
			return fmt.Errorf("projector: insert %d rows: %w", len(w.rows), err)
		}
	}
	if err := w.erase(ctx); err != nil {
		return err
	}
	if err := w.cl.CommitUncommittedOffsets(ctx); err != nil {
		// The rows are in ClickHouse; a redelivery writes the same rows
		// again and the views fold them, so this is safe to leave.
		w.log.Warn("offset commit failed; records will be redelivered", "err", err)
	}
	w.reset()
	return nil
}

// reset drops the buffered rows (written), keeping their memory.
func (w *Worker) reset() {
	clear(w.rows) // let go of the decisions
	w.rows = w.rows[:0]
	w.pending = 0
}

// receivedMs returns the received_at (epoch ms) of each buffered row, for
// freshness.
func (w *Worker) receivedMs() []int64 {
	w.received = w.received[:0]
	for i := range w.rows {
		w.received = append(w.received, w.rows[i].d.Event.ReceivedAt.UnixMilli())
	}
	return w.received
}

func (w *Worker) insert(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(w.clusterInsert(ctx), w.cfg.InsertTimeout)
	defer cancel()
	batch, err := w.conn.PrepareBatch(ctx, insertEvents(w.cfg.Database))
	if err != nil {
		return fmt.Errorf("prepare insert into events: %w", err)
	}
	defer batch.Close()
	cols := batch.Columns()
	if len(cols) != len(eventSchema) {
		return fmt.Errorf("insert into events: server expects %d columns, want %d", len(cols), len(eventSchema))
	}
	// Column by column from the buffered rows, so a retry sends the very
	// same rows again.
	var buf fillBuffer
	for i, c := range eventSchema {
		if cols[i].Name() != c.name {
			return fmt.Errorf("insert into events: column %d is %s, want %s", i, cols[i].Name(), c.name)
		}
		if err := c.fill(batch.Column(i), w.rows, &buf); err != nil {
			return fmt.Errorf("append column %s to events batch: %w", c.name, err)
		}
		runtime.Gosched() // see yieldEvery
	}
	if err := batch.Send(); err != nil {
		return fmt.Errorf("send events batch: %w", err)
	}
	return nil
}

// drain flushes what is buffered on shutdown, bounded by a fresh deadline
// (ctx has already ended). What it cannot write stays uncommitted and is
// redelivered to the next owner of the partitions.
func (w *Worker) drain() error {
	if w.pending == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := w.flush(ctx); err != nil {
		w.log.Warn("shutdown flush failed; records will be redelivered", "err", err)
	}
	return nil
}
