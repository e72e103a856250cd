package webhooker

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/moat-dev/moat/internal/chtest"
	"github.com/moat-dev/moat/schemas"
)

func TestClickHouseLog(t *testing.T) {
	conn, db := chtest.NewDatabase(t)
	l := NewClickHouseLog(conn, db)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := l.Flush(ctx); err != nil {
		t.Fatalf("empty flush: %v", err)
	}
	at := time.Date(2026, 3, 4, 5, 6, 7, 890e6, time.UTC)
	l.Log(Attempt{AppID: "a", EndpointID: "ep0", DeliveryID: "d1", NotificationID: "n1", Type: schemas.NotifyIncidentConfirmed,
		Attempt: 1, Outcome: OutcomeRetry, Status: 503, Latency: 1234 * time.Millisecond, Error: "status 503: busy", At: at})
	l.Log(Attempt{AppID: "a", EndpointID: "ep0", DeliveryID: "d1", NotificationID: "n1", Type: schemas.NotifyIncidentConfirmed,
		Attempt: 2, Outcome: OutcomeDelivered, Status: 200, Latency: 3 * time.Millisecond, At: at.Add(time.Minute)})
	if err := l.Flush(ctx); err != nil {
		t.Fatalf("flush: %v", err)
	}
	type row struct {
		Attempt   uint16    `ch:"attempt"`
		Outcome   string    `ch:"outcome"`
		Status    uint16    `ch:"status"`
		LatencyMS uint32    `ch:"latency_ms"`
		Error     string    `ch:"error"`
		At        time.Time `ch:"at"`
		AtMS      uint64    `ch:"at_ms"`
	}
	var rows []row
	if err := conn.Select(ctx, &rows, "SELECT attempt, outcome, status, latency_ms, error, at, at_ms FROM "+schemas.QuoteIdent(db)+".webhook_deliveries WHERE delivery_id = 'd1' ORDER BY attempt"); err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 {
		t.Fatalf("%d rows", len(rows))
	}
	r := rows[0]
	if r.Attempt != 1 || r.Outcome != OutcomeRetry || r.Status != 503 || r.LatencyMS != 1234 || r.Error != "status 503: busy" ||
		!r.At.Equal(at.Truncate(time.Second)) || r.AtMS != uint64(at.UnixMilli()) {
		t.Fatalf("row %+v", r)
	}
	if rows[1].Outcome != OutcomeDelivered || rows[1].Status != 200 {
		t.Fatalf("row %+v", rows[1])
	}

	// A failed flush keeps the rows for the next one.
	bad := NewClickHouseLog(conn, "no_such_database_"+db)
	bad.Log(Attempt{DeliveryID: "x", At: at})
	if err := bad.Flush(ctx); err == nil {
		t.Fatal("flush into a missing database succeeded")
	}
	bad.mu.Lock()
	kept := len(bad.buf)
	bad.mu.Unlock()
	if kept != 1 {
		t.Fatalf("%d rows kept after a failed flush, want 1", kept)
	}
}

func TestClickHouseLogBound(t *testing.T) {
	l := NewClickHouseLog(nil, "db")
	l.MaxBuffered = 100
	for i := range 1000 {
		l.Log(Attempt{Attempt: i})
	}
	l.mu.Lock()
	n, last := len(l.buf), l.buf[len(l.buf)-1].Attempt
	l.mu.Unlock()
	if n > 100 || last != 999 || l.Dropped() != int64(1000-n) {
		t.Fatalf("buffered %d (last %d), dropped %d", n, last, l.Dropped())
	}
}

// TestDeliveryLogEndToEnd runs the worker with the ClickHouse log.
func TestDeliveryLogEndToEnd(t *testing.T) {
	conn, db := chtest.NewDatabase(t)
	brokers := newCluster(t)
	rc := newReceiver(t, endpointSecrets("a"), func(n int, _ *http.Request) int {
		if n == 1 {
			return http.StatusBadGateway
		}
		return http.StatusOK
	})
	w := startWorker(t, testConfig(brokers), registry(t, testApp("a", rc.srv.URL)), NewClickHouseLog(conn, db))
	n := notification("a", 1)
	newProducer(t, brokers).send(t, n)
	eventually(t, 10*time.Second, "delivery", func() bool { return len(rc.deliveredIDs()) == 1 })
	w.stop(t) // flushes the log

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var got []struct {
		Outcome        string `ch:"outcome"`
		Status         uint16 `ch:"status"`
		DeliveryID     string `ch:"delivery_id"`
		NotificationID string `ch:"notification_id"`
	}
	if err := conn.Select(ctx, &got, "SELECT outcome, status, delivery_id, notification_id FROM "+schemas.QuoteIdent(db)+".webhook_deliveries ORDER BY attempt"); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Outcome != OutcomeRetry || got[0].Status != 502 || got[1].Outcome != OutcomeDelivered ||
		got[1].DeliveryID != DeliveryID("a", "ep0", n.ID) || got[1].NotificationID != n.ID {
		t.Fatalf("delivery log %+v", got)
	}
}
