package scorer

import (
	"context"
	"errors"
	"log/slog"
	"time"

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

// aggregatorBatchWait is how long the aggregator collects a short batch.
const aggregatorBatchWait = 100 * time.Millisecond

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
	loop *txnLoop

	parts map[int32]map[string]*risk.SharedEntry
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
	a.loop = &txnLoop{
		txnSession: txnSession{
			name: "aggregator", kafka: cfg.Kafka, txnID: cfg.TransactionalID,
			group: schemas.GroupAggregator, topic: schemas.TopicObservations,
			// An entry goes to the partition of the observations it folds.
			partitioner: kgo.ManualPartitioner(),
			log:         a.log,
		},
		maxPoll: cfg.MaxPollRecords,
		// Every transaction costs several broker round trips; at low
		// rates a poll holds a few observations, so the aggregator
		// collects for a while first. The counts trail the decisions by
		// this much more, which no threshold notices.
		batchWait: aggregatorBatchWait,
		lag:       cfg.Metrics.ConsumerLag(schemas.GroupAggregator, metrics.ReadCommitted()),
		restore: func(ctx context.Context, p int32) error {
			if a.parts[p] != nil {
				return nil
			}
			return a.restore(ctx, p)
		},
		process: a.fold,
		reset:   func() { clear(a.parts) },
	}
	if err := a.loop.connect(); err != nil {
		return nil, err
	}
	return a, nil
}

// Run aggregates until ctx ends, then leaves the group and closes the
// client.
func (a *Aggregator) Run(ctx context.Context) error { return a.loop.run(ctx) }

// fold applies a batch of observations to their keys' entries and produces
// each changed entry once (an evicted one as a tombstone).
func (a *Aggregator) fold(_ context.Context, fetches kgo.Fetches, produce func(*kgo.Record)) error {
	type change struct {
		p   int32
		key string
	}
	// changed lists each changed key once, in the order first changed;
	// seen holds them per partition, so that a key already changed in
	// this batch is found without building its string.
	var changed []change
	seen := map[int32]map[string]bool{}
	mark := func(p int32, key string) {
		sp := seen[p]
		if sp == nil {
			sp = map[string]bool{}
			seen[p] = sp
		}
		if !sp[key] {
			sp[key] = true
			changed = append(changed, change{p, key})
		}
	}
	fetches.EachRecord(func(r *kgo.Record) {
		o, err := schemas.DecodeObservation(r.Key, r.Value)
		if err != nil {
			a.log.Error("undecodable observation sent to the dead-letter topic", "partition", r.Partition, "offset", r.Offset)
			dl := deadLetter(r, err.Error())
			dl.Partition = 0 // the manual partitioner places every record
			produce(dl)
			return
		}
		m := a.parts[r.Partition]
		e := m[string(r.Key)]
		if e == nil {
			if len(m) >= a.cfg.KeysPerPartition {
				for _, k := range risk.EvictOldest(m, len(m)/8+1) {
					mark(r.Partition, k)
				}
			}
			e = &risk.SharedEntry{}
			key := string(r.Key)
			m[key] = e
			mark(r.Partition, key)
		} else if !seen[r.Partition][string(r.Key)] {
			mark(r.Partition, string(r.Key))
		}
		e.Apply(&o)
	})
	if len(changed) == 0 {
		return nil
	}
	// One block of records and one buffer for their keys and values.
	recs := make([]kgo.Record, len(changed))
	n := 0
	for _, c := range changed {
		n += len(c.key) + risk.SharedEntrySize
	}
	buf := make([]byte, 0, n)
	for i, c := range changed {
		k := len(buf)
		buf = append(buf, c.key...)
		rec := &recs[i]
		*rec = kgo.Record{Topic: schemas.TopicShared, Partition: c.p, Key: buf[k:len(buf):len(buf)], Headers: sharedEntryHeaders}
		if e := a.parts[c.p][c.key]; e != nil {
			v := len(buf)
			buf = e.AppendBinary(buf)
			rec.Value = buf[v:len(buf):len(buf)]
		}
		produce(rec)
	}
	return nil
}

var sharedEntryHeaders = []kgo.RecordHeader{{Key: schemas.HeaderSchema, Value: []byte("shared-entry.v1")}}

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
