package projector

import (
	"context"
	"log/slog"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/twmb/franz-go/pkg/kgo"
)

// PendingMutations counts the unfinished mutations an erasure waits for
// (awaitMutations).
func (w *Worker) PendingMutations(ctx context.Context) (uint64, error) {
	return w.pendingMutations(ctx)
}

// EventColumns is the column list of the inserts into events.
var EventColumns = eventColumns

// NewBare returns a worker without a Kafka client, to feed it records with
// Add and insert what it buffered with InsertBuffered.
func NewBare(cfg Config, conn driver.Conn) *Worker {
	return &Worker{cfg: cfg, conn: conn, log: slog.New(slog.DiscardHandler)}
}

// Add buffers a record as a polled one.
func (w *Worker) Add(r *kgo.Record) { w.add(r) }

// InsertBuffered makes one insert attempt of flush (after leaving out the
// forgotten rows) and keeps the rows buffered, so a second call is a
// retry of the same batch. It returns the number of rows inserted.
func (w *Worker) InsertBuffered(ctx context.Context) (int, error) {
	w.dropForgotten()
	return len(w.rows), w.insert(ctx)
}

// Reset drops what is buffered, as flush does once it is written.
func (w *Worker) Reset() { w.reset() }
