package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/moat-dev/moat/internal/stacktest"
)

// BenchmarkUserDevicesAPI measures GET /v1/users/{id}/devices over HTTP
// (authentication, ClickHouse queries for the devices view, the feedback
// and the recoveries, JSON) for a user with 50 devices, with 1,000,000
// events of 100,000 users in ClickHouse. It reports the latency
// percentiles of the sequential requests (issue target: p99 under 20 ms).
func BenchmarkUserDevicesAPI(b *testing.B) {
	s := stacktest.New(b, stacktest.Options{NoWorkers: true})
	const (
		total   = 1_000_000
		users   = 100_000
		devices = 50
		target  = "user-with-50-devices"
	)
	start := time.Now()
	ctx := context.Background()
	r := rand.New(rand.NewPCG(1, 1))
	base := time.Now().Add(-30 * 24 * time.Hour).UnixMilli()
	browsers := []string{"Chrome", "Firefox", "Safari", "Edge"}
	for done := 0; done < total; {
		batch, err := s.Conn.PrepareBatch(ctx, fmt.Sprintf(`INSERT INTO %s.events (app_id, id, kind, type, status, user_id, ip,
			device_token, fingerprint, received_at, received_at_ms, ua_browser, ua_os, ua_device_type, kafka_partition, kafka_offset, version)`, s.DB))
		if err != nil {
			b.Fatal(err)
		}
		for i := 0; i < 100_000 && done < total; i, done = i+1, done+1 {
			user := fmt.Sprintf("user-%d", r.IntN(users))
			dev := r.IntN(3)
			if done%50 == 0 { // 20,000 events of the target user over its 50 devices
				user, dev = target, r.IntN(devices)
			}
			at := base + int64(done)*2 // 2 ms apart: 23 days of traffic
			token := fmt.Sprintf("tok-%s-%d", user, dev)
			if err := batch.Append("app-a", uuid.New(), "track", "$login", "$succeeded", user, fmt.Sprintf("203.0.%d.%d", dev, r.IntN(250)),
				token, "fp-"+token, time.UnixMilli(at).UTC(), uint64(at), browsers[dev%len(browsers)], "Windows", "desktop", int32(0), int64(done), uint64(1)); err != nil {
				b.Fatal(err)
			}
		}
		if err := batch.Send(); err != nil {
			b.Fatal(err)
		}
	}
	b.Logf("inserted %d events in %v", total, time.Since(start).Round(time.Millisecond))
	// A live table is merged in the background as it grows; the bulk load
	// above leaves one part per batch. Merge them, as the server would
	// soon after, so the reads see the steady state.
	start = time.Now()
	for _, table := range []string{"events", "device_states", "device_users"} {
		if err := s.Conn.Exec(ctx, fmt.Sprintf("OPTIMIZE TABLE %s.%s FINAL", s.DB, table)); err != nil {
			b.Fatal(err)
		}
	}
	b.Logf("merged in %v", time.Since(start).Round(time.Millisecond))
	secret := stacktest.Secret("app-a")
	get := func() time.Duration {
		t0 := time.Now()
		code, body := s.Do("GET", "/v1/users/"+target+"/devices", secret, "")
		d := time.Since(t0)
		var list struct {
			TotalCount int `json:"total_count"`
		}
		if err := json.Unmarshal([]byte(body), &list); code != 200 || err != nil || list.TotalCount != devices {
			b.Fatalf("GET devices: %d %.200s", code, body)
		}
		return d
	}
	for range 20 { // warm up: ClickHouse caches, connections
		get()
	}
	b.Run("user=50-devices/events=1M", func(b *testing.B) {
		lat := make([]time.Duration, 0, b.N)
		for b.Loop() {
			lat = append(lat, get())
		}
		slices.Sort(lat)
		pct := func(p float64) float64 {
			return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Microseconds()) / 1000
		}
		b.ReportMetric(pct(0.5), "p50-ms")
		b.ReportMetric(pct(0.99), "p99-ms")
		b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1000, "max-ms")
	})
}
