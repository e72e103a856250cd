package scorer_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/moat-dev/moat/schemas"
	"github.com/moat-dev/moat/scorer"
	"github.com/moat-dev/moat/scorer/fingerprint"
	"github.com/moat-dev/moat/scorer/risk"
	"github.com/twmb/franz-go/pkg/kgo"
)

// crossUserStage is a scorer with its aggregator and shared table, as the
// scorer role runs them.
type crossUserStage struct {
	table *scorer.SharedTable
	stop  func()
}

func startCrossUser(t *testing.T, c cluster, d *scorer.Decider) *crossUserStage {
	t.Helper()
	table, err := scorer.NewSharedTable(c.cfg, discard)
	if err != nil {
		t.Fatal(err)
	}
	agg, err := scorer.NewAggregator(scorer.AggregatorConfig{Kafka: c.cfg, TransactionalID: "test-aggregator", MaxPollRecords: 50}, discard)
	if err != nil {
		t.Fatal(err)
	}
	d.SetShared(table)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 2)
	go func() { done <- table.Run(ctx) }()
	go func() { done <- agg.Run(ctx) }()
	sctx, scancel := context.WithTimeout(ctx, 10*time.Second)
	defer scancel()
	if err := table.Sync(sctx); err != nil {
		t.Fatal(err)
	}
	stopScorer := run(t, c, d)
	return &crossUserStage{table: table, stop: func() {
		stopScorer()
		cancel()
		for range 2 {
			if err := <-done; err != nil {
				t.Error(err)
			}
		}
	}}
}

// decisions reads the decisions topic, one decision at a time.
type decisions struct {
	cl   *kgo.Client
	seen map[string]schemas.Decision
}

func newDecisions(t *testing.T, c cluster) *decisions {
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.cfg.Brokers...), kgo.ConsumeTopics(schemas.TopicDecisions),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return &decisions{cl: cl, seen: map[string]schemas.Decision{}}
}

func (ds *decisions) of(t *testing.T, id string) schemas.Decision {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for {
		if d, ok := ds.seen[id]; ok {
			return d
		}
		fs := ds.cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("no decision for %s", id)
		}
		fs.EachRecord(func(r *kgo.Record) {
			var d schemas.Decision
			if err := json.Unmarshal(r.Value, &d); err != nil {
				t.Fatal(err)
			}
			ds.seen[d.Event.ID] = d
		})
	}
}

// waitCounts waits until the shared table's counts for probe satisfy ok:
// the aggregator has folded what the scorer observed.
func waitCounts(t *testing.T, table *scorer.SharedTable, probe schemas.Observation, ok func(risk.SharedCounts) bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		c := table.Observe([]schemas.Observation{probe}, 30*86400)
		if ok(c) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the shared table never got there: %+v", c)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestCrossUserSignals: one IP failing logins for five different users
// makes the fifth a credential_stuffing, although each user's own history
// holds one failure; one device used by four accounts is
// multiple_accounts_per_device on the fourth. The counts survive a restart
// of the scorer, its table and its aggregator (restored from the log),
// another app sharing the IP sees none of them, and neither the
// observations nor the shared table hold the IP or the email.
func TestCrossUserSignals(t *testing.T) {
	c := newCluster(t)
	key := []byte(strings.Repeat("k", 32))
	newD := func() *scorer.Decider {
		return newDecider(t)
	}
	hasher, err := fingerprint.New(key)
	if err != nil {
		t.Fatal(err)
	}
	const ip = "198.51.100.7"
	t0 := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	n := 0
	failed := func(app, user string) schemas.Event {
		n++
		return schemas.Event{V: 1, ID: uuid.Must(uuid.NewV7()).String(), AppID: app, Kind: schemas.KindFilter, Type: "$login", Status: "$failed",
			User:       schemas.User{ID: user, Email: user + "@example.com"},
			Context:    schemas.Context{IP: ip, Headers: map[string]string{"user-agent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36", "accept-language": "en-US", "accept": "*/*"}},
			ReceivedAt: t0.Add(time.Duration(n) * 30 * time.Second)}
	}
	ipProbe := func(app string) schemas.Observation {
		return schemas.Observation{AppID: app, Kind: schemas.ObserveIP, Key: hasher.Pseudonym(app, "ip", ip), At: uint32(t0.Add(time.Hour / 2).Unix())}
	}
	ds := newDecisions(t, c)
	stage := startCrossUser(t, c, newD())
	send := func(ev schemas.Event) schemas.Decision {
		t.Helper()
		c.produce(t, eventRecord(t, ev))
		return ds.of(t, ev.ID)
	}

	for i := 1; i <= 5; i++ {
		dec := send(failed("shop", fmt.Sprintf("victim%d", i)))
		if got := slices.Contains(dec.Signals, risk.SigCredentialStuffing); got != (i == 5) {
			t.Fatalf("victim %d: credential_stuffing %v, signals %v", i, got, dec.Signals)
		}
		waitCounts(t, stage.table, ipProbe("shop"), func(c risk.SharedCounts) bool { return c.IPFailUsers >= i })
		if i == 3 {
			// Restart everything mid-attack: the counts come back
			// from the log.
			stage.stop()
			stage = startCrossUser(t, c, newD())
			waitCounts(t, stage.table, ipProbe("shop"), func(c risk.SharedCounts) bool { return c.IPFailUsers >= 3 })
		}
	}
	// Another app sees the IP fresh.
	if dec := send(failed("other", "victim6")); slices.Contains(dec.Signals, risk.SigCredentialStuffing) {
		t.Fatalf("another app's login from the IP: %v", dec.Signals)
	}

	// One device, four accounts.
	for i := 1; i <= 4; i++ {
		ev := failed("shop", fmt.Sprintf("sharer%d", i))
		ev.Status = "$succeeded"
		ev.Kind = schemas.KindRisk
		ev.Context.IP = fmt.Sprintf("203.0.113.%d", i)
		ev.Context.ClientID = "one-laptop"
		dec := send(ev)
		if got := slices.Contains(dec.Signals, risk.SigMultipleAccountsPerDevice); got != (i == 4) {
			t.Fatalf("account %d on the device: multiple_accounts_per_device %v, signals %v", i, got, dec.Signals)
		}
		probe := schemas.Observation{AppID: "shop", Kind: schemas.ObserveDevice, Key: dec.Device.Fingerprint, At: uint32(ev.ReceivedAt.Unix())}
		waitCounts(t, stage.table, probe, func(c risk.SharedCounts) bool { return c.DeviceUsers >= i })
	}
	stage.stop()

	// Pseudonyms only.
	for _, topic := range []string{schemas.TopicObservations, schemas.TopicShared} {
		recs := c.committed(t, topic, 1, 2*time.Second)
		if len(recs) == 0 {
			t.Fatalf("%s is empty", topic)
		}
		for _, r := range recs {
			for _, secret := range []string{ip, "example.com", "victim", "203.0.113."} {
				if bytes.Contains(r.Key, []byte(secret)) || bytes.Contains(r.Value, []byte(secret)) {
					t.Fatalf("%s holds %q: key %q", topic, secret, r.Key)
				}
			}
		}
	}
}

// TestAggregatorBounds: with room for 8 keys a partition, 60 IPs leave at
// most 8 live keys in each partition of the shared table, the evicted ones
// as tombstones, the most recently seen kept; an undecodable observation
// goes to the dead-letter topic with its reason and stops nothing.
func TestAggregatorBounds(t *testing.T) {
	c := newCluster(t)
	var recs []*kgo.Record
	for i := 0; i < 60; i++ {
		o := schemas.Observation{AppID: "shop", Kind: schemas.ObserveIP, Key: fmt.Sprintf("ip%02d", i), At: uint32(1_790_000_000 + i)}
		recs = append(recs, &kgo.Record{Topic: schemas.TopicObservations, Key: o.RecordKey(), Value: o.AppendBinary(nil)})
		if i == 30 {
			recs = append(recs, &kgo.Record{Topic: schemas.TopicObservations, Key: []byte("garbage"), Value: []byte("not an observation")})
		}
	}
	agg, err := scorer.NewAggregator(scorer.AggregatorConfig{Kafka: c.cfg, TransactionalID: "test-aggregator", MaxPollRecords: 7, KeysPerPartition: 8}, discard)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- agg.Run(ctx) }()
	for _, r := range recs {
		c.produce(t, r) // one at a time: keys arrive in order of time
	}
	dead := c.committed(t, schemas.TopicDeadLetter, 1, 20*time.Second)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if len(dead) != 1 || string(dead[0].Key) != "garbage" {
		t.Fatalf("dead letters: %d", len(dead))
	}
	live := map[int32]map[string]bool{}
	tombstones := 0
	for _, r := range c.committed(t, schemas.TopicShared, 60, 3*time.Second) {
		if live[r.Partition] == nil {
			live[r.Partition] = map[string]bool{}
		}
		if len(r.Value) == 0 {
			tombstones++
			delete(live[r.Partition], string(r.Key))
			continue
		}
		live[r.Partition][string(r.Key)] = true
	}
	total := 0
	for p, keys := range live {
		if len(keys) > 8 {
			t.Fatalf("partition %d holds %d keys", p, len(keys))
		}
		total += len(keys)
	}
	if tombstones == 0 || total+tombstones < 60 {
		t.Fatalf("%d live keys and %d tombstones for 60 keys", total, tombstones)
	}
	last := schemas.Observation{AppID: "shop", Kind: schemas.ObserveIP, Key: "ip59"}
	found := false
	for _, keys := range live {
		found = found || keys[string(last.RecordKey())]
	}
	if !found {
		t.Fatal("the most recently seen key was evicted")
	}
}
