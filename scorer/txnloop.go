package scorer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/moat-dev/moat/internal/kafka"
	"github.com/moat-dev/moat/internal/metrics"
	"github.com/twmb/franz-go/pkg/kgo"
)

// txnLoop is the consume-transform-produce loop of the scorer role's two
// stages (the scorer and the aggregator): it polls a batch of its input
// topic in its consumer group, lets the stage turn it into records inside
// one Kafka transaction that also commits the batch's offsets
// (GroupTransactSession), and after any failure drops the stage's state
// and starts again from the last commit with a new session, which fences
// the old one.
type txnLoop struct {
	txnSession
	maxPoll   int
	batchWait time.Duration
	lag       *metrics.LagTracker
	// observe records each transaction's duration and outcome (optional).
	observe func(time.Duration, error)

	// restore readies the stage's state of a partition the batch has
	// records of, before the transaction begins (so that a long restore
	// cannot outlive the transaction timeout).
	restore func(ctx context.Context, partition int32) error
	// process turns the batch into records, handing each to produce,
	// inside the transaction. An error aborts it.
	process func(ctx context.Context, fetches kgo.Fetches, produce func(*kgo.Record)) error
	// acked is told of each produced record once the broker answered
	// (optional; called from the client's goroutines).
	acked func(*kgo.Record, error)
	// reset forgets the stage's state: after a failed or aborted
	// transaction (it may hold changes that never committed) and after a
	// rebalance (the next owner of a partition restores it).
	reset func()

	sess *kgo.GroupTransactSession
	// drop is set by rebalance callbacks (another goroutine) and acted on
	// by the loop before it processes the next batch.
	drop atomic.Bool
}

// connect creates the loop's session; call it once before run.
func (l *txnLoop) connect() error {
	l.revoked = func(ps map[string][]int32) {
		l.drop.Store(true)
		l.lag.Forget(ps)
	}
	sess, err := l.open()
	if err != nil {
		return err
	}
	l.sess = sess
	return nil
}

// run consumes until ctx ends, then leaves the group and closes the client.
// An open transaction is aborted on shutdown; its batch is processed again
// by whichever instance owns its partitions next.
func (l *txnLoop) run(ctx context.Context) error {
	defer func() { l.sess.Close(); l.lag.ForgetAll() }()
	for {
		fetches := l.sess.PollRecords(ctx, l.maxPoll)
		if fetches.IsClientClosed() || ctx.Err() != nil {
			return nil
		}
		fetches = l.collect(ctx, fetches)
		fetches.EachError(func(topic string, p int32, err error) {
			l.log.Warn("fetch failed", "topic", topic, "partition", p, "err", err)
		})
		if l.drop.Swap(false) {
			l.reset()
		}
		if fetches.NumRecords() == 0 {
			continue
		}
		start := time.Now()
		err := l.transact(ctx, fetches)
		if l.observe != nil {
			l.observe(time.Since(start), err)
		}
		if err == nil {
			l.lag.Observe(fetches)
			continue
		}
		if ctx.Err() != nil {
			return nil
		}
		l.log.Error("transaction failed; the batch will be processed again", "err", err)
		l.reset()
		sess, err := l.reopen(ctx, l.sess)
		if err != nil {
			return nil // ctx ended while reconnecting
		}
		l.sess = sess
	}
}

// collect keeps polling for up to batchWait while the batch is short.
func (l *txnLoop) collect(ctx context.Context, fetches kgo.Fetches) kgo.Fetches {
	if l.batchWait <= 0 || fetches.NumRecords() == 0 {
		return fetches
	}
	deadline := time.Now().Add(l.batchWait)
	for n := fetches.NumRecords(); n < l.maxPoll; n = fetches.NumRecords() {
		left := time.Until(deadline)
		if left <= 0 {
			break
		}
		pctx, cancel := context.WithTimeout(ctx, left)
		more := l.sess.PollRecords(pctx, l.maxPoll-n)
		cancel()
		if more.IsClientClosed() || ctx.Err() != nil {
			break
		}
		fetches = append(fetches, more...)
	}
	return fetches
}

func (l *txnLoop) transact(ctx context.Context, fetches kgo.Fetches) error {
	var rerr error
	fetches.EachPartition(func(p kgo.FetchTopicPartition) {
		if rerr == nil && len(p.Records) > 0 {
			rerr = l.restore(ctx, p.Partition)
		}
	})
	if rerr != nil {
		return fmt.Errorf("%s: restore state: %w", l.name, rerr)
	}
	if err := l.sess.Begin(); err != nil {
		return fmt.Errorf("%s: begin transaction: %w", l.name, err)
	}
	var (
		mu      sync.Mutex
		prodErr error
	)
	promise := func(r *kgo.Record, err error) {
		if l.acked != nil {
			l.acked(r, err)
		}
		if err != nil {
			mu.Lock()
			prodErr = errors.Join(prodErr, err)
			mu.Unlock()
		}
	}
	if err := l.process(ctx, fetches, func(r *kgo.Record) { l.sess.Produce(ctx, r, promise) }); err != nil {
		mu.Lock()
		prodErr = errors.Join(prodErr, err)
		mu.Unlock()
	}
	mu.Lock()
	try := kgo.TransactionEndTry(prodErr == nil)
	mu.Unlock()
	committed, err := l.sess.End(ctx, try)
	if err != nil {
		return fmt.Errorf("%s: end transaction: %w", l.name, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if prodErr != nil {
		return fmt.Errorf("%s: produce: %w", l.name, prodErr)
	}
	if !committed {
		return fmt.Errorf("%s: transaction aborted by a rebalance", l.name)
	}
	return nil
}

// txnSession opens the transactional consumer sessions
// (GroupTransactSession) of the scorer role's stages: one input topic in
// one consumer group, read committed, offsets committed with the records a
// transaction produces.
type txnSession struct {
	name        string // prefixes errors; the client id is "moat-"+name
	kafka       kafka.Config
	txnID       string
	group       string
	topic       string
	partitioner kgo.Partitioner
	log         *slog.Logger
	// revoked is told of the partitions a rebalance took away (from the
	// client's goroutine): the stage must forget their state.
	revoked func(map[string][]int32)
}

func (s *txnSession) open() (*kgo.GroupTransactSession, error) {
	forget := func(_ context.Context, _ *kgo.Client, ps map[string][]int32) { s.revoked(ps) }
	opts := append(append(kafka.ClientOpts(s.kafka, s.log, "moat-"+s.name), kafka.GroupOpts()...),
		kgo.TransactionalID(s.txnID),
		// A transaction holds one poll (well under a second); a short
		// timeout lets a crashed instance's open transaction be aborted
		// quickly so its partitions move on.
		kgo.TransactionTimeout(10*time.Second),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumerGroup(s.group),
		kgo.ConsumeTopics(s.topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.RequireStableFetchOffsets(),
		kgo.ProducerLinger(0),
		kgo.RecordPartitioner(s.partitioner),
		kgo.OnPartitionsRevoked(forget),
		kgo.OnPartitionsLost(forget),
	)
	sess, err := kgo.NewGroupTransactSession(opts...)
	if err != nil {
		return nil, fmt.Errorf("%s: create kafka session: %w", s.name, err)
	}
	return sess, nil
}

// reopen replaces old after a failed transaction. The state of the old
// transaction is unknown (the broker may have gone away mid-commit), so
// the old client is dropped; the new one fences it with the same
// transactional id, the coordinator aborts whatever it left open, and the
// group resumes from the last committed offsets. It retries until ctx ends.
func (s *txnSession) reopen(ctx context.Context, old *kgo.GroupTransactSession) (*kgo.GroupTransactSession, error) {
	old.Close()
	var sess *kgo.GroupTransactSession
	b := backoff.WithContext(backoff.NewExponentialBackOff(backoff.WithMaxElapsedTime(0), backoff.WithMaxInterval(5*time.Second)), ctx)
	err := backoff.Retry(func() error {
		var err error
		if sess, err = s.open(); err != nil {
			s.log.Warn("reconnect failed", "err", err)
		}
		return err
	}, b)
	return sess, err
}
