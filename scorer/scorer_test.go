package scorer_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/moat-dev/moat/internal/kafka"
	"github.com/moat-dev/moat/internal/kafka/kafkatest"
	"github.com/moat-dev/moat/internal/useragent"
	"github.com/moat-dev/moat/schemas"
	"github.com/moat-dev/moat/scorer"
	"github.com/moat-dev/moat/scorer/fingerprint"
	"github.com/moat-dev/moat/scorer/risk"
	"github.com/twmb/franz-go/pkg/kgo"
)

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

func newDecider(t testing.TB) *scorer.Decider {
	return newDeciderWith(t, scorer.Enrichment{}, nil)
}

// newDeciderWith is a decider with a fixed test device key, the given
// enrichment and the apps' policies.
func newDeciderWith(t testing.TB, enr scorer.Enrichment, policies map[string]*risk.Policy) *scorer.Decider {
	t.Helper()
	ua, err := useragent.New(0)
	if err != nil {
		t.Fatal(err)
	}
	fp, err := fingerprint.New([]byte(strings.Repeat("k", 32)))
	if err != nil {
		t.Fatal(err)
	}
	return scorer.NewDecider(ua, fp, enr, policies)
}

func event(i int) schemas.Event {
	return schemas.Event{
		V: 1, ID: uuid.Must(uuid.NewV7()).String(), AppID: "app", Kind: schemas.KindTrack, Type: "$login", Status: "$succeeded",
		User:       schemas.User{ID: fmt.Sprintf("u%d", i%13)},
		Context:    schemas.Context{IP: "192.0.2.1", Headers: map[string]string{"user-agent": "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0"}},
		ReceivedAt: time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Millisecond),
	}
}

type cluster struct {
	cfg kafka.Config
	cl  *kgo.Client
}

func newCluster(t *testing.T) cluster {
	t.Helper()
	_, cfg, cl := kafkatest.Cluster(t, 3)
	return cluster{cfg: cfg, cl: cl}
}

func (c cluster) produce(t *testing.T, recs ...*kgo.Record) {
	t.Helper()
	if err := c.cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// committed reads every committed record of topic until want arrived or
// the wait ends.
func (c cluster) committed(t *testing.T, topic string, want int, wait time.Duration) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.cfg.Brokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var out []*kgo.Record
	deadline := time.Now().Add(wait)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		out = append(out, cl.PollFetches(ctx).Records()...)
		cancel()
		if len(out) >= want {
			// Keep reading a little: a duplicate would arrive now.
			deadline = time.Now().Add(time.Second)
			want = len(out) + 1
		}
	}
	return out
}

func run(t *testing.T, c cluster, d *scorer.Decider) (stop func()) {
	t.Helper()
	w, err := scorer.New(scorer.Config{Kafka: c.cfg, TransactionalID: "test-scorer", MaxPollRecords: 50}, d, discard)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}

func eventRecord(t *testing.T, ev schemas.Event) *kgo.Record {
	b, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	return &kgo.Record{Topic: schemas.TopicEvents, Key: ev.Key(), Value: b}
}

// TestDecisionsExactlyOnceAcrossRestarts stops the scorer repeatedly while
// events flow; read-committed consumers see exactly one decision per event,
// and a garbage record goes to the dead-letter topic with its reason.
func TestDecisionsExactlyOnceAcrossRestarts(t *testing.T) {
	c := newCluster(t)
	d := newDecider(t)
	const n = 2000
	want := map[string]schemas.Event{}
	var recs []*kgo.Record
	for i := 0; i < n; i++ {
		ev := event(i)
		want[ev.ID] = ev
		recs = append(recs, eventRecord(t, ev))
	}
	c.produce(t, &kgo.Record{Topic: schemas.TopicEvents, Key: []byte("bad"), Value: []byte("{not json")})
	stop := run(t, c, d)
	for i := 0; i < len(recs); i += 250 {
		c.produce(t, recs[i:i+250]...)
		if i%500 == 0 {
			time.Sleep(30 * time.Millisecond)
			stop() // abort whatever transaction is open
			stop = run(t, c, d)
		}
	}
	got := c.committed(t, schemas.TopicDecisions, n, 20*time.Second)
	stop()
	if len(got) != n {
		t.Fatalf("%d committed decisions, want %d", len(got), n)
	}
	seen := map[string]bool{}
	for _, r := range got {
		var dec schemas.Decision
		if err := json.Unmarshal(r.Value, &dec); err != nil {
			t.Fatal(err)
		}
		ev, ok := want[dec.Event.ID]
		if !ok || seen[dec.Event.ID] {
			t.Fatalf("unexpected or duplicated decision for %s", dec.Event.ID)
		}
		seen[dec.Event.ID] = true
		if dec.Device.Token == "" || dec.Device.UserAgent.Browser != "Firefox" || string(r.Key) != string(ev.Key()) {
			t.Fatalf("decision %+v (key %q)", dec, r.Key)
		}
	}
	dead := c.committed(t, schemas.TopicDeadLetter, 1, 5*time.Second)
	if len(dead) != 1 || string(dead[0].Value) != "{not json" {
		t.Fatalf("dead letters: %d", len(dead))
	}
	var reason string
	for _, h := range dead[0].Headers {
		if h.Key == schemas.HeaderError {
			reason = string(h.Value)
		}
	}
	if reason == "" {
		t.Fatal("dead letter carries no reason")
	}
}

// TestReplayGivesIdenticalDecisions: deciding the same event twice, in any
// order and with any other events in between, gives the same bytes.
func TestReplayGivesIdenticalDecisions(t *testing.T) {
	d1, d2 := newDecider(t), newDecider(t)
	var evs []schemas.Event
	for i := 0; i < 200; i++ {
		evs = append(evs, event(i))
	}
	// Replay the same log into fresh state twice: identical decisions and
	// identical state bytes.
	run := func(d *scorer.Decider) ([][]byte, map[string][]byte) {
		states := map[string]*scorer.UserState{}
		var out [][]byte
		for i := range evs {
			k := string(evs[i].Key())
			if states[k] == nil {
				states[k] = &scorer.UserState{}
			}
			dec, _ := d.Decide(&evs[i], states[k])
			b, _ := json.Marshal(dec)
			out = append(out, b)
		}
		enc := map[string][]byte{}
		for k, st := range states {
			enc[k], _ = st.MarshalBinary()
		}
		return out, enc
	}
	a, sa := run(d1)
	b, sb := run(d2)
	for i := range a {
		if string(a[i]) != string(b[i]) {
			t.Fatalf("event %d decided differently on replay:\n%s\n%s", i, a[i], b[i])
		}
	}
	for k := range sa {
		if string(sa[k]) != string(sb[k]) {
			t.Fatalf("state of %q differs on replay", k)
		}
	}
}

func BenchmarkDecide(b *testing.B) {
	d := newDecider(b)
	ev := event(1)
	b.ReportAllocs()
	st := &scorer.UserState{}
	for b.Loop() {
		d.Decide(&ev, st)
	}
}
