package scorer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/moat-dev/moat/internal/kafka"
	"github.com/moat-dev/moat/internal/metrics"
	"github.com/moat-dev/moat/schemas"
	"github.com/moat-dev/moat/scorer/risk"
	"github.com/twmb/franz-go/pkg/kgo"
)

// AggregatorConfig configures an Aggregator.
type AggregatorConfig struct {
	Kafka kafka.Config
	// TransactionalID must be unique per running aggregator and stable
	// across its restarts (the scorer role derives it from its own).
	TransactionalID string
	// MaxPollRecords bounds one transaction.
	MaxPollRecords int
	// KeysPerPartition bounds the entries of one partition: when a new key
	// would exceed it, the least recently seen eighth is evicted (and
	// tombstoned on TopicShared). Default 16,384.
	KeysPerPartition int
	// Metrics records consumer lag (optional).
	Metrics *metrics.Metrics
}

// Aggregator is the cross-user stage of the scorer role: it consumes
// TopicObservations, partitioned by IP, device and mailbox, folds each
// observation into its key's risk.SharedEntry and writes the entries it
// changed to TopicShared, in one Kafka transaction with the consumed
// offsets. Like the scorer, it holds the state of the partitions it owns
// only, restores a partition from TopicShared (compacted, partitioned like
// its input) when it takes it over, and drops everything after a failed
// transaction or a rebalance. Every scorer follows TopicShared
// (SharedTable).
type Aggregator struct {
	cfg  AggregatorConfig
	log  *slog.Logger
	sess *kgo.GroupTransactSession
	lag  *metrics.LagTracker

	parts map[int32]map[string]*risk.SharedEntry
	// drop is set by rebalance callbacks (another goroutine).
	drop atomic.Bool
}

// NewAggregator connects an aggregator. Call Run to start it.
func NewAggregator(cfg AggregatorConfig, log *slog.Logger) (*Aggregator, error) {
	if cfg.TransactionalID == "" {
		return nil, errors.New("aggregator: transactional id is required")
	}
	if cfg.MaxPollRecords < 1 {
		return nil, errors.New("aggregator: max poll records must be at least 1")
	}
	if cfg.KeysPerPartition <= 0 {
		cfg.KeysPerPartition = 1 << 14
	}
	if err := cfg.Kafka.Validate(); err != nil {
		return nil, err
	}
	a := &Aggregator{cfg: cfg, log: log.With("role", "aggregator"), parts: map[int32]map[string]*risk.SharedEntry{}}
	a.lag = cfg.Metrics.ConsumerLag(schemas.GroupAggregator, metrics.ReadCommitted())
	sess, err := a.newSession()
	if err != nil {
		return nil, err
	}
	a.sess = sess
	return a, nil
}

func (a *Aggregator) newSession() (*kgo.GroupTransactSession, error) {
	forget := func(_ context.Context, _ *kgo.Client, ps map[string][]int32) {
		a.drop.Store(true)
		a.lag.Forget(ps)
	}
	opts := append(append(kafka.ClientOpts(a.cfg.Kafka, a.log, "moat-aggregator"), kafka.GroupOpts()...),
		kgo.TransactionalID(a.cfg.TransactionalID),
		kgo.TransactionTimeout(10*time.Second),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumerGroup(schemas.GroupAggregator),
		kgo.ConsumeTopics(schemas.TopicObservations),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.RequireStableFetchOffsets(),
		kgo.ProducerLinger(0),
		// An entry goes to the partition of the observations it folds.
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.OnPartitionsRevoked(forget),
		kgo.OnPartitionsLost(forget),
	)
	sess, err := kgo.NewGroupTransactSession(opts...)
	if err != nil {
		return nil, fmt.Errorf("aggregator: create kafka session: %w", err)
	}
	return sess, nil
}

// Run aggregates until ctx ends, then leaves the group and closes the
// client.
func (a *Aggregator) Run(ctx context.Context) error {
	defer func() { a.sess.Close(); a.lag.ForgetAll() }()
	for {
		fetches := a.sess.PollRecords(ctx, a.cfg.MaxPollRecords)
		if fetches.IsClientClosed() || ctx.Err() != nil {
			return nil
		}
		fetches.EachError(func(topic string, p int32, err error) {
			a.log.Warn("fetch failed", "topic", topic, "partition", p, "err", err)
		})
		if a.drop.Swap(false) {
			clear(a.parts)
		}
		if fetches.NumRecords() == 0 {
			continue
		}
		if err := a.transact(ctx, fetches); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			a.log.Error("transaction failed; the batch will be folded again", "err", err)
			clear(a.parts) // it may hold changes that never committed
			a.sess.Close()
			b := backoff.WithContext(backoff.NewExponentialBackOff(backoff.WithMaxElapsedTime(0), backoff.WithMaxInterval(5*time.Second)), ctx)
			if err := backoff.Retry(func() error {
				sess, err := a.newSession()
				if err == nil {
					a.sess = sess
				}
				return err
			}, b); err != nil {
				return nil // ctx ended while reconnecting
			}
			continue
		}
		a.lag.Observe(fetches)
	}
}

func (a *Aggregator) transact(ctx context.Context, fetches kgo.Fetches) error {
	var rerr error
	fetches.EachPartition(func(p kgo.FetchTopicPartition) {
		if rerr == nil && len(p.Records) > 0 && a.parts[p.Partition] == nil {
			rerr = a.restore(ctx, p.Partition)
		}
	})
	if rerr != nil {
		return fmt.Errorf("aggregator: restore: %w", rerr)
	}
	if err := a.sess.Begin(); err != nil {
		return fmt.Errorf("aggregator: begin transaction: %w", err)
	}
	// The changed keys per partition, in first-change order; an evicted
	// key becomes a tombstone.
	type change struct {
		p   int32
		key string
	}
	var changed []change
	seen := map[change]bool{}
	var dead []*kgo.Record
	fetches.EachRecord(func(r *kgo.Record) {
		o, err := schemas.DecodeObservation(r.Key, r.Value)
		if err != nil {
			a.log.Error("undecodable observation sent to the dead-letter topic", "partition", r.Partition, "offset", r.Offset)
			dead = append(dead, deadLetter(r, err.Error()))
			return
		}
		m := a.parts[r.Partition]
		e := m[string(r.Key)]
		if e == nil {
			if len(m) >= a.cfg.KeysPerPartition {
				for _, k := range risk.EvictOldest(m, len(m)/8+1) {
					if c := (change{r.Partition, k}); !seen[c] {
						seen[c] = true
						changed = append(changed, c)
					}
				}
			}
			e = &risk.SharedEntry{}
			m[string(r.Key)] = e
		}
		e.Apply(&o)
		if c := (change{r.Partition, string(r.Key)}); !seen[c] {
			seen[c] = true
			changed = append(changed, c)
		}
	})
	var (
		mu      sync.Mutex
		prodErr error
	)
	promise := func(_ *kgo.Record, err error) {
		if err != nil {
			mu.Lock()
			prodErr = errors.Join(prodErr, err)
			mu.Unlock()
		}
	}
	hdr := []kgo.RecordHeader{{Key: schemas.HeaderSchema, Value: []byte("shared-entry.v1")}}
	for _, c := range changed {
		rec := &kgo.Record{Topic: schemas.TopicShared, Partition: c.p, Key: []byte(c.key), Headers: hdr}
		if e := a.parts[c.p][c.key]; e != nil {
			rec.Value = e.AppendBinary(make([]byte, 0, risk.SharedEntrySize))
		}
		a.sess.Produce(ctx, rec, promise)
	}
	for _, r := range dead {
		r.Partition = 0
		a.sess.Produce(ctx, r, promise)
	}
	mu.Lock()
	try := kgo.TransactionEndTry(prodErr == nil)
	mu.Unlock()
	committed, err := a.sess.End(ctx, try)
	if err != nil {
		return fmt.Errorf("aggregator: end transaction: %w", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if prodErr != nil {
		return fmt.Errorf("aggregator: produce entries: %w", prodErr)
	}
	if !committed {
		return errors.New("aggregator: transaction aborted by a rebalance")
	}
	return nil
}

// restore reads a partition's entries from TopicShared.
func (a *Aggregator) restore(ctx context.Context, partition int32) error {
	start := time.Now()
	m := map[string]*risk.SharedEntry{}
	err := readCompacted(ctx, a.cfg.Kafka, a.log, schemas.TopicShared, partition, func(r *kgo.Record) {
		if len(r.Value) == 0 {
			delete(m, string(r.Key))
			return
		}
		e := &risk.SharedEntry{}
		if err := e.UnmarshalBinary(r.Value); err != nil {
			a.log.Error("undecodable shared entry; the key starts fresh", "partition", partition, "offset", r.Offset, "err", err)
			return
		}
		m[string(r.Key)] = e
	})
	if err != nil {
		return err
	}
	a.parts[partition] = m
	a.log.Info("restored shared state", "partition", partition, "keys", len(m), "took", time.Since(start))
	return nil
}
