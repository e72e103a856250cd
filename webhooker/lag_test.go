package webhooker

import (
	"testing"
	"time"

	"github.com/moat-dev/moat/internal/metrics"
	"github.com/moat-dev/moat/schemas"
	"github.com/prometheus/client_golang/prometheus"
)

func incidentsLag(t *testing.T, m *metrics.Metrics) (float64, bool) {
	t.Helper()
	mfs, err := m.Registerer().(prometheus.Gatherer).Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "moat_consumer_lag_records" {
			continue
		}
		for _, s := range mf.GetMetric() {
			l := map[string]string{}
			for _, p := range s.GetLabel() {
				l[p.GetName()] = p.GetValue()
			}
			if l["group"] == schemas.GroupWebhooker && l["topic"] == schemas.TopicIncidents && l["partition"] == "all" {
				return s.GetGauge().GetValue(), true
			}
		}
	}
	return 0, false
}

// TestConsumerLagMetric: a backlog of notifications produced before the
// worker starts shows as lag on the incidents reader, which falls to 0
// once it is read; stopping the worker removes the series.
func TestConsumerLagMetric(t *testing.T) {
	brokers := newCluster(t)
	rc := newReceiver(t, endpointSecrets("a"), always(200))
	var ns []schemas.Notification
	for i := range 1500 {
		ns = append(ns, notification("a", i))
	}
	newProducer(t, brokers).send(t, ns...)
	m := metrics.New()
	// Few records pending per consumer: the reader's queue fills and its
	// fetches stop short of the end.
	cfg := testConfig(brokers)
	cfg.MaxPending = 10
	w := startWorker(t, cfg, registry(t, testApp("a", rc.srv.URL)), NopLog{}, func(w *Worker) { WithMetrics(m)(w) })
	var maxLag float64
	eventually(t, 30*time.Second, "lag back to 0 after a backlog", func() bool {
		v, ok := incidentsLag(t, m)
		maxLag = max(maxLag, v)
		return ok && v == 0 && len(rc.deliveredIDs()) == len(ns)
	})
	t.Logf("max lag seen %v", maxLag)
	if maxLag == 0 {
		t.Error("the backlog never showed as lag")
	}
	w.stop(t)
	if _, ok := incidentsLag(t, m); ok {
		t.Error("lag series left after the worker stopped")
	}
}
