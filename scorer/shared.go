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

// appendObservationRecords appends the records of a decision's
// observations on TopicObservations to out, each record from newRecord;
// their keys and values share one buffer.
func appendObservationRecords(out []*kgo.Record, obs []schemas.Observation, newRecord func() *kgo.Record) []*kgo.Record {
	if len(obs) == 0 {
		return out
	}
	n := 0
	for i := range obs {
		n += len(obs[i].AppID) + 2 + len(obs[i].Key) + observationValueSize
	}
	buf := make([]byte, 0, n)
	for i := range obs {
		o := &obs[i]
		k := len(buf)
		buf = schemas.AppendSharedKey(buf, o.AppID, o.Kind, o.Key)
		v := len(buf)
		buf = o.AppendBinary(buf)
		rec := newRecord()
		*rec = kgo.Record{Topic: schemas.TopicObservations, Key: buf[k:v:v], Value: buf[v:len(buf):len(buf)], Headers: observationHeaders}
		out = append(out, rec)
	}
	return out
}

// observationValueSize is the length of an encoded observation.
const observationValueSize = 15
