package lists

import (
	"context"
	"log/slog"

	"github.com/moat-dev/moat/internal/kafka"
	"github.com/moat-dev/moat/schemas"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Follower materializes the lists topic into an Index: it reads every
// partition from the start (committed records only) and keeps following
// it until Run's context ends, so callers can wait until the index holds
// a given write (WaitFor) or everything committed so far (Sync).
type Follower struct {
	idx *Index
	f   *kafka.Follower
}

// NewFollower connects a follower of the lists topic. Call Run to start it.
func NewFollower(cfg kafka.Config, log *slog.Logger) (*Follower, error) {
	log = log.With("component", "lists-follower")
	idx := NewIndex()
	f, err := kafka.NewFollower(cfg, schemas.TopicLists, "lists", func(r *kgo.Record) {
		if err := idx.Apply(r.Key, r.Value); err != nil {
			log.Error("undecodable lists record skipped", "partition", r.Partition, "offset", r.Offset, "err", err)
		}
	}, log)
	if err != nil {
		return nil, err
	}
	return &Follower{idx: idx, f: f}, nil
}

// Index is the materialized lists, kept current while Run runs.
func (f *Follower) Index() *Index { return f.idx }

// Run applies records until ctx ends, then closes the client.
func (f *Follower) Run(ctx context.Context) error { return f.f.Run(ctx) }

// WaitFor waits until the index holds the records at offsets (partition
// to offset, as Writer.Write returns them) or ctx ends.
func (f *Follower) WaitFor(ctx context.Context, offsets map[int32]int64) error {
	return f.f.WaitFor(ctx, offsets)
}

// Sync waits until the index holds every record committed to the topic
// before the call (its last stable offsets), so that a read after a write
// made through another instance sees the write.
func (f *Follower) Sync(ctx context.Context) error { return f.f.Sync(ctx) }
