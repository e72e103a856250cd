package metrics

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestLagTrackerTransactionalTopic reads two committed transactions with a
// read-committed consumer: the trailing commit marker is not counted as lag
// on a transactional topic, and Forget drops the partition's series.
func TestLagTrackerTransactionalTopic(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "t"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	p, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.TransactionalID("x"), kgo.DefaultProduceTopic("t"))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for i := 0; i < 2; i++ {
		if err := p.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		if err := p.ProduceSync(ctx, &kgo.Record{Value: []byte("a")}, &kgo.Record{Value: []byte("b")}).FirstErr(); err != nil {
			t.Fatal(err)
		}
		if err := p.EndTransaction(ctx, kgo.TryCommit); err != nil {
			t.Fatal(err)
		}
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ConsumeTopics("t"),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	m := New()
	txn := m.ConsumerLag("txn", ReadCommitted(), TransactionalTopic())
	plain := m.ConsumerLag("plain", ReadCommitted())
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	for n := 0; n < 4; {
		fs := cl.PollFetches(pctx)
		if err := pctx.Err(); err != nil {
			t.Fatal(err)
		}
		n += fs.NumRecords()
		txn.Observe(fs)
		plain.Observe(fs)
	}
	if v := gauge(t, m.lag.WithLabelValues("txn", "t", "0")); v != 0 {
		t.Errorf("transactional topic lag %v, want 0", v)
	}
	if v := gauge(t, m.lag.WithLabelValues("plain", "t", "0")); v != 1 {
		t.Errorf("lag without TransactionalTopic %v, want 1 (the commit marker)", v)
	}
	txn.Forget(map[string][]int32{"t": {0}})
	plain.ForgetAll()
	ch := make(chan prometheus.Metric, 10)
	m.lag.Collect(ch)
	if n := len(ch); n != 0 {
		t.Errorf("%d series left after Forget", n)
	}
	var nilTracker *LagTracker
	nilTracker.Observe(nil)
	nilTracker.Forget(nil)
	nilTracker.ForgetAll()
}

func gauge(t *testing.T, g prometheus.Gauge) float64 {
	t.Helper()
	var d dto.Metric
	if err := g.Write(&d); err != nil {
		t.Fatal(err)
	}
	return d.GetGauge().GetValue()
}
