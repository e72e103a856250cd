package ingest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/moat-dev/moat/internal/kafka"
	"github.com/moat-dev/moat/schemas"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Replies receives the decisions of this instance's synchronous calls.
// Request-reply over the log keeps the scorer the single writer of risk
// state: ingest appends the call, the scorer owning the user's partition
// decides it, and writes the decision to TopicReplies tagged with this
// instance's id; Replies hands it to the waiting request.
//
// Every instance reads every partition of TopicReplies from the end offsets
// it saw at start (read committed) and keeps only its own replies. Replies
// carry only synchronous calls, so the fan-out is small.
//
// The scorer sends a scored call's reply outside its transaction, as soon
// as the decision is written (docs/architecture.md, Scored calls): such
// replies are not transactional, so a waiting fetch returns them at once.
// An end-user command's reply commits with its decision and shows then. A
// reply can come twice (its event decided again after an aborted
// transaction, with the same decision): the first answers the request, the
// second finds no waiter and is dropped.
type Replies struct {
	instance string
	cl       *kgo.Client
	log      *slog.Logger

	mu      sync.Mutex
	waiters map[string]chan schemas.Decision
}

// NewReplies positions a consumer at the current end of TopicReplies.
func NewReplies(ctx context.Context, cfg kafka.Config, log *slog.Logger) (*Replies, error) {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		return nil, fmt.Errorf("ingest: instance id: %w", err)
	}
	admCl, err := kgo.NewClient(kafka.ClientOpts(cfg, log, "moat-ingest-replies-admin")...)
	if err != nil {
		return nil, fmt.Errorf("ingest: replies admin client: %w", err)
	}
	defer admCl.Close()
	ends, err := kadm.NewClient(admCl).ListEndOffsets(ctx, schemas.TopicReplies)
	if err != nil {
		return nil, fmt.Errorf("ingest: end offsets of %s: %w", schemas.TopicReplies, err)
	}
	start := map[int32]kgo.Offset{}
	var ferr error
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err != nil {
			ferr = o.Err
		}
		start[o.Partition] = kgo.NewOffset().At(o.Offset)
	})
	if ferr != nil || len(start) == 0 {
		return nil, fmt.Errorf("ingest: end offsets of %s: %v", schemas.TopicReplies, ferr)
	}
	cl, err := kgo.NewClient(append(kafka.ClientOpts(cfg, log, "moat-ingest-replies"),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{schemas.TopicReplies: start}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.FetchMaxWait(50*time.Millisecond),
	)...)
	if err != nil {
		return nil, fmt.Errorf("ingest: replies consumer: %w", err)
	}
	return &Replies{instance: "ingest-" + hex.EncodeToString(b), cl: cl, log: log, waiters: map[string]chan schemas.Decision{}}, nil
}

// Instance is the id events carry in ReplyTo.
func (r *Replies) Instance() string { return r.instance }

// Await registers interest in an event's decision; call it before the
// event is appended. cancel must be called when done waiting.
func (r *Replies) Await(eventID string) (<-chan schemas.Decision, func()) {
	ch := make(chan schemas.Decision, 1)
	r.mu.Lock()
	r.waiters[eventID] = ch
	r.mu.Unlock()
	return ch, func() {
		r.mu.Lock()
		delete(r.waiters, eventID)
		r.mu.Unlock()
	}
}

// Run dispatches replies until ctx ends, then closes the consumer.
func (r *Replies) Run(ctx context.Context) error {
	defer r.cl.Close()
	for {
		fs := r.cl.PollFetches(ctx)
		if fs.IsClientClosed() || ctx.Err() != nil {
			return nil
		}
		fs.EachError(func(t string, p int32, err error) {
			r.log.Warn("replies fetch failed", "topic", t, "partition", p, "err", err)
		})
		fs.EachRecord(r.dispatch)
	}
}

func (r *Replies) dispatch(rec *kgo.Record) {
	if string(rec.Key) != r.instance {
		return
	}
	var d schemas.Decision
	if err := schemas.DecodeDecision(rec.Value, &d); err != nil {
		r.log.Error("undecodable reply", "offset", rec.Offset, "err", err)
		return
	}
	r.mu.Lock()
	ch, ok := r.waiters[d.Event.ID]
	r.mu.Unlock()
	if ok {
		select {
		case ch <- d:
		default: // already answered (a replayed reply)
		}
	}
}
