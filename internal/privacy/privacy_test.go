package privacy

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/moat-dev/moat/internal/kafka"
	"github.com/moat-dev/moat/internal/kafka/kafkatest"
	"github.com/moat-dev/moat/schemas"
	"github.com/twmb/franz-go/pkg/kgo"
)

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

func testHasher(t *testing.T) *Hasher {
	t.Helper()
	h, err := NewHasher([]byte(strings.Repeat("k", 32)))
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestHasherKeys(t *testing.T) {
	if _, err := NewHasher([]byte("short")); err == nil {
		t.Error("a short key was accepted")
	}
	h := testHasher(t)
	k := h.Key("app", TypeID, "u1")
	if len(k) != 64 || strings.Contains(k, "u1") {
		t.Errorf("key %q", k)
	}
	if k != h.Key("app", TypeID, "u1") {
		t.Error("keys are not deterministic")
	}
	for _, other := range []string{h.Key("app2", TypeID, "u1"), h.Key("app", TypeEmail, "u1"), h.Key("app", TypeID, "U1"), h.Key("ap", TypeID, "pu1")} {
		if other == k {
			t.Error("distinct identifiers share a key")
		}
	}
	if h.Key("app", TypeEmail, " Ann@Example.COM ") != h.Key("app", TypeEmail, "ann@example.com") {
		t.Error("emails are not normalized")
	}
	h2, _ := NewHasher([]byte(strings.Repeat("x", 32)))
	if h2.Key("app", TypeID, "u1") == k {
		t.Error("the key does not depend on the secret")
	}
}

func TestDecodeRecordRejectsIncomplete(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	good, _ := json.Marshal(Record{V: 1, AppID: "a", Type: TypeEmail, DeletedAt: at})
	if r, err := decodeRecord(good); err != nil || !r.DeletedAt.Equal(at) {
		t.Fatalf("%+v %v", r, err)
	}
	for _, bad := range []string{`{`, `{"v":1,"app_id":"a","type":"$phone","deleted_at":"2026-01-02T03:04:05Z"}`,
		`{"v":1,"type":"$id","deleted_at":"2026-01-02T03:04:05Z"}`, `{"v":1,"app_id":"a","type":"$id"}`, `{"app_id":"a","type":"$id","deleted_at":"2026-01-02T03:04:05Z"}`} {
		if _, err := decodeRecord([]byte(bad)); err == nil {
			t.Errorf("accepted %s", bad)
		}
	}
}

func newCluster(t *testing.T) (kafka.Config, *kgo.Client) {
	t.Helper()
	_, cfg, cl := kafkatest.Cluster(t, 3)
	return cfg, cl
}

func runRegistry(t *testing.T, cfg kafka.Config, h *Hasher) *Registry {
	t.Helper()
	r, err := NewRegistry(cfg, h, discard)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = r.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return r
}

func syncReg(t *testing.T, r *Registry) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.Sync(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestEraseReachesEveryRegistry: an Erase commits the hashed registry
// records and the commands together; any registry (a running one, a new
// one reading from scratch) forgets exactly what was deleted, and only
// data dated at or before the deletion.
func TestEraseReachesEveryRegistry(t *testing.T) {
	cfg, _ := newCluster(t)
	h := testHasher(t)
	reg := runRegistry(t, cfg, h)
	syncReg(t, reg) // an empty topic

	w, err := NewWriter(cfg, h, 5*time.Second, discard)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	at := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	cmd := &schemas.Event{V: 1, ID: "0193f0c8-0000-7000-8000-000000000001", AppID: "app-a", Kind: schemas.KindUserDelete,
		User: schemas.User{ID: "u1", Email: "ann@example.com"}, ReceivedAt: at}
	subjects := []Subject{{TypeEmail, "Ann@Example.com"}, {TypeID, "u1"}}
	if err := w.Erase(context.Background(), "app-a", subjects, []*schemas.Event{cmd}, at); err != nil {
		t.Fatal(err)
	}
	if err := w.Erase(context.Background(), "app-a", []Subject{{"$phone", "1"}}, nil, at); err == nil {
		t.Error("a subject of an unknown type was written")
	}

	check := func(r *Registry) {
		t.Helper()
		syncReg(t, r)
		for _, c := range []struct {
			app, user, email string
			at               time.Time
			want             bool
		}{
			{"app-a", "u1", "", at, true},
			{"app-a", "u1", "", at.Add(-time.Hour), true},
			{"app-a", "u1", "", at.Add(time.Millisecond), false}, // a new life of the id
			{"app-a", "", "ANN@example.com", at, true},
			{"app-a", "u2", "ann@example.com", at.Add(-time.Second), true}, // another id, the deleted email
			{"app-a", "u2", "bob@example.com", at, false},
			{"app-b", "u1", "ann@example.com", at, false}, // another app
			{"app-a", "", "", at, false},
		} {
			if got := r.Forgotten(c.app, c.user, c.email, c.at); got != c.want {
				t.Errorf("Forgotten(%s, %q, %q, %v) = %v", c.app, c.user, c.email, c.at.Sub(at), got)
			}
		}
		if d, ok := r.DeletedAt("app-a", TypeID, "u1"); !ok || !d.Equal(at) {
			t.Errorf("DeletedAt = %v %v", d, ok)
		}
	}
	check(reg)
	check(runRegistry(t, cfg, h)) // rebuilt from the topic

	// The topics hold the hashed registry records and the command, and the
	// registry never the raw identifiers.
	rd, err := kgo.NewClient(kgo.SeedBrokers(cfg.Brokers...), kgo.ConsumeTopics(schemas.TopicPrivacy, schemas.TopicEvents),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	var privacyRecs, commands int
	for deadline := time.Now().Add(10 * time.Second); (privacyRecs < 2 || commands < 1) && time.Now().Before(deadline); {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		rd.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
			switch r.Topic {
			case schemas.TopicPrivacy:
				privacyRecs++
				if bytes.Contains(r.Key, []byte("u1")) || bytes.Contains(r.Value, []byte("u1")) || bytes.Contains(bytes.ToLower(r.Value), []byte("ann@")) {
					t.Errorf("raw identifier in a registry record: %s = %s", r.Key, r.Value)
				}
			case schemas.TopicEvents:
				var ev schemas.Event
				if json.Unmarshal(r.Value, &ev) == nil && ev.Kind == schemas.KindUserDelete && string(r.Key) == string(cmd.Key()) {
					commands++
				}
			}
		})
		cancel()
	}
	if privacyRecs != 2 || commands != 1 {
		t.Errorf("%d registry records and %d commands, want 2 and 1", privacyRecs, commands)
	}
}

// TestNoteAndLatestDeletionWin: Note answers before the follower fetched
// the record; a second deletion of the same identifier moves the line.
func TestNoteAndLatestDeletionWin(t *testing.T) {
	cfg, _ := newCluster(t)
	h := testHasher(t)
	reg := runRegistry(t, cfg, h)
	at := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	if reg.Forgotten("app", "u1", "", at) {
		t.Fatal("forgotten before any deletion")
	}
	reg.Note("app", "u1", "", at)
	if !reg.Forgotten("app", "u1", "", at) || reg.Forgotten("app", "u1", "", at.Add(time.Second)) {
		t.Error("Note did not apply")
	}
	reg.Note("app", "u1", "", at.Add(time.Hour))
	reg.Note("app", "u1", "", at) // an older deletion does not move it back
	if !reg.Forgotten("app", "u1", "", at.Add(time.Minute)) {
		t.Error("the latest deletion did not win")
	}
	if reg.Len() != 1 {
		t.Errorf("Len = %d", reg.Len())
	}
}

// TestSyncFailsWithoutFollowing: Sync cannot return before the registry
// has read what is committed; with Run stopped it waits for its context.
func TestSyncFailsWithoutFollowing(t *testing.T) {
	cfg, _ := newCluster(t)
	h := testHasher(t)
	w, err := NewWriter(cfg, h, 5*time.Second, discard)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	at := time.Now()
	if err := w.Erase(context.Background(), "app", []Subject{{TypeID, "u1"}}, nil, at); err != nil {
		t.Fatal(err)
	}
	idle, err := NewRegistry(cfg, h, discard) // never Run
	if err != nil {
		t.Fatal(err)
	}
	defer idle.f.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := idle.Sync(ctx); err == nil {
		t.Error("Sync returned before the registry read the deletion")
	}
	if idle.Forgotten("app", "u1", "", at) {
		t.Error("an idle registry knows the deletion")
	}
	reg := runRegistry(t, cfg, h)
	syncReg(t, reg)
	if !reg.Forgotten("app", "u1", "", at) {
		t.Error("a following registry does not know the deletion")
	}
}
