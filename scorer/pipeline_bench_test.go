package scorer_test

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/moat-dev/moat/internal/kafka"
	"github.com/moat-dev/moat/schemas"
	"github.com/moat-dev/moat/scorer"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// BenchmarkScorerPipeline times the scorer role on a backlog: 50,000
// varied events already on an in-process kfake broker over TCP, decided in
// transactions until the scorer's committed offsets reach the end, with
// and without the cross-user stage (observations, aggregator, shared
// table). It reports events/s and the process's CPU per event, which
// includes the broker's share.
//
//	go test -run '^$' -bench BenchmarkScorerPipeline -benchtime 1x ./scorer/
func BenchmarkScorerPipeline(b *testing.B) {
	for _, crossUser := range []bool{false, true} {
		b.Run(fmt.Sprintf("cross_user=%v", crossUser), func(b *testing.B) {
			for b.Loop() {
				benchPipeline(b, crossUser, 50_000)
			}
		})
	}
}

func benchPipeline(b *testing.B, crossUser bool, n int) {
	b.StopTimer()
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	cfg := kafka.DefaultConfig()
	cfg.Brokers = c.ListenAddrs()
	cfg.Compression = "none"
	ctx := context.Background()
	cl, err := kgo.NewClient(kgo.SeedBrokers(cfg.Brokers...), kgo.ProducerBatchMaxBytes(1<<20))
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	if err := kafka.EnsureTopics(ctx, cl, cfg, schemas.AllTopics()...); err != nil {
		b.Fatal(err)
	}
	uas := []string{
		"Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
		"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
		"Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
	}
	recs := make([]*kgo.Record, 0, n)
	for i := 0; i < n; i++ {
		ev := event(i)
		ev.User.ID = fmt.Sprintf("user%d", i%10_000)
		ev.User.Email = ev.User.ID + "@example.com"
		ev.Context.IP = fmt.Sprintf("10.%d.%d.%d", i%7, (i/7)%250, i%251)
		ev.Context.Headers = map[string]string{"user-agent": uas[i%len(uas)], "accept-language": "en-US", "accept": "*/*"}
		recs = append(recs, &kgo.Record{Topic: schemas.TopicEvents, Key: ev.Key(), Value: ev.AppendJSON(nil)})
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		b.Fatal(err)
	}
	d := newDecider(b)
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	if crossUser {
		table, err := scorer.NewSharedTable(cfg, discard)
		if err != nil {
			b.Fatal(err)
		}
		agg, err := scorer.NewAggregator(scorer.AggregatorConfig{Kafka: cfg, TransactionalID: "bench-aggregator", MaxPollRecords: 10_000}, discard)
		if err != nil {
			b.Fatal(err)
		}
		d.SetShared(table)
		go table.Run(runCtx)
		go agg.Run(runCtx)
	}
	w, err := scorer.New(scorer.Config{Kafka: cfg, TransactionalID: "bench-scorer", MaxPollRecords: 10_000}, d, discard)
	if err != nil {
		b.Fatal(err)
	}
	adm := kadm.NewClient(cl)
	var r0 syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &r0)
	start := time.Now()
	b.StartTimer()
	done := make(chan error, 1)
	go func() { done <- w.Run(runCtx) }()
	groups := []string{schemas.GroupScorer}
	if crossUser {
		groups = append(groups, schemas.GroupAggregator)
	}
	for _, g := range groups {
		for {
			// The scorer's input has n records; the aggregator's is
			// written in transactions, so each partition's end offset is
			// one commit marker past the last record it consumes.
			var want int64 = int64(n)
			if g == schemas.GroupAggregator {
				ends, err := adm.ListEndOffsets(ctx, schemas.TopicObservations)
				if err != nil {
					b.Fatal(err)
				}
				want = 0
				ends.Each(func(o kadm.ListedOffset) {
					if o.Offset > 0 {
						want += o.Offset - 1
					}
				})
			}
			offs, err := adm.FetchOffsets(ctx, g)
			var sum int64
			if err == nil {
				offs.Each(func(o kadm.OffsetResponse) { sum += o.At })
			}
			if sum >= want && want > 0 {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	b.StopTimer()
	took := time.Since(start)
	var r1 syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &r1)
	cpu := time.Duration(r1.Utime.Nano()+r1.Stime.Nano()-r0.Utime.Nano()-r0.Stime.Nano()) * time.Nanosecond
	cancel()
	<-done
	b.ReportMetric(float64(n)/took.Seconds(), "events/s")
	b.ReportMetric(float64(cpu.Microseconds())/float64(n), "cpu-µs/event")
	b.StartTimer() // b.Loop expects it running
}
