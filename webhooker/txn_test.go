package webhooker

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/moat-dev/moat/schemas"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestTransactionalIncidents: incidents written in Kafka transactions, as
// the scorer writes them. A notification of a transaction still open is not
// delivered until it commits; the commit markers kafka-go hands out as
// messages are skipped, not dead-lettered; every committed notification is
// delivered once.
func TestTransactionalIncidents(t *testing.T) {
	brokers := newCluster(t)
	rc := newReceiver(t, endpointSecrets("a"), always(http.StatusOK))
	w := startWorker(t, testConfig(brokers), registry(t, testApp("a", rc.srv.URL)), nil)
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.TransactionalID("test-scorer"), kgo.ProducerLinger(0))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	txn := func(ns ...schemas.Notification) {
		t.Helper()
		if err := cl.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		for i := range ns {
			v, err := json.Marshal(&ns[i])
			if err != nil {
				t.Fatal(err)
			}
			if err := cl.ProduceSync(ctx, &kgo.Record{Topic: schemas.TopicIncidents, Key: ns[i].Key(), Value: v}).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
	}
	commit := func() {
		t.Helper()
		if err := cl.EndTransaction(ctx, kgo.TryCommit); err != nil {
			t.Fatal(err)
		}
	}
	txn(notification("a", 1), notification("a", 2))
	commit()
	eventually(t, 10*time.Second, "the committed notifications", func() bool { return len(rc.deliveredIDs()) == 2 })

	txn(notification("a", 3))
	time.Sleep(2 * time.Second) // several polls of the webhooker
	if n := len(rc.deliveredIDs()); n != 2 {
		t.Fatalf("%d deliveries while the transaction is open, want 2", n)
	}
	commit()
	txn(notification("a", 4))
	commit()
	eventually(t, 10*time.Second, "the later notifications", func() bool { return len(rc.deliveredIDs()) == 4 })
	time.Sleep(300 * time.Millisecond)
	w.stop(t)
	if s := w.w.Stats(); s.Delivered != 4 || s.BadRecords != 0 {
		t.Fatalf("stats %+v: commit markers must be skipped, not dead-lettered", s)
	}
}
