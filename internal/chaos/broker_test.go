package chaos_test

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestBrokerKillKeepsAcknowledged: the embedded broker (moat broker, and
// moat dev's) writes every batch to its segment files before it
// acknowledges it, so a SIGKILL mid-stream loses no acknowledged record
// even without fsync (the page cache outlives the process). This is why
// --kafka-sync is off by default; it only matters for a crash of the
// machine.
func TestBrokerKillKeepsAcknowledged(t *testing.T) {
	bin := moatBinary(t)
	dir := t.TempDir()
	logf, err := os.Create(filepath.Join(dir, "broker.log"))
	if err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	brokers := "127.0.0.1:" + strconv.Itoa(port)
	broker := &proc{t: t, name: "broker", args: []string{bin, "broker", "--data-dir", filepath.Join(dir, "kafka"), "--kafka-port", strconv.Itoa(port), "--log-level", "warn"}, log: logf}
	broker.start()
	t.Cleanup(broker.stop)
	ctx := context.Background()

	prod, err := kgo.NewClient(kgo.SeedBrokers(brokers), kgo.DefaultProduceTopic("acked"), kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.RecordRetries(3), kgo.RecordDeliveryTimeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		if _, err = kadm.NewClient(prod).CreateTopic(ctx, 3, 1, nil, "acked"); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("create topic: %v", err)
	}

	var (
		mu    sync.Mutex
		acked = map[string]bool{}
	)
	stop := make(chan struct{})
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			v := strconv.Itoa(i)
			prod.Produce(ctx, &kgo.Record{Value: []byte(v)}, func(_ *kgo.Record, err error) {
				if err == nil {
					mu.Lock()
					acked[v] = true
					mu.Unlock()
				}
			})
			if i%1000 == 999 {
				time.Sleep(time.Millisecond) // keep the buffer from filling up
			}
		}
	}()
	time.Sleep(time.Second)
	broker.kill() // SIGKILL mid-stream
	close(stop)
	<-sent
	go prod.Close() // unacknowledged records fail when their timeout passes
	mu.Lock()
	n := len(acked)
	ackedAtKill := make([]string, 0, n)
	for v := range acked {
		ackedAtKill = append(ackedAtKill, v)
	}
	mu.Unlock()
	if n < 1000 {
		t.Fatalf("only %d records acknowledged before the kill", n)
	}

	broker.start()
	cons, err := kgo.NewClient(kgo.SeedBrokers(brokers), kgo.ConsumeTopics("acked"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	read := map[string]bool{}
	// Reloading the log takes a moment: wait for the first records, then
	// read until three polls come back empty.
	for idle, deadline := 0, time.Now().Add(30*time.Second); idle < 3 && time.Now().Before(deadline); {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		f := cons.PollFetches(pctx)
		cancel()
		if f.NumRecords() == 0 {
			if len(read) > 0 {
				idle++
			}
			continue
		}
		idle = 0
		f.EachRecord(func(r *kgo.Record) { read[string(r.Value)] = true })
	}
	lost := 0
	for _, v := range ackedAtKill {
		if !read[v] {
			lost++
		}
	}
	t.Logf("%d records acknowledged before the SIGKILL, %d read after the restart", n, len(read))
	if lost > 0 {
		t.Fatalf("%d of %d acknowledged records lost by the SIGKILL", lost, n)
	}
}
