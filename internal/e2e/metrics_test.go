package e2e_test

import (
	"strings"
	"testing"
	"time"

	"github.com/moat-dev/moat/internal/stacktest"
)

// TestMetrics: /metrics is served without credentials (it holds no tenant
// data) and reflects the traffic: requests by route pattern (never by raw
// path), appends, decisions, inserts and freshness.
func TestMetrics(t *testing.T) {
	s := stacktest.New(t, stacktest.Options{})
	a := stacktest.Secret("app-a")
	s.Post("/v1/track", a, trackBody("u-metrics", 1))
	s.Post("/v1/risk", a, riskBody("u-metrics", "tok", ""))
	s.Do("GET", "/v1/users/u-metrics/devices", a, "")
	s.WaitEvents("app-a", 2, 20*time.Second)
	code, body := s.Do("GET", "/metrics", "", "")
	if code != 200 {
		t.Fatalf("/metrics: %d", code)
	}
	for _, want := range []string{
		`moat_http_request_duration_seconds_count{method="POST",route="/v1/track",status="204"} 1`,
		`moat_http_request_duration_seconds_count{method="POST",route="/v1/risk",status="201"} `, // the stack's warm-up calls too
		`route="/v1/users/:user_id/devices"`,
		`moat_ingest_events_total{kind="track"} 1`,
		`moat_scorer_decisions_total{action="allow",kind="risk"} `,
		`moat_scorer_decisions_total{action="",kind="track"} 1`,
		`moat_projector_freshness_seconds_count`,
		`moat_projector_batch_rows_count`,
		`go_goroutines`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if strings.Contains(body, "u-metrics") {
		t.Error("a user id leaked into metric labels")
	}
}
