package api

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	json "github.com/goccy/go-json"
	"github.com/moat-dev/moat/internal/kafka"
	"github.com/moat-dev/moat/schemas"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Pending reads the decisions the projector has not written to ClickHouse
// yet, so that the end-user routes can overlay them on ClickHouse's views:
// a read right after a command (or a login) shows it even while the
// projector lags, whichever api instance serves the read.
//
// The projector commits its offsets on the decisions topic only after
// ClickHouse accepted the rows, so every decision below the committed
// offset of a partition is in ClickHouse, and the ones from it up to the
// partition's last stable offset are "pending". A read takes a Snapshot
// (committed and end offsets of the user's partition) before it queries
// ClickHouse, then Reads the pending range: a decision committed in
// between is then in both, and the overlay is idempotent.
type Pending struct {
	cfg kafka.Config
	log *slog.Logger
	cl  *kgo.Client
	adm *kadm.Client
	// MaxScan bounds the records one read scans (ErrLagging above it).
	maxScan int64

	mu         sync.Mutex
	partitions int
}

// DefaultPendingMaxScan is how many pending records a read scans at most.
const DefaultPendingMaxScan = 200_000

// ErrLagging is returned when the projector is further behind than a read
// scans: the api answers 503 rather than show state older than a command.
var ErrLagging = errors.New("api: the projector lags too far behind")

// NewPending connects to the brokers.
func NewPending(cfg kafka.Config, log *slog.Logger) (*Pending, error) {
	cl, err := kgo.NewClient(kafka.ClientOpts(cfg, log, "moat-api-pending")...)
	if err != nil {
		return nil, fmt.Errorf("api: pending decisions client: %w", err)
	}
	return &Pending{cfg: cfg, log: log, cl: cl, adm: kadm.NewClient(cl), maxScan: DefaultPendingMaxScan}, nil
}

// Close disconnects.
func (p *Pending) Close() { p.cl.Close() }

// Snapshot is a partition's range of pending decisions.
type Snapshot struct {
	key        []byte
	partition  int32
	start, end int64
}

// Snapshot finds the pending range of the partition of key (an event key).
// Call it before querying ClickHouse.
func (p *Pending) Snapshot(ctx context.Context, key []byte) (Snapshot, error) {
	n, err := p.partitionCount(ctx)
	if err != nil {
		return Snapshot{}, err
	}
	part := int32(kgo.StickyKeyPartitioner(nil).ForTopic(schemas.TopicDecisions).Partition(&kgo.Record{Key: key}, n))
	s := Snapshot{key: key, partition: part}
	offs, err := p.adm.FetchOffsetsForTopics(ctx, schemas.GroupProjector, schemas.TopicDecisions)
	switch {
	case errors.Is(err, kerr.GroupIDNotFound):
		// No projector ever committed: everything is pending.
	case err != nil:
		return Snapshot{}, fmt.Errorf("api: projector offsets: %w", err)
	}
	if o, ok := offs.Lookup(schemas.TopicDecisions, part); ok && o.Err == nil && o.At >= 0 {
		s.start = o.At
	}
	if s.end, err = p.stableEnd(ctx, part); err != nil {
		return Snapshot{}, err
	}
	if s.end-s.start > p.maxScan {
		return Snapshot{}, fmt.Errorf("%w: %d records pending on partition %d", ErrLagging, s.end-s.start, part)
	}
	return s, nil
}

// maxStableWait bounds how long a Snapshot waits for the transaction open
// on a decisions partition to end (normally the scorer's batch window and
// commit, about 10 ms). Only a scorer that died in the middle of one makes
// it last longer (until the transaction times out); the read then goes on
// without what that transaction wrote.
const maxStableWait = 2 * time.Second

// stableEnd is the last stable offset of the decisions partition once
// everything written to it before the call is committed or aborted. The
// scorer answers a scored call (risk, filter, authenticate) as soon as its
// decision is written, before its transaction commits (docs/architecture.md,
// Scored calls), so a read right after the answer waits here, for the end
// of at most one transaction, to show the decision.
func (p *Pending) stableEnd(ctx context.Context, part int32) (int64, error) {
	offset := func(list func(context.Context, ...string) (kadm.ListedOffsets, error), what string) (int64, error) {
		ends, err := list(ctx, schemas.TopicDecisions)
		if err != nil {
			return 0, fmt.Errorf("api: decisions %s: %w", what, err)
		}
		e, ok := ends.Lookup(schemas.TopicDecisions, part)
		if !ok || e.Err != nil {
			return 0, fmt.Errorf("api: decisions %s of partition %d: %v", what, part, e.Err)
		}
		return e.Offset, nil
	}
	written, err := offset(p.adm.ListEndOffsets, "end offsets")
	if err != nil {
		return 0, err
	}
	deadline := time.Now().Add(maxStableWait)
	for wait := time.Millisecond; ; wait = min(2*wait, 10*time.Millisecond) {
		stable, err := offset(p.adm.ListCommittedOffsets, "last stable offsets")
		if err != nil || stable >= written || time.Now().After(deadline) {
			return stable, err
		}
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return 0, fmt.Errorf("api: decisions last stable offsets: %w", ctx.Err())
		}
	}
}

func (p *Pending) partitionCount(ctx context.Context) (int, error) {
	p.mu.Lock()
	n := p.partitions
	p.mu.Unlock()
	if n > 0 {
		return n, nil
	}
	td, err := p.adm.ListTopics(ctx, schemas.TopicDecisions)
	if err != nil {
		return 0, fmt.Errorf("api: decisions metadata: %w", err)
	}
	t, ok := td[schemas.TopicDecisions]
	if !ok || t.Err != nil || len(t.Partitions) == 0 {
		return 0, fmt.Errorf("api: decisions metadata: %v", t.Err)
	}
	p.mu.Lock()
	p.partitions = len(t.Partitions)
	p.mu.Unlock()
	return len(t.Partitions), nil
}

// Read returns the pending decisions of the snapshot's key, in log order.
func (p *Pending) Read(ctx context.Context, s Snapshot) ([]schemas.Decision, error) {
	if s.end <= s.start {
		return nil, nil
	}
	cl, err := kgo.NewClient(append(kafka.ClientOpts(p.cfg, p.log, "moat-api-pending-read"),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{schemas.TopicDecisions: {s.partition: kgo.NewOffset().At(s.start)}}),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		// Transaction markers come through, so the read reaches s.end.
		kgo.KeepControlRecords(),
		kgo.FetchMaxWait(100*time.Millisecond),
	)...)
	if err != nil {
		return nil, fmt.Errorf("api: pending decisions reader: %w", err)
	}
	defer cl.Close()
	var out []schemas.Decision
	for next := s.start; next < s.end; {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("api: read pending decisions: %w", err)
		}
		var ferr error
		fs.EachError(func(_ string, _ int32, err error) { ferr = err })
		if ferr != nil {
			return nil, fmt.Errorf("api: read pending decisions: %w", ferr)
		}
		fs.EachRecord(func(r *kgo.Record) {
			next = max(next, r.Offset+1)
			if r.Attrs.IsControl() || r.Offset >= s.end || !bytes.Equal(r.Key, s.key) {
				return
			}
			var d schemas.Decision
			if err := json.Unmarshal(r.Value, &d); err != nil {
				p.log.Warn("undecodable pending decision", "partition", r.Partition, "offset", r.Offset, "err", err)
				return
			}
			out = append(out, d)
		})
	}
	return out, nil
}
