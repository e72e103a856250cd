package scorer

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/moat-dev/moat/internal/kafka"
	"github.com/moat-dev/moat/schemas"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// restoreTemplates returns the encoded states of users built by running
// 1 to 12 events each (logins, failed logins, registrations, from up to 4
// browsers and 6 addresses) through a real Decider.
func restoreTemplates(b *testing.B, n int) [][]byte {
	ua, fp := testParts(b)
	d := NewDecider(ua, fp, Enrichment{}, nil)
	uas := []string{
		"Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
		"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
		"Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
		"Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
	}
	types := []struct{ typ, status string }{{"$login", "$succeeded"}, {"$login", "$failed"}, {"$registration", "$succeeded"}, {"$login", "$succeeded"}}
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	out := make([][]byte, n)
	for t := range n {
		st := &UserState{}
		for e := range 1 + t%12 {
			ty := types[(t+e)%len(types)]
			ev := schemas.Event{
				V: 1, ID: uuid.Must(uuid.NewV7()).String(), AppID: "app", Kind: schemas.KindTrack, Type: ty.typ, Status: ty.status,
				User: schemas.User{ID: "u" + strconv.Itoa(t), Email: fmt.Sprintf("user%d@example.com", t)},
				Context: schemas.Context{IP: fmt.Sprintf("198.51.100.%d", 1+(t*7+e)%6),
					Headers: map[string]string{"user-agent": uas[(t+e/3)%len(uas)], "accept-language": "en-US,en;q=0.9"}},
				ReceivedAt: t0.Add(time.Duration(t)*time.Hour + time.Duration(e)*17*time.Minute),
			}
			d.Decide(&ev, st)
		}
		bs, err := st.MarshalBinary()
		if err != nil {
			b.Fatal(err)
		}
		out[t] = bs
	}
	return out
}

// BenchmarkRestoreUsers writes the state of 1,000,000 users (override with
// MOAT_BENCH_RESTORE_USERS) to the changelog of an in-process kfake broker
// over TCP, in transactions of 500 records as the scorer writes them, then
// times the real restore path: one stateStore restoring every partition in
// turn, as a scorer taking all of them over does.
//
//	go test -run '^$' -bench BenchmarkRestoreUsers -benchtime 1x ./scorer/
func BenchmarkRestoreUsers(b *testing.B) {
	users := 1_000_000
	if v, err := strconv.Atoi(os.Getenv("MOAT_BENCH_RESTORE_USERS")); err == nil && v > 0 {
		users = v
	}
	const partitions, txnSize = 12, 500
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	cfg := kafka.DefaultConfig()
	cfg.Brokers = c.ListenAddrs()
	cfg.Partitions = partitions
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx := context.Background()
	pr, err := kgo.NewClient(append(kafka.ClientOpts(cfg, log, "bench-writer"),
		kgo.TransactionalID("bench-restore"), kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerLinger(0))...)
	if err != nil {
		b.Fatal(err)
	}
	defer pr.Close()
	var spec schemas.TopicSpec
	for _, t := range schemas.AllTopics() {
		if t.Name == schemas.TopicScorerState {
			spec = t
		}
	}
	if err := kafka.EnsureTopics(ctx, pr, cfg, spec); err != nil {
		b.Fatal(err)
	}
	tmpl := restoreTemplates(b, 256)
	start, bytes := time.Now(), 0
	hdr := []kgo.RecordHeader{{Key: schemas.HeaderSchema, Value: []byte("scorer-state.v1")}}
	recs := make([]*kgo.Record, 0, txnSize)
	for i := 0; i < users; {
		if err := pr.BeginTransaction(); err != nil {
			b.Fatal(err)
		}
		recs = recs[:0]
		for ; len(recs) < txnSize && i < users; i++ {
			v := tmpl[i%len(tmpl)]
			bytes += len(v)
			recs = append(recs, &kgo.Record{Topic: schemas.TopicScorerState, Partition: int32(i % partitions),
				Key: []byte("app\x00u:user-" + strconv.Itoa(i)), Value: v, Headers: hdr})
		}
		if err := pr.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			b.Fatal(err)
		}
		if err := pr.EndTransaction(ctx, kgo.TryCommit); err != nil {
			b.Fatal(err)
		}
	}
	b.Logf("wrote %d states (%.0f bytes average, %d MB) in %s", users, float64(bytes)/float64(users), bytes>>20, time.Since(start).Round(time.Millisecond))

	b.ResetTimer()
	var took time.Duration
	for b.Loop() {
		s := newStateStore(cfg, (&Decider{}).NewState, log)
		runtime.GC()
		t0 := time.Now()
		for p := range int32(partitions) {
			if err := s.restore(ctx, p); err != nil {
				b.Fatal(err)
			}
		}
		took = time.Since(t0)
		if len(s.users) != users {
			b.Fatalf("restored %d users, want %d", len(s.users), users)
		}
	}
	b.ReportMetric(float64(users)/took.Seconds(), "users/s")
	b.ReportMetric(took.Seconds(), "s/restore")
}
