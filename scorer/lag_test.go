package scorer_test

import (
	"context"
	"testing"
	"time"

	"github.com/moat-dev/moat/internal/metrics"
	"github.com/moat-dev/moat/schemas"
	"github.com/moat-dev/moat/scorer"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
)

// consumerLag reads moat_consumer_lag_records of group by partition.
func consumerLag(t *testing.T, m *metrics.Metrics, group string) map[string]float64 {
	t.Helper()
	mfs, err := m.Registerer().(prometheus.Gatherer).Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "moat_consumer_lag_records" {
			continue
		}
		for _, s := range mf.GetMetric() {
			l := map[string]string{}
			for _, p := range s.GetLabel() {
				l[p.GetName()] = p.GetValue()
			}
			if l["group"] == group {
				out[l["topic"]+"/"+l["partition"]] = s.GetGauge().GetValue()
			}
		}
	}
	return out
}

// TestConsumerLagMetric produces a backlog while the scorer is stopped,
// starts it and sees moat_consumer_lag_records go from above 0 to 0 on
// every partition of the events topic; stopping the worker drops its series.
func TestConsumerLagMetric(t *testing.T) {
	c := newCluster(t)
	d := newDecider(t)
	const n = 3000
	var recs []*kgo.Record
	for i := 0; i < n; i++ {
		recs = append(recs, eventRecord(t, event(i)))
	}
	c.produce(t, recs...)
	m := metrics.New()
	w, err := scorer.New(scorer.Config{Kafka: c.cfg, TransactionalID: "test-scorer-lag", MaxPollRecords: 50, Metrics: m}, d, discard)
	if err != nil {
		t.Fatal(err)
	}
	if got := consumerLag(t, m, schemas.GroupScorer); len(got) != 0 {
		t.Fatalf("lag before start: %v", got)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	var maxLag float64
	deadline := time.Now().Add(60 * time.Second)
	for {
		got := consumerLag(t, m, schemas.GroupScorer)
		zero := len(got) == int(c.cfg.Partitions)
		for _, v := range got {
			maxLag = max(maxLag, v)
			zero = zero && v == 0
		}
		if zero && maxLag > 0 {
			t.Logf("max lag seen %v, now %v", maxLag, got)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("lag did not reach 0 on every partition (max seen %v): %v", maxLag, got)
		}
		time.Sleep(2 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := consumerLag(t, m, schemas.GroupScorer); len(got) != 0 {
		t.Errorf("lag series left after the worker stopped: %v", got)
	}
}
