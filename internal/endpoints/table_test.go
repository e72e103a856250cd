package endpoints

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moat-dev/moat/internal/kafka"
	"github.com/moat-dev/moat/schemas"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// newCluster starts kfake (over TCP) with every topic Moat creates.
func newCluster(t testing.TB) (*kfake.Cluster, kafka.Config) {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	kcfg := kafka.DefaultConfig()
	kcfg.Brokers = c.ListenAddrs()
	kcfg.Partitions = 3
	cl, err := kgo.NewClient(kgo.SeedBrokers(kcfg.Brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := kafka.EnsureTopics(ctx, cl, kcfg, schemas.AllTopics()...); err != nil {
		t.Fatal(err)
	}
	return c, kcfg
}

// startTable runs a table until the test ends.
func startTable(t testing.TB, kcfg kafka.Config, c *Cipher) *Table {
	t.Helper()
	tb, err := NewTable(kcfg, c, quiet)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tb.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("table Run: %v", err)
		}
		tb.Close()
	})
	return tb
}

func newManager(t testing.TB, kcfg kafka.Config, tb *Table, c *Cipher, maxPerApp int) *Manager {
	t.Helper()
	m, err := NewManager(ManagerConfig{Kafka: kcfg, ProduceTimeout: 2 * time.Second, MaxPerApp: maxPerApp}, tb, c, quiet)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	return m
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// canonical renders everything a table knows of its endpoints.
func canonical(t testing.TB, es []Endpoint) string {
	t.Helper()
	var b strings.Builder
	for _, e := range es {
		j, err := json.Marshal(e.record())
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s secrets=%q err=%v hints=%q\n", j, e.Secrets, e.SecretsErr, e.SecretHints)
	}
	return b.String()
}

func ptr[T any](v T) *T { return &v }

// TestManagerAndTable: writes show in the writer's table at once (read your
// writes) and in another process's table after Sync; secrets open only
// with the key; a no-op update writes nothing.
func TestManagerAndTable(t *testing.T) {
	_, kcfg := newCluster(t)
	key := mustCipher(t, testKey(7))
	apiTable := startTable(t, kcfg, nil)
	m := newManager(t, kcfg, apiTable, key, 0)
	ctx := ctxT(t)

	a1, s1, err := m.Create(ctx, "a", Spec{URL: "https://a.example/1", Types: []string{schemas.NotifyReviewOpened, schemas.NotifyIncidentConfirmed, schemas.NotifyReviewOpened}, Enabled: true, Description: "first"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(a1.ID, "ep_") || !strings.HasPrefix(s1, SecretPrefix) || len(a1.SecretHints) != 1 || a1.SecretHints[0] != Hint(s1) {
		t.Fatalf("created %+v, secret %q", a1, s1)
	}
	if want := []string{schemas.NotifyIncidentConfirmed, schemas.NotifyReviewOpened}; !slices.Equal(a1.Types, want) {
		t.Fatalf("types %v, want sorted and deduplicated %v", a1.Types, want)
	}
	// Read your writes: no waiting.
	if got, ok := apiTable.Get("a", a1.ID); !ok || got.URL != a1.URL || got.Description != "first" || !got.Enabled {
		t.Fatalf("right after the create the table has %+v, %v", got, ok)
	}
	if got, _ := apiTable.Get("a", a1.ID); got.Secrets != nil || !errors.Is(got.SecretsErr, ErrNoKey) {
		t.Fatal("a table without a key has secrets")
	}
	a2, s2, err := m.Create(ctx, "a", Spec{URL: "https://a.example/2"})
	if err != nil {
		t.Fatal(err)
	}
	b1, _, err := m.Create(ctx, "b", Spec{URL: "https://b.example/1", Enabled: true})
	if err != nil {
		t.Fatal(err)
	}
	list, err := m.List(ctx, "a")
	if err != nil || len(list) != 2 || list[0].ID != a1.ID || list[1].ID != a2.ID || list[1].Enabled {
		t.Fatalf("list of a: %v %v", list, err)
	}
	if _, err := m.Get(ctx, "b", a1.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("app b got app a's endpoint: %v", err)
	}

	// Update, rotate (two secrets), revoke the previous one.
	up, rotated, err := m.Update(ctx, "a", a1.ID, Patch{URL: ptr("https://a.example/1b"), Types: ptr([]string{}), Enabled: ptr(false), RotateSecret: true})
	if err != nil {
		t.Fatal(err)
	}
	if up.URL != "https://a.example/1b" || up.Types != nil || up.Enabled || rotated == "" || rotated == s1 ||
		!slices.Equal(up.SecretHints, []string{Hint(rotated), Hint(s1)}) || !up.UpdatedAt.After(a1.CreatedAt.Add(-time.Millisecond)) {
		t.Fatalf("updated %+v, rotated %q", up, rotated)
	}
	// The webhooker's table (another process, with the key) sees it all.
	hookTable := startTable(t, kcfg, key)
	if err := hookTable.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	got, ok := hookTable.Get("a", a1.ID)
	if !ok || !slices.Equal(got.Secrets, []string{rotated, s1}) || got.SecretsErr != nil {
		t.Fatalf("webhooker table: %v %v (secrets %d, err %v)", got, ok, len(got.Secrets), got.SecretsErr)
	}
	if got, _ := hookTable.Get("a", a2.ID); !slices.Equal(got.Secrets, []string{s2}) {
		t.Fatal("second endpoint's secret does not open")
	}
	if _, _, err := m.Update(ctx, "a", a1.ID, Patch{RevokePrevious: true}); err != nil {
		t.Fatal(err)
	}
	// A no-op update writes nothing.
	before := endOffsets(t, kcfg)
	if _, s, err := m.Update(ctx, "a", a1.ID, Patch{Description: ptr("first"), RevokePrevious: true}); err != nil || s != "" {
		t.Fatal(err, s)
	}
	if after := endOffsets(t, kcfg); after != before {
		t.Fatalf("a no-op update wrote a record: %s -> %s", before, after)
	}
	if _, _, err := m.Update(ctx, "a", "ep_missing", Patch{Enabled: ptr(true)}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("update of a missing endpoint: %v", err)
	}
	// A table with another key cannot open them.
	other := startTable(t, kcfg, mustCipher(t, testKey(8)))
	if err := other.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if got, _ := other.Get("b", b1.ID); !errors.Is(got.SecretsErr, ErrWrongKey) || got.Secrets != nil {
		t.Fatalf("other key: %v %v", got.Secrets, got.SecretsErr)
	}

	// Delete: a tombstone.
	v := hookTable.Version()
	if err := m.Delete(ctx, "a", a2.ID); err != nil {
		t.Fatal(err)
	}
	if err := m.Delete(ctx, "a", a2.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
	if _, ok := apiTable.Get("a", a2.ID); ok || !apiTable.Deleted("a", a2.ID) || apiTable.Deleted("a", a1.ID) {
		t.Fatal("deleted endpoint still in the table")
	}
	if err := hookTable.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if hookTable.Version() == v || !hookTable.Deleted("a", a2.ID) {
		t.Fatal("the other table did not see the delete")
	}
	if got, want := records(t, snapshot(hookTable)), records(t, snapshot(apiTable)); got != want || len(snapshot(hookTable)) != 2 {
		t.Fatalf("tables differ:\n%s\n%s", got, want)
	}
}

// records renders the stored state of es.
func records(t testing.TB, es []Endpoint) string {
	t.Helper()
	var b strings.Builder
	for _, e := range es {
		j, err := json.Marshal(e.record())
		if err != nil {
			t.Fatal(err)
		}
		b.Write(j)
		b.WriteByte('\n')
	}
	return b.String()
}

func snapshot(tb *Table) []Endpoint {
	_, es := tb.Snapshot()
	return es
}

// endOffsets renders the end offsets of the endpoints topic.
func endOffsets(t testing.TB, kcfg kafka.Config) string {
	t.Helper()
	tb, err := NewTable(kcfg, nil, quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer tb.Close()
	ends, err := tb.adm.ListEndOffsets(ctxT(t), schemas.TopicEndpoints)
	if err != nil {
		t.Fatal(err)
	}
	var parts []string
	ends.Each(func(o kadm.ListedOffset) { parts = append(parts, fmt.Sprint(o.Partition, ":", o.Offset)) })
	slices.Sort(parts)
	return strings.Join(parts, ",")
}

// readRaw returns every record of topic, from the start.
func readRaw(t testing.TB, kcfg kafka.Config, topic string, want int) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(kcfg.Brokers...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out []*kgo.Record
	for len(out) < want {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %s: %d records, want %d", topic, len(out), want)
		}
		fs.EachRecord(func(r *kgo.Record) { out = append(out, r) })
	}
	return out
}

// TestTopicHoldsNoPlaintextSecrets: the records carry sealed secrets and
// hints only.
func TestTopicHoldsNoPlaintextSecrets(t *testing.T) {
	_, kcfg := newCluster(t)
	key := mustCipher(t, testKey(3))
	m := newManager(t, kcfg, startTable(t, kcfg, nil), key, 0)
	ctx := ctxT(t)
	var secrets []string
	e, s, err := m.Create(ctx, "a", Spec{URL: "https://a.example/hook", Enabled: true})
	if err != nil {
		t.Fatal(err)
	}
	secrets = append(secrets, s)
	_, s, err = m.Update(ctx, "a", e.ID, Patch{RotateSecret: true})
	if err != nil {
		t.Fatal(err)
	}
	secrets = append(secrets, s)
	recs := readRaw(t, kcfg, schemas.TopicEndpoints, 2)
	for _, r := range recs {
		all := string(r.Key) + string(r.Value)
		for _, h := range r.Headers {
			all += h.Key + string(h.Value)
		}
		if !strings.Contains(all, `"sealed"`) || !strings.Contains(all, "https://a.example/hook") {
			t.Fatalf("unexpected record %s", all)
		}
		for _, s := range secrets {
			body := strings.TrimPrefix(s, SecretPrefix)
			raw, _ := base64.RawURLEncoding.DecodeString(body)
			if strings.Contains(all, body) || strings.Contains(all, string(raw)) || strings.Contains(all, base64.StdEncoding.EncodeToString(raw)) {
				t.Fatalf("secret %s is on the topic in plaintext: %s", Hint(s), all)
			}
		}
	}
}

// TestTableRebuildsFromCompactedTopic: a restarted table (a new process)
// rebuilds the same endpoints, deletions included, from the topic after
// compaction dropped the superseded records.
func TestTableRebuildsFromCompactedTopic(t *testing.T) {
	cluster, kcfg := newCluster(t)
	key := mustCipher(t, testKey(4))
	first := startTable(t, kcfg, key)
	m := newManager(t, kcfg, first, key, 0)
	ctx := ctxT(t)
	var ids []string
	for i := range 6 {
		e, _, err := m.Create(ctx, fmt.Sprintf("app%d", i%2), Spec{URL: fmt.Sprintf("https://h%d.example/", i), Enabled: true})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, e.ID)
	}
	for round := range 5 {
		for i, id := range ids {
			_, _, err := m.Update(ctx, fmt.Sprintf("app%d", i%2), id, Patch{Description: ptr(fmt.Sprint("round ", round)), RotateSecret: round%2 == 0})
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, i := range []int{1, 4} {
		if err := m.Delete(ctx, fmt.Sprintf("app%d", i%2), ids[i]); err != nil {
			t.Fatal(err)
		}
	}
	before := recordCount(t, kcfg)
	cluster.Compact()
	after := recordCount(t, kcfg)
	t.Logf("records on the topic: %d before compaction, %d after", before, after)
	if after >= before {
		t.Fatalf("compaction removed nothing (%d records)", after)
	}
	want := canonical(t, snapshot(first))
	rebuilt := startTable(t, kcfg, key)
	if err := rebuilt.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if got := canonical(t, snapshot(rebuilt)); got != want {
		t.Fatalf("rebuilt table differs:\n got %s\nwant %s", got, want)
	}
	if n := len(snapshot(rebuilt)); n != 4 {
		t.Fatalf("%d endpoints, want 4", n)
	}
	for _, i := range []int{1, 4} {
		if !rebuilt.Deleted(fmt.Sprintf("app%d", i%2), ids[i]) {
			t.Errorf("the rebuilt table does not know endpoint %d was deleted", i)
		}
	}
	for _, e := range snapshot(rebuilt) {
		if len(e.Secrets) != 2 || e.Description != "round 4" {
			t.Fatalf("rebuilt endpoint %v: %d secrets, description %q", e, len(e.Secrets), e.Description)
		}
	}
}

// recordCount counts the records left on the endpoints topic.
func recordCount(t testing.TB, kcfg kafka.Config) int {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(kcfg.Brokers...), kgo.ConsumeTopics(schemas.TopicEndpoints),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	n := 0
	for idle := 0; idle < 3; {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		fs := cl.PollFetches(ctx)
		cancel()
		got := 0
		fs.EachRecord(func(*kgo.Record) { got++ })
		if got == 0 {
			idle++
		}
		n += got
	}
	return n
}

// TestTableIgnoresBadRecords: records with a bad key or value are logged,
// counted and skipped; the good ones apply.
func TestTableIgnoresBadRecords(t *testing.T) {
	_, kcfg := newCluster(t)
	key := mustCipher(t, testKey(5))
	tb := startTable(t, kcfg, key)
	m := newManager(t, kcfg, tb, key, 0)
	ctx := ctxT(t)
	cl, err := kgo.NewClient(kgo.SeedBrokers(kcfg.Brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	good, _, err := m.Create(ctx, "a", Spec{URL: "https://a.example/", Enabled: true})
	if err != nil {
		t.Fatal(err)
	}
	v, _ := json.Marshal(good.record())
	bad := []*kgo.Record{
		{Topic: schemas.TopicEndpoints, Key: []byte("no-separator"), Value: v},
		{Topic: schemas.TopicEndpoints, Key: Key("a", "ep_x"), Value: []byte("{not json")},
		{Topic: schemas.TopicEndpoints, Key: Key("b", good.ID), Value: v}, // value names app a
	}
	if err := cl.ProduceSync(ctx, bad...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if err := tb.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if n := tb.Ignored(); n != 3 {
		t.Fatalf("%d records ignored, want 3", n)
	}
	if es := snapshot(tb); len(es) != 1 || es[0].ID != good.ID {
		t.Fatalf("table %v", es)
	}
}

// TestManagerLimitAndUnavailable: the per-app bound, and writes and reads
// that fail (ErrUnavailable) rather than hang when the broker is gone.
func TestManagerLimitAndUnavailable(t *testing.T) {
	cluster, kcfg := newCluster(t)
	key := mustCipher(t, testKey(6))
	tb := startTable(t, kcfg, nil)
	m, err := NewManager(ManagerConfig{Kafka: kcfg, ProduceTimeout: 500 * time.Millisecond, MaxPerApp: 2}, tb, key, quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ctx := ctxT(t)
	for range 2 {
		if _, _, err := m.Create(ctx, "a", Spec{URL: "https://a.example/"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := m.Create(ctx, "a", Spec{URL: "https://a.example/"}); !errors.Is(err, ErrLimit) {
		t.Fatalf("third endpoint: %v", err)
	}
	if _, _, err := m.Create(ctx, "b", Spec{URL: "https://b.example/"}); err != nil {
		t.Fatalf("another app is not limited: %v", err)
	}
	cluster.Close()
	start := time.Now()
	if _, _, err := m.Create(ctx, "b", Spec{URL: "https://b.example/"}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("create without a broker: %v", err)
	}
	if _, err := m.List(ctx, "a"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("list without a broker: %v", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("failing took %s", took)
	}
	if _, err := NewManager(ManagerConfig{Kafka: kcfg, ProduceTimeout: time.Second}, tb, nil, quiet); err == nil {
		t.Fatal("a manager without a key was created")
	}
}
