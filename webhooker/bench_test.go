package webhooker

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/moat-dev/moat/internal/apps"
	"github.com/moat-dev/moat/schemas"
)

// BenchmarkDeliveries measures deliveries per second from the incidents
// topic (in-process kfake) to fast local receivers that verify the Castle
// signature, and the first-attempt latency from produce to receive. Kafka,
// the worker and the receivers share the machine's cores.
//
//	go test ./webhooker -run '^$' -bench Deliveries -benchtime 20000x
func BenchmarkDeliveries(b *testing.B) {
	for _, endpoints := range []int{1, 10} {
		b.Run(fmt.Sprintf("endpoints=%d", endpoints), func(b *testing.B) { benchDeliveries(b, endpoints, 0) })
	}
}

// BenchmarkFirstAttemptLatency offers a steady load (notifications per
// second, all to one endpoint) instead of a burst, so the latency
// percentiles are those of a first attempt, not of a queue.
//
//	go test ./webhooker -run '^$' -bench FirstAttemptLatency -benchtime 5000x
func BenchmarkFirstAttemptLatency(b *testing.B) {
	for _, rate := range []int{500, 2000} {
		b.Run(fmt.Sprintf("rate=%d", rate), func(b *testing.B) { benchDeliveries(b, 1, rate) })
	}
}

// benchDeliveries delivers b.N notifications to endpoints endpoints, all
// at once (rate 0) or at rate notifications per second.
func benchDeliveries(b *testing.B, endpoints, rate int) {
	brokers := newCluster(b)
	var mu sync.Mutex
	var lat []time.Duration
	got := 0
	all := make(chan struct{})
	want := b.N + endpoints // plus the warm-up notification
	secret := "bench-api-secret-0123456789"
	var bad int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		now := time.Now()
		ok := Verify(secret, body, r.Header.Get(HeaderCastleSignature))
		var sent int64
		if i := bytes.Index(body, []byte(`"sent":`)); i >= 0 {
			rest := body[i+len(`"sent":`):]
			if j := bytes.IndexAny(rest, ",}"); j > 0 {
				sent, _ = strconv.ParseInt(string(rest[:j]), 10, 64)
			}
		}
		mu.Lock()
		got++
		if !ok {
			bad++
		}
		if sent > 0 {
			lat = append(lat, now.Sub(time.Unix(0, sent)))
		}
		if got == want {
			close(all)
		}
		mu.Unlock()
	}))
	b.Cleanup(srv.Close)
	app := apps.App{ID: "bench", Secret: secret}
	for i := range endpoints {
		app.Webhooks = append(app.Webhooks, apps.Webhook{ID: "ep" + strconv.Itoa(i), URL: srv.URL + "/" + strconv.Itoa(i), AllowPrivate: true})
	}
	cfg := testConfig(brokers)
	cfg.RequestTimeout = 5 * time.Second
	cfg.ConnectTimeout = time.Second
	cfg.CommitInterval = 200 * time.Millisecond
	startWorker(b, cfg, registry(b, app), NopLog{})
	p := newProducer(b, brokers)

	p.send(b, schemas.Notification{ID: "warm-up", AppID: "bench", Type: schemas.NotifyIncidentConfirmed, Data: json.RawMessage(`{}`)})
	waitFor := func(n int) {
		deadline := time.Now().Add(2 * time.Minute)
		for {
			mu.Lock()
			g := got
			mu.Unlock()
			if g >= n {
				return
			}
			if time.Now().After(deadline) {
				b.Fatalf("only %d of %d deliveries", g, n)
			}
			time.Sleep(time.Millisecond)
		}
	}
	waitFor(endpoints)
	mu.Lock()
	lat = lat[:0]
	mu.Unlock()

	notes := b.N / endpoints
	if notes*endpoints < b.N {
		notes++
	}
	mu.Lock()
	want = notes*endpoints + endpoints
	mu.Unlock()
	b.ResetTimer()
	start := time.Now()
	batch, tick := 500, time.Duration(0)
	if rate > 0 {
		// Batches of 10ms worth of notifications, every 10ms.
		batch, tick = max(1, rate/100), 10*time.Millisecond
	}
	next := time.Now()
	for i := 0; i < notes; i += batch {
		if tick > 0 {
			time.Sleep(time.Until(next))
			next = next.Add(tick)
		}
		ns := make([]schemas.Notification, 0, batch)
		for j := i; j < min(i+batch, notes); j++ {
			ns = append(ns, schemas.Notification{
				V: schemas.NotificationVersion, ID: "n" + strconv.Itoa(j), AppID: "bench", UserID: "u" + strconv.Itoa(j%1000),
				Type: schemas.NotifyIncidentConfirmed, CreatedAt: time.Now(),
				Data: json.RawMessage(`{"device_token":"tok","user_id":"u","trigger":"$login.succeeded","sent":` + strconv.FormatInt(time.Now().UnixNano(), 10) + `}`),
			})
		}
		p.send(b, ns...)
	}
	select {
	case <-all:
	case <-time.After(2 * time.Minute):
		mu.Lock()
		defer mu.Unlock()
		b.Fatalf("only %d of %d deliveries", got, want)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	mu.Lock()
	defer mu.Unlock()
	if bad > 0 {
		b.Fatalf("%d deliveries with a bad signature", bad)
	}
	b.ReportMetric(float64(notes*endpoints)/elapsed.Seconds(), "deliveries/s")
	b.ReportMetric(float64(percentile(lat, 50).Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(percentile(lat, 95).Microseconds())/1000, "p95-ms")
	b.ReportMetric(float64(percentile(lat, 99).Microseconds())/1000, "p99-ms")
}
