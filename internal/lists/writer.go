package lists

import (
	"context"
	"log/slog"
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
	p *kafka.TxnProducer
}

// NewWriter returns a Writer whose writes fail after timeout when the
// brokers do not acknowledge them.
func NewWriter(cfg kafka.Config, timeout time.Duration, log *slog.Logger) (*Writer, error) {
	p, err := kafka.NewTxnProducer(cfg, "lists", timeout, Partitioner(), log)
	if err != nil {
		return nil, err
	}
	return &Writer{p: p}, nil
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

// Write commits recs in one transaction and returns, for each partition
// of the lists topic written, the offset of the last record written
// there. An error means the transaction was not committed, or that its
// outcome is unknown.
func (w *Writer) Write(ctx context.Context, recs []*kgo.Record) (map[int32]int64, error) {
	res, err := w.p.Commit(ctx, recs)
	if err != nil {
		return nil, err
	}
	offsets := map[int32]int64{}
	for _, r := range res {
		if r.Record.Topic == schemas.TopicLists && r.Record.Offset >= offsets[r.Record.Partition] {
			offsets[r.Record.Partition] = r.Record.Offset
		}
	}
	return offsets, nil
}

// Close closes the producer.
func (w *Writer) Close() { w.p.Close() }
