package e2e_test

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moat-dev/moat/internal/chtest"
	"github.com/moat-dev/moat/internal/stacktest"
)

// postLoad posts n track calls from workers goroutines, retrying each call
// on 503 (as an app would), and returns how many were accepted.
func postLoad(t *testing.T, s *stacktest.Stack, n, workers int, user string) int64 {
	t.Helper()
	secret := stacktest.Secret("app-a")
	var accepted atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < n; i += workers {
				body := trackBody(fmt.Sprintf("%s%d", user, i%40), i)
				for attempt := 0; attempt < 200; attempt++ {
					code, _ := s.Post("/v1/track", secret, body)
					if code == http.StatusNoContent {
						accepted.Add(1)
						break
					}
					if code != http.StatusServiceUnavailable {
						t.Errorf("post: status %d", code)
						return
					}
					time.Sleep(50 * time.Millisecond)
				}
			}
		}(w)
	}
	wg.Wait()
	return accepted.Load()
}

// TestClickHouseOutage stops ClickHouse while events flow: the projector
// retries, nothing is lost or duplicated once ClickHouse is back.
func TestClickHouseOutage(t *testing.T) {
	srv := chtest.Server()
	if srv == nil {
		t.Skip("ClickHouse is external ($CLICKHOUSE_ADDR): cannot stop it")
	}
	s := stacktest.New(t, stacktest.Options{})
	done := make(chan int64)
	go func() { done <- postLoad(t, s, 2000, 4, "ch") }()
	for s.Events("app-a") < 200 {
		time.Sleep(20 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second) // ingest keeps accepting; the projector retries
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	accepted := <-done
	if accepted != 2000 {
		t.Fatalf("accepted %d of 2000", accepted)
	}
	s.WaitEvents("app-a", uint64(accepted), 60*time.Second)
}

// TestBrokerRestart restarts the broker (with its persisted log) while
// events flow: every accepted event is in ClickHouse exactly once.
func TestBrokerRestart(t *testing.T) {
	s := stacktest.New(t, stacktest.Options{Persist: true, ProduceTimeout: time.Second})
	done := make(chan int64)
	go func() { done <- postLoad(t, s, 1500, 4, "br") }()
	for s.Events("app-a") < 200 {
		time.Sleep(20 * time.Millisecond)
	}
	s.RestartBroker(time.Second)
	accepted := <-done
	s.WaitEvents("app-a", uint64(accepted), 60*time.Second)
	if accepted != 1500 {
		t.Fatalf("accepted %d of 1500", accepted)
	}
}
