package lists

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/moat-dev/moat/internal/kafka"
	"github.com/moat-dev/moat/schemas"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Follower materializes the lists topic into an Index: it reads every
// partition from the start (committed records only) and keeps following
// it until Run's context ends. It tracks how far it has read each
// partition, so callers can wait until the index holds a given write
// (WaitFor) or everything committed so far (Sync).
type Follower struct {
	log *slog.Logger
	idx *Index
	cl  *kgo.Client
	adm *kadm.Client

	mu sync.Mutex
	// pos is the next offset to read per partition: every record below it
	// (transaction markers included) has been applied.
	pos map[int32]int64
	// advanced is closed and replaced whenever pos moves.
	advanced chan struct{}
}

// NewFollower connects a follower of the lists topic. Call Run to start it.
func NewFollower(cfg kafka.Config, log *slog.Logger) (*Follower, error) {
	log = log.With("component", "lists-follower")
	cl, err := kgo.NewClient(append(kafka.ClientOpts(cfg, log, "moat-lists-follower"),
		kgo.ConsumeTopics(schemas.TopicLists),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		// Transaction markers come through as control records, so the read
		// position reaches the topic's end offsets.
		kgo.KeepControlRecords(),
		kgo.FetchMaxWait(100*time.Millisecond),
		kgo.MetadataMinAge(time.Second),
	)...)
	if err != nil {
		return nil, fmt.Errorf("lists: create follower: %w", err)
	}
	return &Follower{log: log, idx: NewIndex(), cl: cl, adm: kadm.NewClient(cl), pos: map[int32]int64{}, advanced: make(chan struct{})}, nil
}

// Index is the materialized lists, kept current while Run runs.
func (f *Follower) Index() *Index { return f.idx }

// Run applies records until ctx ends, then closes the client.
func (f *Follower) Run(ctx context.Context) error {
	defer f.cl.Close()
	for {
		fs := f.cl.PollFetches(ctx)
		if fs.IsClientClosed() || ctx.Err() != nil {
			return nil
		}
		fs.EachError(func(t string, p int32, err error) {
			f.log.Warn("lists fetch failed", "topic", t, "partition", p, "err", err)
		})
		if fs.NumRecords() == 0 {
			continue
		}
		moved := map[int32]int64{}
		fs.EachRecord(func(r *kgo.Record) {
			moved[r.Partition] = r.Offset + 1
			if r.Attrs.IsControl() {
				return
			}
			if err := f.idx.Apply(r.Key, r.Value); err != nil {
				f.log.Error("undecodable lists record skipped", "partition", r.Partition, "offset", r.Offset, "err", err)
			}
		})
		f.mu.Lock()
		for p, o := range moved {
			if o > f.pos[p] {
				f.pos[p] = o
			}
		}
		close(f.advanced)
		f.advanced = make(chan struct{})
		f.mu.Unlock()
	}
}

// WaitFor waits until the index holds the records at offsets (partition
// to offset, as Writer.Write returns them) or ctx ends.
func (f *Follower) WaitFor(ctx context.Context, offsets map[int32]int64) error {
	return f.wait(ctx, func(pos map[int32]int64) bool {
		for p, o := range offsets {
			if pos[p] <= o {
				return false
			}
		}
		return true
	})
}

// Sync waits until the index holds every record committed to the topic
// before the call (its last stable offsets), so that a read after a write
// made through another instance sees the write.
func (f *Follower) Sync(ctx context.Context) error {
	ends, err := f.adm.ListCommittedOffsets(ctx, schemas.TopicLists)
	if err != nil {
		return fmt.Errorf("lists: end offsets: %w", err)
	}
	want := map[int32]int64{}
	var lerr error
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err != nil {
			lerr = o.Err
		}
		if o.Offset > 0 {
			want[o.Partition] = o.Offset
		}
	})
	if lerr != nil {
		return fmt.Errorf("lists: end offsets: %w", lerr)
	}
	return f.wait(ctx, func(pos map[int32]int64) bool {
		for p, o := range want {
			if pos[p] < o {
				return false
			}
		}
		return true
	})
}

func (f *Follower) wait(ctx context.Context, done func(pos map[int32]int64) bool) error {
	for {
		f.mu.Lock()
		ok, ch := done(f.pos), f.advanced
		f.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("lists: catching up with the log: %w", ctx.Err())
		}
	}
}
