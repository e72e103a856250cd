package scorer

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/moat-dev/moat/internal/kafka"
	"github.com/moat-dev/moat/schemas"
	"github.com/twmb/franz-go/pkg/kgo"
)

// replier sends the replies of scored calls (risk, filter, authenticate)
// to TopicReplies outside the scorer's transaction, through its own
// non-transactional idempotent producer, as soon as the broker has
// acknowledged the decision record in the open transaction: the waiting
// ingest instance does not wait for that transaction to commit.
//
// This is safe because a decision is a function of the event and the
// user's state, restored from the changelog and advanced in log order (see
// Scored calls in docs/architecture.md): if the transaction aborts, the
// event is decided again from the same state and gets the same decision;
// ingest answers with the first reply and drops the others. End-user
// commands keep their reply inside the transaction (their answer promises
// that the command is committed).
type replier struct {
	cl  *kgo.Client
	log *slog.Logger
	// failed counts replies the broker did not take, to log them rarely.
	failed atomic.Int64
}

func newReplier(cfg kafka.Config, log *slog.Logger) (*replier, error) {
	cl, err := kgo.NewClient(append(kafka.ClientOpts(cfg, log, "moat-scorer-replies"),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerLinger(0),
		// A reply is useless past the callers' deadline (500 to 1500 ms);
		// do not keep retrying it for the client's default 30 s.
		kgo.RecordDeliveryTimeout(5*time.Second),
		// The same partitioner as the transactional producer: keyed by the
		// ingest instance id.
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)),
	)...)
	if err != nil {
		return nil, fmt.Errorf("scorer: create replies producer: %w", err)
	}
	return &replier{cl: cl, log: log}, nil
}

// send produces rec without waiting. A reply that fails is logged; the
// waiting call gets its app's failover at its deadline and the decision is
// still committed by the transaction.
func (r *replier) send(rec *kgo.Record) {
	// TryProduce: send is called from another client's promise, which must
	// not block.
	r.cl.TryProduce(context.Background(), rec, func(rec *kgo.Record, err error) {
		if err != nil {
			if n := r.failed.Add(1); n&(n-1) == 0 { // 1, 2, 4, 8, ...
				r.log.Warn("reply not sent; the call gets its failover", "failed_replies", n, "err", err)
			}
		}
	})
}

// close sends what is buffered (briefly) and disconnects.
func (r *replier) close() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = r.cl.Flush(ctx)
	r.cl.Close()
}

// replyKey keys, in a decision record's Context, the reply to send once
// that decision is in the log (afterProduce).
type replyKey struct{}

// reply answers a call that waits for its decision (ev.ReplyTo set). A
// scored call's reply rides on its decision record in out and is sent,
// outside the transaction, as soon as the broker has that record
// (afterProduce); a command's reply is appended to out, to commit with
// its decision.
//
// Not earlier: a read that starts after the call's answer must find the
// decision at least written, so that waiting for the open transaction of
// its partition to end is enough to see it (api.Pending).
func (w *Worker) reply(out []*kgo.Record, ev *schemas.Event, decision []byte, hdr []kgo.RecordHeader, newRecord func() *kgo.Record) []*kgo.Record {
	rec := newRecord()
	*rec = kgo.Record{Topic: schemas.TopicReplies, Key: []byte(ev.ReplyTo), Value: decision, Headers: hdr}
	switch ev.Kind {
	case schemas.KindRisk, schemas.KindFilter, schemas.KindAuthenticate:
		for _, o := range out {
			if o.Topic == schemas.TopicDecisions {
				o.Context = context.WithValue(context.Background(), replyKey{}, rec)
				return out
			}
		}
	}
	return append(out, rec)
}

// afterProduce sends the reply riding on a record of the transaction once
// the broker acknowledged that record. It runs in the producer's promise.
func (w *Worker) afterProduce(r *kgo.Record, err error) {
	if err != nil || r.Context == nil {
		return
	}
	if rec, ok := r.Context.Value(replyKey{}).(*kgo.Record); ok {
		w.replies.send(rec)
	}
}
