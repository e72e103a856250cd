package webhooker

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/moat-dev/moat/schemas"
)

// Outcomes of an attempt, as written to the delivery log.
const (
	// OutcomeDelivered: the endpoint answered 2xx.
	OutcomeDelivered = "delivered"
	// OutcomeRetry: the attempt failed and a retry is scheduled.
	OutcomeRetry = "retry"
	// OutcomeDead: the attempt failed permanently or was the last; the
	// delivery went to the dead-letter topic.
	OutcomeDead = "dead"
	// OutcomeDeferred: no request was sent because the endpoint was sick
	// or saturated; a retry is scheduled (or, after the last attempt, the
	// delivery went to the dead letters).
	OutcomeDeferred = "deferred"
	// OutcomeDropped: no request was sent and none will be: the endpoint
	// was deleted through the API while the delivery waited for a retry,
	// or a test notification's endpoint no longer exists. Nothing goes to
	// the dead letters.
	OutcomeDropped = "dropped"
)

// Attempt is one row of the delivery log.
type Attempt struct {
	AppID          string
	EndpointID     string
	DeliveryID     string
	NotificationID string
	Type           string
	// Attempt is the attempt number, from 1.
	Attempt int
	Outcome string
	// Status is the HTTP status (0 without a response).
	Status  int
	Latency time.Duration
	// Error is empty on success. It never holds a secret or the endpoint
	// URL.
	Error string
	At    time.Time
}

// DeliveryLog records attempts. Log is called from many goroutines for
// every attempt and must not block on I/O; Flush writes what Log buffered
// and is called by the worker every Config.LogFlushInterval and on
// shutdown, never concurrently with itself. The log is an audit trail, not
// part of the delivery guarantee: rows buffered when the process dies are
// lost.
type DeliveryLog interface {
	Log(a Attempt)
	Flush(ctx context.Context) error
}

// NopLog is a DeliveryLog that keeps nothing.
type NopLog struct{}

// Log discards a.
func (NopLog) Log(Attempt) {}

// Flush does nothing.
func (NopLog) Flush(context.Context) error { return nil }

// DefaultMaxBuffered is how many attempts ClickHouseLog keeps while
// ClickHouse is unreachable before it drops the oldest.
const DefaultMaxBuffered = 200000

// deliveryColumns are the columns of webhook_deliveries, in Append order.
var deliveryColumns = []string{
	"app_id", "endpoint_id", "delivery_id", "notification_id", "type", "attempt",
	"outcome", "status", "latency_ms", "error", "at", "at_ms",
}

// ClickHouseLog batches attempts into the webhook_deliveries table
// (schemas/clickhouse/0002_webhook_deliveries.sql). It is safe for
// concurrent use. While ClickHouse is unreachable it keeps up to
// MaxBuffered rows and drops the oldest beyond that.
type ClickHouseLog struct {
	conn   driver.Conn
	insert string
	// MaxBuffered bounds the buffered rows (DefaultMaxBuffered).
	MaxBuffered int

	mu      sync.Mutex
	buf     []Attempt
	dropped int64
}

// NewClickHouseLog returns a log writing to database.webhook_deliveries.
func NewClickHouseLog(conn driver.Conn, database string) *ClickHouseLog {
	return &ClickHouseLog{
		conn:        conn,
		insert:      "INSERT INTO " + schemas.QuoteIdent(database) + ".webhook_deliveries (" + strings.Join(deliveryColumns, ", ") + ")",
		MaxBuffered: DefaultMaxBuffered,
	}
}

// Log buffers a.
func (l *ClickHouseLog) Log(a Attempt) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.MaxBuffered > 0 && len(l.buf) >= l.MaxBuffered {
		// Drop the oldest tenth at once, not one row per call.
		n := len(l.buf) - l.MaxBuffered + max(1, l.MaxBuffered/10)
		l.buf = append(l.buf[:0], l.buf[n:]...)
		l.dropped += int64(n)
	}
	l.buf = append(l.buf, a)
}

// Dropped returns how many attempts were dropped because the buffer was
// full.
func (l *ClickHouseLog) Dropped() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.dropped
}

// Flush inserts the buffered attempts as one batch. On failure they stay
// buffered for the next Flush.
func (l *ClickHouseLog) Flush(ctx context.Context) error {
	l.mu.Lock()
	rows := l.buf
	l.buf = nil
	l.mu.Unlock()
	if len(rows) == 0 {
		return nil
	}
	if err := l.send(ctx, rows); err != nil {
		l.mu.Lock()
		l.buf = append(rows, l.buf...)
		if l.MaxBuffered > 0 && len(l.buf) > l.MaxBuffered {
			n := len(l.buf) - l.MaxBuffered
			l.buf = l.buf[n:]
			l.dropped += int64(n)
		}
		l.mu.Unlock()
		return err
	}
	return nil
}

func (l *ClickHouseLog) send(ctx context.Context, rows []Attempt) error {
	batch, err := l.conn.PrepareBatch(ctx, l.insert)
	if err != nil {
		return fmt.Errorf("webhooker: prepare delivery log insert: %w", err)
	}
	defer batch.Close()
	// ClickHouse 18.16 answers some inserts with a header of 0 columns and
	// then "accepts" rows it drops: make sure it saw our column list.
	if n := len(batch.Columns()); n != len(deliveryColumns) {
		return fmt.Errorf("webhooker: delivery log insert: server expects %d columns, want %d", n, len(deliveryColumns))
	}
	for _, a := range rows {
		at := a.At.UTC()
		err := batch.Append(
			a.AppID, a.EndpointID, a.DeliveryID, a.NotificationID, a.Type,
			uint16(min(max(a.Attempt, 0), 65535)),
			a.Outcome,
			uint16(min(max(a.Status, 0), 65535)),
			uint32(min(max(a.Latency.Milliseconds(), 0), 1<<32-1)),
			a.Error,
			at,
			uint64(max(at.UnixMilli(), 0)),
		)
		if err != nil {
			return fmt.Errorf("webhooker: append delivery log row: %w", err)
		}
	}
	if err := batch.Send(); err != nil {
		return fmt.Errorf("webhooker: insert %d delivery log rows: %w", len(rows), err)
	}
	return nil
}
