package lists

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/moat-dev/moat/internal/kafka"
	"github.com/moat-dev/moat/schemas"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Writer appends list changes and their notifications to the log in one
// Kafka transaction each, so a consumer reading committed records sees a
// list item change together with its $list_item.* notification or
// neither. Transactions of one Writer run one at a time.
type Writer struct {
	cfg     kafka.Config
	log     *slog.Logger
	txnID   string
	timeout time.Duration

	mu sync.Mutex
	cl *kgo.Client // nil after a failure: reconnected on the next Write
}

// NewWriter returns a Writer whose writes fail after timeout when the
// brokers do not acknowledge them. Its transactional id is random per
// process (writers only produce, so no zombie needs fencing).
func NewWriter(cfg kafka.Config, timeout time.Duration, log *slog.Logger) (*Writer, error) {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		return nil, fmt.Errorf("lists: transactional id: %w", err)
	}
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	w := &Writer{cfg: cfg, log: log.With("component", "lists-writer"), txnID: "moat-lists-" + hex.EncodeToString(b), timeout: timeout}
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, err := w.client(); err != nil {
		return nil, err
	}
	return w, nil
}

// Partitioner places lists records by their list (ListPartitionKey, so a
// list and its items stay in order on one partition) and every other
// record by its key, both with Kafka's default murmur2 hash.
func Partitioner() kgo.Partitioner {
	return kgo.BasicConsistentPartitioner(func(topic string) func(*kgo.Record, int) int {
		p := kgo.StickyKeyPartitioner(nil).ForTopic(topic)
		if topic == schemas.TopicLists {
			return func(r *kgo.Record, n int) int {
				return p.Partition(&kgo.Record{Key: schemas.ListPartitionKey(r.Key)}, n)
			}
		}
		return func(r *kgo.Record, n int) int { return p.Partition(r, n) }
	})
}

func (w *Writer) client() (*kgo.Client, error) {
	if w.cl != nil {
		return w.cl, nil
	}
	cl, err := kgo.NewClient(append(kafka.ClientOpts(w.cfg, w.log, "moat-lists"),
		kgo.TransactionalID(w.txnID),
		kgo.TransactionTimeout(10*time.Second),
		// franz-go refuses a record timeout under 1 s; the calls' contexts
		// still bound them by w.timeout.
		kgo.RecordDeliveryTimeout(max(w.timeout, time.Second)),
		kgo.ProducerLinger(0),
		kgo.RecordPartitioner(Partitioner()),
	)...)
	if err != nil {
		return nil, fmt.Errorf("lists: create producer: %w", err)
	}
	w.cl = cl
	return cl, nil
}

// Write commits recs in one transaction and returns, for each partition
// of the lists topic written, the offset of the last record written
// there. An error means the transaction was not committed, or that its
// outcome is unknown.
func (w *Writer) Write(ctx context.Context, recs []*kgo.Record) (map[int32]int64, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	cl, err := w.client()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, w.timeout)
	defer cancel()
	if err := cl.BeginTransaction(); err != nil {
		w.drop()
		return nil, fmt.Errorf("lists: begin transaction: %w", err)
	}
	res := cl.ProduceSync(ctx, recs...)
	if err := res.FirstErr(); err != nil {
		w.abort(cl)
		return nil, fmt.Errorf("lists: produce: %w", err)
	}
	if err := cl.EndTransaction(ctx, kgo.TryCommit); err != nil {
		w.abort(cl)
		return nil, fmt.Errorf("lists: commit: %w", err)
	}
	offsets := map[int32]int64{}
	for _, r := range res {
		if r.Record.Topic == schemas.TopicLists && r.Record.Offset >= offsets[r.Record.Partition] {
			offsets[r.Record.Partition] = r.Record.Offset
		}
	}
	return offsets, nil
}

// abort ends a failed transaction; when even that fails the client is
// dropped, and the next Write starts a new one, which fences this one's
// transaction with the same transactional id.
func (w *Writer) abort(cl *kgo.Client) {
	ctx, cancel := context.WithTimeout(context.Background(), w.timeout)
	defer cancel()
	err := cl.AbortBufferedRecords(ctx)
	if err == nil {
		err = cl.EndTransaction(ctx, kgo.TryAbort)
	}
	if err != nil && !errors.Is(err, kgo.ErrClientClosed) {
		w.log.Warn("abort of a failed lists transaction failed; reconnecting", "err", err)
		w.drop()
	}
}

func (w *Writer) drop() {
	if w.cl != nil {
		w.cl.Close()
		w.cl = nil
	}
}

// Close closes the producer.
func (w *Writer) Close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.drop()
}
