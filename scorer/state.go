package scorer

import (
	"bytes"
	"context"
	"encoding"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/moat-dev/moat/internal/kafka"
	"github.com/moat-dev/moat/internal/metrics"
	"github.com/moat-dev/moat/schemas"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// State is one user's scoring state: small, deterministic, serializable.
type State interface {
	encoding.BinaryMarshaler
	encoding.BinaryUnmarshaler
}

// stateStore holds the state of the users of the partitions this worker
// owns, keyed by the event record key. It is the scorer's only memory and
// is derived from the log: TopicScorerState (the changelog, written in the
// same transaction as the decisions) holds each user's latest state, and a
// partition's users are restored from it the first time the worker sees a
// record of that partition. After a failed or aborted transaction the
// whole store is dropped, because it may hold changes that never committed;
// it is restored again from the changelog.
type stateStore struct {
	cfg      kafka.Config
	log      *slog.Logger
	newState func() State

	restored map[int32]bool
	users    map[string]State
	// dropOnNextPoll is set by rebalance callbacks (another goroutine).
	dropOnNextPoll atomic.Bool
	metrics        *metrics.Metrics
	// scratch is the buffer states are encoded in.
	scratch []byte
}

func newStateStore(cfg kafka.Config, newState func() State, log *slog.Logger) *stateStore {
	return &stateStore{cfg: cfg, log: log, newState: newState, restored: map[int32]bool{}, users: map[string]State{}}
}

// reset forgets everything (after an abort, a failure or a rebalance).
func (s *stateStore) reset() {
	clear(s.restored)
	clear(s.users)
}

// ensure restores partition's users if they are not in memory yet.
func (s *stateStore) ensure(ctx context.Context, partition int32) error {
	if s.restored[partition] {
		return nil
	}
	return s.restore(ctx, partition)
}

// get returns the state of key, restoring its partition first if needed.
// The key is a record's: a known user is looked up without copying it.
func (s *stateStore) get(ctx context.Context, partition int32, key []byte) (State, error) {
	if err := s.ensure(ctx, partition); err != nil {
		return nil, err
	}
	st, ok := s.users[string(key)]
	if !ok {
		st = s.newState()
		s.users[string(key)] = st
	}
	return st, nil
}

// record fills rec with the changelog record for key's current state,
// bound to the same partition number as the event it came from.
func (s *stateStore) record(rec *kgo.Record, partition int32, key []byte) error {
	st, ok := s.users[string(key)]
	if !ok {
		return fmt.Errorf("scorer: no state for key")
	}
	var b []byte
	var err error
	if a, ok := st.(encoding.BinaryAppender); ok {
		// Encoded into the store's buffer, then copied once into a slice
		// of its size.
		if s.scratch, err = a.AppendBinary(s.scratch[:0]); err == nil {
			b = bytes.Clone(s.scratch)
		}
		if cap(s.scratch) > maxScratch {
			s.scratch = nil
		}
	} else {
		b, err = st.MarshalBinary()
	}
	if err != nil {
		return fmt.Errorf("scorer: encode state: %w", err)
	}
	*rec = kgo.Record{Topic: schemas.TopicScorerState, Partition: partition, Key: key, Value: b, Headers: stateHeaders}
	return nil
}

// restore reads the changelog partition up to its current end (committed
// records only) and keeps the last state of each key.
func (s *stateStore) restore(ctx context.Context, partition int32) error {
	start := time.Now()
	n := 0
	err := readCompacted(ctx, s.cfg, s.log, schemas.TopicScorerState, partition, func(r *kgo.Record) {
		if len(r.Value) == 0 {
			delete(s.users, string(r.Key))
			return
		}
		st := s.newState()
		if err := st.UnmarshalBinary(r.Value); err != nil {
			s.log.Error("undecodable state in changelog; the user starts fresh", "partition", partition, "offset", r.Offset, "err", err)
			return
		}
		s.users[string(r.Key)] = st
		n++
	})
	if err != nil {
		return err
	}
	s.restored[partition] = true
	s.metrics.Restored(time.Since(start))
	s.log.Info("restored scorer state", "partition", partition, "records", n, "took", time.Since(start))
	return nil
}

// readCompacted hands apply every committed data record of one partition
// of a changelog topic, from the start up to its last stable offset at
// the time of the call, in order (tombstones included).
func readCompacted(ctx context.Context, cfg kafka.Config, log *slog.Logger, topic string, partition int32, apply func(*kgo.Record)) error {
	cl, err := kgo.NewClient(append(kafka.ClientOpts(cfg, log, "moat-scorer-restore"),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		// Transaction markers come through as control records, so the
		// read position always reaches the end offset below.
		kgo.KeepControlRecords(),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {partition: kgo.NewOffset().AtStart()}}),
	)...)
	if err != nil {
		return fmt.Errorf("scorer: restore client: %w", err)
	}
	defer cl.Close()
	// The last stable offset: every committed record is below it.
	ends, err := kadm.NewClient(cl).ListCommittedOffsets(ctx, topic)
	if err != nil {
		return fmt.Errorf("scorer: %s end offsets: %w", topic, err)
	}
	end, ok := ends.Lookup(topic, partition)
	if !ok || end.Err != nil {
		return fmt.Errorf("scorer: %s end offset of partition %d: %v", topic, partition, end.Err)
	}
	// Every offset below the end is a committed record or a transaction
	// marker (kept as a control record); aborted records are skipped but
	// are always followed by their abort marker.
	// A broker that crashed may have lost the tail of the partition below
	// the offset it reported; three empty fetches in a row end the restore
	// with what was read (logged), rather than waiting forever.
	for next, empty := int64(0), 0; next < end.Offset; {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		fs := cl.PollFetches(pctx)
		cancel()
		if err := ctx.Err(); err != nil {
			return err
		}
		var ferr error
		fs.EachError(func(_ string, _ int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) {
				ferr = err
			}
		})
		if ferr != nil {
			return fmt.Errorf("scorer: read %s partition %d: %w", topic, partition, ferr)
		}
		if fs.NumRecords() == 0 {
			if empty++; empty == 3 {
				log.Warn("changelog ended before its reported end offset; restored what was there", "topic", topic, "partition", partition, "read_to", next, "end", end.Offset)
				break
			}
			continue
		}
		empty = 0
		fs.EachRecord(func(r *kgo.Record) {
			next = r.Offset + 1
			if !r.Attrs.IsControl() {
				apply(r)
			}
		})
	}
	return nil
}
