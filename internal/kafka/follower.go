package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Follower reads every partition of one topic from the start, committed
// records only, and keeps following it while Run runs, handing each
// record to apply. It tracks how far it has read each partition, so that
// callers can wait until what apply built holds a given write (WaitFor) or
// everything committed so far (Sync): the lists index and the privacy
// registry are followers of their compacted topics.
type Follower struct {
	topic, name string
	log         *slog.Logger
	cl          *kgo.Client
	adm         *kadm.Client
	apply       func(*kgo.Record)

	mu sync.Mutex
	// pos is the next offset to read per partition: every record below it
	// (transaction markers included) has been applied.
	pos map[int32]int64
	// advanced is closed and replaced whenever pos moves.
	advanced chan struct{}

	running atomic.Bool
}

// NewFollower connects a follower of topic. apply is called from Run's
// goroutine, once per data record in log order (never for transaction
// markers); name prefixes the follower's errors.
func NewFollower(cfg Config, topic, name string, apply func(*kgo.Record), log *slog.Logger) (*Follower, error) {
	cl, err := kgo.NewClient(append(ClientOpts(cfg, log, "moat-"+name+"-follower"),
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		// Transaction markers come through as control records, so the read
		// position reaches the topic's last stable offsets.
		kgo.KeepControlRecords(),
		kgo.FetchMaxWait(100*time.Millisecond),
		kgo.MetadataMinAge(time.Second),
	)...)
	if err != nil {
		return nil, fmt.Errorf("%s: create follower of %s: %w", name, topic, err)
	}
	return &Follower{topic: topic, name: name, log: log, cl: cl, adm: kadm.NewClient(cl), apply: apply,
		pos: map[int32]int64{}, advanced: make(chan struct{})}, nil
}

// Run applies records until ctx ends, then closes the client and returns
// nil. It may be called once.
func (f *Follower) Run(ctx context.Context) error {
	if !f.running.CompareAndSwap(false, true) {
		return fmt.Errorf("%s: Run called twice", f.name)
	}
	defer f.cl.Close()
	for {
		fs := f.cl.PollFetches(ctx)
		if fs.IsClientClosed() || ctx.Err() != nil {
			return nil
		}
		fs.EachError(func(t string, p int32, err error) {
			if !errors.Is(err, context.Canceled) {
				f.log.Warn("fetch failed", "topic", t, "partition", p, "err", err)
			}
		})
		if fs.NumRecords() == 0 {
			continue
		}
		moved := map[int32]int64{}
		fs.EachRecord(func(r *kgo.Record) {
			moved[r.Partition] = r.Offset + 1
			if !r.Attrs.IsControl() {
				f.apply(r)
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

// Close disconnects a follower whose Run was never called (Run closes
// its client itself).
func (f *Follower) Close() { f.cl.Close() }

// WaitFor waits until the records at offsets (partition to offset, as a
// writer learns them) are applied, or ctx ends.
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

// Sync waits until every record committed to the topic before the call
// (its last stable offsets) is applied, so that a read after a write made
// through another instance sees the write.
func (f *Follower) Sync(ctx context.Context) error {
	ends, err := f.adm.ListCommittedOffsets(ctx, f.topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return fmt.Errorf("%s: end offsets of %s: %w", f.name, f.topic, err)
	}
	want := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			want[o.Partition] = o.Offset
		}
	})
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
			return fmt.Errorf("%s: catching up with %s: %w", f.name, f.topic, ctx.Err())
		}
	}
}
