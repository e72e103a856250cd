package ingest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/moat-dev/moat/internal/apps"
	"github.com/moat-dev/moat/internal/httpapi"
	"github.com/moat-dev/moat/internal/kafka"
	"github.com/moat-dev/moat/internal/metrics"
	"github.com/moat-dev/moat/schemas"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// BenchmarkTrackHTTP posts Castle-style track calls over keep-alive TCP
// connections to the ingest routes with the middleware moat dev serves
// them with (recovery, body limit, metrics, request log, authentication),
// each answered after an in-process kfake broker acknowledged it. It
// reports the process's CPU per request, client and broker included, and
// is the place to profile the HTTP path:
//
//	go test -run '^$' -bench BenchmarkTrackHTTP -cpuprofile /tmp/ingest.prof ./ingest/
func BenchmarkTrackHTTP(b *testing.B) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	kcfg := kafka.DefaultConfig()
	kcfg.Brokers = c.ListenAddrs()
	kcfg.Compression = "none"
	cl, err := kgo.NewClient(kgo.SeedBrokers(kcfg.Brokers...))
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	ctx := context.Background()
	if err := kafka.EnsureTopics(ctx, cl, kcfg, schemas.TopicSpec{Name: schemas.TopicEvents}); err != nil {
		b.Fatal(err)
	}
	m := metrics.New()
	prod, err := NewProducer(Config{Kafka: kcfg, ProduceTimeout: 5 * time.Second, Metrics: m}, log)
	if err != nil {
		b.Fatal(err)
	}
	defer prod.Close()
	reg, err := apps.New([]apps.App{{ID: "app", Secret: testSecret}})
	if err != nil {
		b.Fatal(err)
	}
	e := httpapi.New(httpapi.Config{BodyLimit: 1 << 20, Metrics: m}, log)
	e.Use(httpapi.Authenticate(reg))
	NewHandler(prod, nil, log).Routes(e.Group(""))
	srv := httptest.NewServer(e)
	defer srv.Close()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256, MaxConnsPerHost: 256}}
	var seq atomic.Int64
	b.SetParallelism(32)
	var r0, r1 syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &r0)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := seq.Add(1)
			body := fmt.Appendf(nil, `{"type":"$login","status":"$succeeded","request_token":"tok-%d","user":{"id":"user-%d","email":"user-%d@example.com","traits":{"plan":"pro"}},"context":{"ip":"10.%d.%d.%d","headers":{"User-Agent":"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36","Accept-Language":"en-US,en;q=0.9","Accept":"text/html","X-Forwarded-For":"10.1.2.3"}},"properties":{"source":"web"},"timestamp":"2026-11-22T08:00:00.000Z"}`,
				i, i%10_000, i%10_000, i%7, (i/7)%250, i%251)
			req, _ := http.NewRequest(http.MethodPost, srv.URL+"/v1/track", bytes.NewReader(body))
			req.SetBasicAuth("", testSecret)
			req.Header.Set("Content-Type", "application/json")
			res, err := client.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.StatusCode != http.StatusNoContent {
				b.Errorf("status %d", res.StatusCode)
				return
			}
		}
	})
	b.StopTimer()
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &r1)
	cpu := time.Duration(r1.Utime.Nano() + r1.Stime.Nano() - r0.Utime.Nano() - r0.Stime.Nano())
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/req")
}
