package scorer

import (
	"context"
	"log/slog"
	"sync"

	"github.com/moat-dev/moat/internal/kafka"
	"github.com/moat-dev/moat/schemas"
	"github.com/moat-dev/moat/scorer/risk"
	"github.com/twmb/franz-go/pkg/kgo"
)

// SharedTable is the scorer's view of the cross-user state: a follower of
// every partition of TopicShared, which the aggregator writes. Events are
// partitioned by user, so no scorer sees all the events of one IP or
// device; the aggregator, partitioned by those keys, does, and every
// scorer reads its table (a global table, as the lists are).
//
// The counts of an event are the table's entry plus the event itself. The
// table trails the decisions by one aggregator transaction (100 to 200
// milliseconds when the pipeline keeps up), so events of one key decided
// within that time do not see each other; the counts used show in the
// decision's signals, and a replay, which reads a table that is ahead
// of the events, counts each window as of the event's time bucket rather
// than exactly as live scoring did (docs/signals.md).
type SharedTable struct {
	f *kafka.Follower

	mu sync.RWMutex
	m  map[string]*risk.SharedEntry
}

// NewSharedTable connects a follower of TopicShared. Run it, and Sync
// before scoring so that a starting scorer counts what is committed.
func NewSharedTable(cfg kafka.Config, log *slog.Logger) (*SharedTable, error) {
	t := &SharedTable{m: map[string]*risk.SharedEntry{}}
	f, err := kafka.NewFollower(cfg, schemas.TopicShared, "shared", t.apply, log.With("table", schemas.TopicShared))
	if err != nil {
		return nil, err
	}
	t.f = f
	return t, nil
}

// Run follows the topic until ctx ends.
func (t *SharedTable) Run(ctx context.Context) error { return t.f.Run(ctx) }

// Sync waits until everything committed to the table so far is applied.
func (t *SharedTable) Sync(ctx context.Context) error { return t.f.Sync(ctx) }

// Close disconnects a table whose Run was never called.
func (t *SharedTable) Close() { t.f.Close() }

// Len is the number of keys held.
func (t *SharedTable) Len() int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return len(t.m)
}

func (t *SharedTable) apply(r *kgo.Record) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(r.Value) == 0 {
		delete(t.m, string(r.Key))
		return
	}
	e := t.m[string(r.Key)]
	if e == nil {
		e = &risk.SharedEntry{}
	}
	if err := e.UnmarshalBinary(r.Value); err != nil {
		return // a newer aggregator's format: keep what we had
	}
	t.m[string(r.Key)] = e
}

// Observe counts obs on top of the table's entries, without keeping them:
// the aggregator folds them once the decision commits.
func (t *SharedTable) Observe(obs []schemas.Observation, ttl uint32) risk.SharedCounts {
	var buf [256]byte
	t.mu.RLock()
	defer t.mu.RUnlock()
	return risk.Count(obs, ttl, func(o *schemas.Observation) (risk.SharedEntry, bool) {
		e := t.m[string(schemas.AppendSharedKey(buf[:0], o.AppID, o.Kind, o.Key))]
		if e == nil {
			return risk.SharedEntry{}, false
		}
		return *e, true
	})
}

// SetShared turns the cross-user signals on, counted against s (the
// scorer role passes its SharedTable). Call it before the decider is used.
func (d *Decider) SetShared(s risk.Shared) { d.shared = s }

// observationRecords are the records of a decision's observations on
// TopicObservations.
func observationRecords(obs []schemas.Observation) []*kgo.Record {
	if len(obs) == 0 {
		return nil
	}
	out := make([]*kgo.Record, len(obs))
	for i := range obs {
		out[i] = &kgo.Record{Topic: schemas.TopicObservations, Key: obs[i].RecordKey(), Value: obs[i].AppendBinary(make([]byte, 0, 16)),
			Headers: []kgo.RecordHeader{{Key: schemas.HeaderSchema, Value: []byte("observation.v1")}}}
	}
	return out
}
