// Package metrics holds Moat's Prometheus metrics: one registry per
// process, the metric families of each role, and the /metrics handler.
// Every family is prefixed moat_.
package metrics

import (
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics are every role's metric families, registered on one registry.
// A nil *Metrics is valid: every method is then a no-op, so roles and tests
// can run without metrics.
type Metrics struct {
	reg *prometheus.Registry

	httpDuration *prometheus.HistogramVec

	produceDuration *prometheus.HistogramVec
	accepted        *prometheus.CounterVec

	decisions   *prometheus.CounterVec
	signals     *prometheus.CounterVec
	txDuration  prometheus.Histogram
	txFailures  prometheus.Counter
	restores    prometheus.Histogram
	deadLetters prometheus.Counter

	batchRows      prometheus.Histogram
	insertDuration prometheus.Histogram
	insertFailures prometheus.Counter
	freshness      prometheus.Histogram

	lag *prometheus.GaugeVec
}

var latencyBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// New registers every family, plus the Go runtime and process collectors.
func New() *Metrics {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := &Metrics{reg: reg}
	f := func(c prometheus.Collector) { reg.MustRegister(c) }
	m.httpDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "moat_http_request_duration_seconds",
		Help: "HTTP request latency by route, method and status.", Buckets: latencyBuckets}, []string{"route", "method", "status"})
	f(m.httpDuration)
	m.produceDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "moat_ingest_produce_duration_seconds",
		Help: "Time from append to the broker's acknowledgement, by result.", Buckets: latencyBuckets}, []string{"result"})
	f(m.produceDuration)
	m.accepted = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "moat_ingest_events_total",
		Help: "Calls appended to the event log (acknowledged) by kind."}, []string{"kind"})
	f(m.accepted)
	m.decisions = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "moat_scorer_decisions_total",
		Help: "Decisions by event kind and policy action (empty for unscored kinds)."}, []string{"kind", "action"})
	f(m.decisions)
	m.signals = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "moat_scorer_signals_total",
		Help: "Signals that fired, by name."}, []string{"signal"})
	f(m.signals)
	m.txDuration = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "moat_scorer_transaction_duration_seconds",
		Help: "Duration of one consume-decide-produce transaction.", Buckets: latencyBuckets})
	f(m.txDuration)
	m.txFailures = prometheus.NewCounter(prometheus.CounterOpts{Name: "moat_scorer_transaction_failures_total",
		Help: "Transactions aborted or failed (their events are decided again)."})
	f(m.txFailures)
	m.restores = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "moat_scorer_state_restore_duration_seconds",
		Help: "Time to restore one partition's user state from the changelog.", Buckets: prometheus.ExponentialBuckets(0.01, 4, 8)})
	f(m.restores)
	m.deadLetters = prometheus.NewCounter(prometheus.CounterOpts{Name: "moat_dead_letters_total",
		Help: "Records sent to the dead-letter topic."})
	f(m.deadLetters)
	m.batchRows = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "moat_projector_batch_rows",
		Help: "Rows per ClickHouse insert.", Buckets: prometheus.ExponentialBuckets(1, 4, 10)})
	f(m.batchRows)
	m.insertDuration = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "moat_projector_insert_duration_seconds",
		Help: "Duration of one successful ClickHouse insert.", Buckets: latencyBuckets})
	f(m.insertDuration)
	m.insertFailures = prometheus.NewCounter(prometheus.CounterOpts{Name: "moat_projector_insert_failures_total",
		Help: "Failed ClickHouse insert attempts (retried)."})
	f(m.insertFailures)
	m.freshness = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "moat_projector_freshness_seconds",
		Help: "End-to-end freshness: from ingest's received_at to the row being written to ClickHouse.", Buckets: latencyBuckets})
	f(m.freshness)
	m.lag = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "moat_consumer_lag_records",
		Help: "Records (offsets) between a consumer's position and the partition's end (last stable offset for read-committed consumers), as of its last fetch."},
		[]string{"group", "topic", "partition"})
	f(m.lag)
	return m
}

// Registerer lets other packages add their own families (nil when m is nil).
func (m *Metrics) Registerer() prometheus.Registerer {
	if m == nil {
		return nil
	}
	return m.reg
}

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// Middleware records every request's latency by route pattern (never the
// raw path, so user ids do not become labels).
func (m *Metrics) Middleware() echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			if m == nil {
				return next(c)
			}
			start := time.Now()
			err := next(c)
			status := c.Response().Status
			if err != nil {
				if he, ok := err.(*echo.HTTPError); ok {
					status = he.Code
				} else if ce, ok := err.(interface{ CastleError() (int, string, string) }); ok {
					status, _, _ = ce.CastleError()
				}
			}
			route := c.Path()
			if route == "" {
				route = "unmatched"
			}
			m.httpDuration.WithLabelValues(route, c.Request().Method, strconv.Itoa(status)).Observe(time.Since(start).Seconds())
			return err
		}
	}
}

// Produced records one append and its outcome.
func (m *Metrics) Produced(kind string, d time.Duration, err error) {
	if m == nil {
		return
	}
	result := "ok"
	if err != nil {
		result = "error"
	} else {
		m.accepted.WithLabelValues(kind).Inc()
	}
	m.produceDuration.WithLabelValues(result).Observe(d.Seconds())
}

// Decided records one decision.
func (m *Metrics) Decided(kind, action string, signals []string) {
	if m == nil {
		return
	}
	m.decisions.WithLabelValues(kind, action).Inc()
	for _, s := range signals {
		m.signals.WithLabelValues(s).Inc()
	}
}

// Transaction records one scorer transaction.
func (m *Metrics) Transaction(d time.Duration, err error) {
	if m == nil {
		return
	}
	if err != nil {
		m.txFailures.Inc()
		return
	}
	m.txDuration.Observe(d.Seconds())
}

// Restored records one partition restore.
func (m *Metrics) Restored(d time.Duration) {
	if m != nil {
		m.restores.Observe(d.Seconds())
	}
}

// DeadLettered counts one dead letter.
func (m *Metrics) DeadLettered() {
	if m != nil {
		m.deadLetters.Inc()
	}
}

// Inserted records one projector insert of rows whose received_at times
// are given (epoch ms), observing their freshness now.
func (m *Metrics) Inserted(rows int, d time.Duration, receivedMs []int64) {
	if m == nil {
		return
	}
	m.batchRows.Observe(float64(rows))
	m.insertDuration.Observe(d.Seconds())
	now := time.Now().UnixMilli()
	for _, r := range receivedMs {
		m.freshness.Observe(float64(now-r) / 1000)
	}
}

// InsertFailed counts one failed insert attempt.
func (m *Metrics) InsertFailed() {
	if m != nil {
		m.insertFailures.Inc()
	}
}

// WebhookStats is what the webhooker counts (webhooker.Stats).
type WebhookStats struct {
	Delivered, Retried, Deferred, DeadLettered, BadRecords int64
}

// WatchWebhooks exposes the webhooker's counters as
// moat_webhook_attempts_total{outcome}.
func (m *Metrics) WatchWebhooks(stats func() WebhookStats) {
	if m == nil {
		return
	}
	for _, o := range []struct {
		name string
		get  func(WebhookStats) int64
	}{
		{"delivered", func(s WebhookStats) int64 { return s.Delivered }},
		{"retry", func(s WebhookStats) int64 { return s.Retried }},
		{"deferred", func(s WebhookStats) int64 { return s.Deferred }},
		{"dead", func(s WebhookStats) int64 { return s.DeadLettered }},
		{"bad_record", func(s WebhookStats) int64 { return s.BadRecords }},
	} {
		get := o.get
		m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "moat_webhook_attempts_total", Help: "Webhook deliveries by outcome.",
			ConstLabels: prometheus.Labels{"outcome": o.name},
		}, func() float64 { return float64(get(stats())) }))
	}
}

// Serve serves /metrics and /healthz on addr until ctx's done channel
// closes (for the roles that have no HTTP API).
func (m *Metrics) Serve(done <-chan struct{}, addr string) error {
	mux := http.NewServeMux()
	mux.Handle("/metrics", m.Handler())
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte(`{"status":"ok"}`)) })
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	select {
	case err := <-errc:
		return err
	case <-done:
		return srv.Close()
	}
}
