package lists

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/moat-dev/moat/internal/kafka"
	"github.com/moat-dev/moat/internal/kafka/kafkatest"
	"github.com/moat-dev/moat/schemas"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// newCluster starts a kfake broker over TCP with Moat's topics.
func newCluster(t *testing.T) (*kfake.Cluster, kafka.Config) {
	t.Helper()
	c, cfg, _ := kafkatest.Cluster(t, 3)
	return c, cfg
}

// instance is one api instance: a running follower, a writer, a service.
type instance struct {
	f    *Follower
	svc  *Service
	stop func()
}

func startFollower(t *testing.T, cfg kafka.Config) (*Follower, func()) {
	return startFollowerAfter(t, cfg, 0)
}

// startFollowerAfter starts a follower that begins reading after delay
// (a lagging instance).
func startFollowerAfter(t *testing.T, cfg kafka.Config, delay time.Duration) (*Follower, func()) {
	t.Helper()
	f, err := NewFollower(cfg, quiet)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return
		}
		_ = f.Run(ctx)
	}()
	stop := func() { cancel(); <-done }
	t.Cleanup(stop)
	return f, stop
}

func newInstance(t *testing.T, cfg kafka.Config, timeout time.Duration) *instance {
	return newLaggingInstance(t, cfg, timeout, 0)
}

func newLaggingInstance(t *testing.T, cfg kafka.Config, timeout, lag time.Duration) *instance {
	t.Helper()
	f, stop := startFollowerAfter(t, cfg, lag)
	w, err := NewWriter(cfg, timeout, quiet)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Close)
	return &instance{f: f, svc: NewService(f, w, timeout, quiet), stop: stop}
}

// dump renders an index deterministically, for comparisons.
func dump(x *Index) string {
	x.mu.RLock()
	defer x.mu.RUnlock()
	var apps []string
	for a := range x.apps {
		apps = append(apps, a)
	}
	sort.Strings(apps)
	var b strings.Builder
	for _, a := range apps {
		for _, l := range x.Lists(a) {
			lb, _ := json.Marshal(l)
			fmt.Fprintf(&b, "%s %s\n", a, lb)
			items, _ := x.Items(a, l.ID)
			for _, it := range items {
				ib, _ := json.Marshal(it)
				fmt.Fprintf(&b, "  %s\n", ib)
			}
		}
	}
	return b.String()
}

var analyst = schemas.ListAuthor{Type: "$analyst_email", Identifier: "ana@example.com"}

func TestReadYourWritesAcrossInstances(t *testing.T) {
	_, cfg := newCluster(t)
	a := newInstance(t, cfg, 5*time.Second)
	ctx := context.Background()
	// b's follower starts reading only after a's writes: its reads must
	// catch up with the topic first.
	b := newLaggingInstance(t, cfg, 5*time.Second, 500*time.Millisecond)
	l, err := a.svc.CreateList(ctx, "app1", ListInput{Name: "Blocked IPs", Color: "red", PrimaryField: schemas.ListFieldIPValue})
	if err != nil {
		t.Fatal(err)
	}
	if l.Color != "$red" || l.ID == "" {
		t.Errorf("created %+v", l)
	}
	// The writing instance shows the write at once, and so does another
	// instance (it catches up with the topic before reading).
	for name, in := range map[string]*instance{"writer": a, "other": b} {
		got, err := in.svc.List(ctx, "app1", l.ID)
		if err != nil || got.Name != "Blocked IPs" {
			t.Errorf("%s instance: %+v %v", name, got, err)
		}
	}
	it, err := b.svc.CreateItem(ctx, "app1", l.ID, ItemInput{PrimaryValue: "203.0.113.7", Author: analyst})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := a.svc.Item(ctx, "app1", l.ID, it.ID); err != nil || got.PrimaryValue != "203.0.113.7" {
		t.Errorf("item written by b, read by a: %+v %v", got, err)
	}
	if _, err := a.svc.ArchiveItem(ctx, "app1", l.ID, it.ID); err != nil {
		t.Fatal(err)
	}
	if got, err := b.svc.Item(ctx, "app1", l.ID, it.ID); err != nil || !got.Archived || got.ArchivedAt == nil {
		t.Errorf("archived by a, read by b: %+v %v", got, err)
	}
	// Another app sees none of it.
	if _, err := b.svc.List(ctx, "app2", l.ID); !errors.Is(err, ErrListNotFound) {
		t.Errorf("other app: %v", err)
	}
	if _, err := b.svc.Item(ctx, "app2", l.ID, it.ID); !errors.Is(err, ErrListNotFound) {
		t.Errorf("other app's item: %v", err)
	}
	if _, err := a.svc.ArchiveItem(ctx, "app2", l.ID, it.ID); !errors.Is(err, ErrListNotFound) {
		t.Errorf("other app archives: %v", err)
	}
}

func TestFollowerRestartRebuildsTheSameIndex(t *testing.T) {
	_, cfg := newCluster(t)
	a := newInstance(t, cfg, 5*time.Second)
	ctx := context.Background()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	var lists []ListObject
	for i, app := range []string{"app1", "app1", "app2"} {
		l, err := a.svc.CreateList(ctx, app, ListInput{Name: fmt.Sprint("list ", i), Color: "$blue", PrimaryField: schemas.ListFieldUserID,
			SecondaryField: schemas.ListFieldDeviceFingerprint, DefaultItemArchivationTime: 3600})
		must(err)
		lists = append(lists, l)
	}
	var ins []ItemInput
	for i := 0; i < 40; i++ {
		ins = append(ins, ItemInput{PrimaryValue: fmt.Sprint("u", i), SecondaryValue: fmt.Sprint("fp", i%3), Author: analyst, Comment: "batch"})
	}
	res, err := a.svc.CreateItems(ctx, "app1", lists[0].ID, ins)
	must(err)
	if res.Created != 40 {
		t.Fatalf("batch: %+v", res)
	}
	_, err = a.svc.CreateItems(ctx, "app2", lists[2].ID, ins[:5])
	must(err)
	items, err := a.svc.QueryItems(ctx, "app1", lists[0].ID, Query{Page: 1, Size: 10})
	must(err)
	_, err = a.svc.ArchiveItem(ctx, "app1", lists[0].ID, items[0].ID)
	must(err)
	_, err = a.svc.UnarchiveItem(ctx, "app1", lists[0].ID, items[0].ID)
	must(err)
	_, err = a.svc.ArchiveItem(ctx, "app1", lists[0].ID, items[1].ID)
	must(err)
	_, err = a.svc.UpdateItem(ctx, "app1", lists[0].ID, items[2].ID, "updated")
	must(err)
	name := "renamed"
	_, err = a.svc.UpdateList(ctx, "app1", lists[0].ID, ListPatch{Name: &name, ClearArchivationTime: true})
	must(err)
	_, err = a.svc.CreateItems(ctx, "app1", lists[1].ID, ins[:7])
	must(err)
	must(a.svc.DeleteList(ctx, "app1", lists[1].ID))

	before := dump(a.f.Index())
	if !strings.Contains(before, `"name":"renamed"`) || strings.Contains(before, lists[1].ID) || strings.Count(before, "\n") != 2+40+5 {
		t.Fatalf("unexpected index:\n%s", before)
	}
	// A follower started from scratch (a restarted instance, or a scorer)
	// rebuilds exactly the same index from the topic.
	a.stop()
	f, _ := startFollower(t, cfg)
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	must(f.Sync(sctx))
	if after := dump(f.Index()); after != before {
		t.Errorf("rebuilt index differs:\n%s\nwant:\n%s", after, before)
	}
}

func TestItemModesAndBatch(t *testing.T) {
	_, cfg := newCluster(t)
	a := newInstance(t, cfg, 5*time.Second)
	ctx := context.Background()
	l, err := a.svc.CreateList(ctx, "app1", ListInput{Name: "Pairs", Color: "$green", PrimaryField: schemas.ListFieldUserEmail, SecondaryField: schemas.ListFieldIPValue})
	if err != nil {
		t.Fatal(err)
	}
	first, err := a.svc.CreateItem(ctx, "app1", l.ID, ItemInput{PrimaryValue: "Eve@Example.com", SecondaryValue: "203.0.113.7", Author: analyst, Comment: "one"})
	if err != nil {
		t.Fatal(err)
	}
	if first.PrimaryValue != "eve@example.com" {
		t.Errorf("not normalized: %+v", first)
	}
	// $error (the default) refuses a duplicate, naming the field.
	_, err = a.svc.CreateItem(ctx, "app1", l.ID, ItemInput{PrimaryValue: "eve@example.com", SecondaryValue: "203.0.113.7", Author: analyst})
	var ie *InvalidError
	if !errors.As(err, &ie) || ie.Field != "primary_value" {
		t.Errorf("duplicate: %v", err)
	}
	// $update changes the item in place.
	up, err := a.svc.CreateItem(ctx, "app1", l.ID, ItemInput{PrimaryValue: "eve@example.com", SecondaryValue: "203.0.113.7", Author: analyst, Comment: "two", Mode: ModeUpdate})
	if err != nil || up.ID != first.ID || up.Comment == nil || *up.Comment != "two" {
		t.Errorf("update: %+v %v", up, err)
	}
	// $replace archives it and creates a new one.
	rep, err := a.svc.CreateItem(ctx, "app1", l.ID, ItemInput{PrimaryValue: "eve@example.com", SecondaryValue: "203.0.113.7", Author: analyst, Mode: ModeReplace})
	if err != nil || rep.ID == first.ID {
		t.Fatalf("replace: %+v %v", rep, err)
	}
	if old, _ := a.svc.Item(ctx, "app1", l.ID, first.ID); !old.Archived {
		t.Errorf("replaced item not archived: %+v", old)
	}
	res, err := a.svc.CreateItems(ctx, "app1", l.ID, []ItemInput{
		{PrimaryValue: "eve@example.com", SecondaryValue: "198.51.100.1", Author: analyst, Mode: ModeUpdateOrReplace}, // replaces rep (same primary)
		{PrimaryValue: "eve@example.com", SecondaryValue: "198.51.100.1", Author: analyst, Mode: ModeUpdateOrReplace}, // updates the one just made
		{PrimaryValue: "bob@example.com", Author: analyst},                                                            // created
		{PrimaryValue: "bob@example.com", Author: analyst},                                                            // duplicate: errored
		{PrimaryValue: "not-an-email", Author: analyst},                                                               // errored
		{PrimaryValue: "carol@example.com"},                                                                           // no author: errored
		{PrimaryValue: "dan@example.com", Author: analyst, Mode: "$upsert"},                                           // errored
		{Invalid: &InvalidError{Field: "items[7]", Message: "must be an object"}},                                     // errored
	})
	if err != nil {
		t.Fatal(err)
	}
	want := BatchResult{TotalReceived: 8, TotalProcessed: 3, Created: 1, Updated: 1, Replaced: 1, Errored: 5}
	if res != want {
		t.Errorf("batch %+v, want %+v", res, want)
	}
	active, err := a.svc.CountItems(ctx, "app1", l.ID, mustQuery(t, `{"filters":[{"field":"archived","op":"$eq","value":false}]}`))
	if err != nil || active != 2 {
		t.Errorf("%d active items, want 2 (eve's latest, bob): %v", active, err)
	}
	if total, _ := a.svc.CountItems(ctx, "app1", l.ID, Query{}); total != 4 {
		t.Errorf("%d items, want 4", total)
	}
	// Unarchiving an item while another active item holds its values is
	// refused.
	if _, err := a.svc.CreateItem(ctx, "app1", l.ID, ItemInput{PrimaryValue: "eve@example.com", SecondaryValue: "203.0.113.7", Author: analyst}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.svc.UnarchiveItem(ctx, "app1", l.ID, first.ID); !errors.As(err, &ie) {
		t.Errorf("unarchive over an active duplicate: %v", err)
	}
	if _, err := a.svc.CreateItems(ctx, "app1", l.ID, make([]ItemInput, MaxBatchItems+1)); !errors.As(err, &ie) || ie.Field != "items" {
		t.Errorf("oversized batch: %v", err)
	}
}

func mustQuery(t *testing.T, s string) Query {
	t.Helper()
	q, err := ItemQuery(body(t, s))
	if err != nil {
		t.Fatal(err)
	}
	return q
}

func TestAutoArchive(t *testing.T) {
	_, cfg := newCluster(t)
	a := newInstance(t, cfg, 5*time.Second)
	clock := time.Date(2026, 5, 1, 8, 0, 0, 0, time.UTC)
	a.svc.now = func() time.Time { return clock }
	ctx := context.Background()
	l, err := a.svc.CreateList(ctx, "app1", ListInput{Name: "Temp bans", Color: "$orange", PrimaryField: schemas.ListFieldIPValue, DefaultItemArchivationTime: 60})
	if err != nil {
		t.Fatal(err)
	}
	if l.DefaultItemArchivationTime == nil || *l.DefaultItemArchivationTime != 60 {
		t.Errorf("list %+v", l)
	}
	byDefault, err := a.svc.CreateItem(ctx, "app1", l.ID, ItemInput{PrimaryValue: "203.0.113.7", Author: analyst})
	if err != nil {
		t.Fatal(err)
	}
	if byDefault.AutoArchivesAt == nil || *byDefault.AutoArchivesAt != "2026-05-01T08:01:00.000Z" || byDefault.Archived {
		t.Errorf("default archivation: %+v", byDefault)
	}
	explicit := clock.Add(10 * time.Minute)
	longer, err := a.svc.CreateItem(ctx, "app1", l.ID, ItemInput{PrimaryValue: "203.0.113.8", Author: analyst, AutoArchivesAt: &explicit})
	if err != nil || *longer.AutoArchivesAt != "2026-05-01T08:10:00.000Z" {
		t.Fatalf("explicit: %+v %v", longer, err)
	}
	past := clock.Add(-time.Second)
	var ie *InvalidError
	if _, err := a.svc.CreateItem(ctx, "app1", l.ID, ItemInput{PrimaryValue: "203.0.113.9", Author: analyst, AutoArchivesAt: &past}); !errors.As(err, &ie) || ie.Field != "auto_archives_at" {
		t.Errorf("past auto_archives_at: %v", err)
	}
	values := schemas.ListValues{schemas.ListFieldIPValue: "203.0.113.7"}
	if _, ok := a.f.Index().Match("app1", l.ID, "", values, clock.Add(59*time.Second)); !ok {
		t.Error("item not matched before it archives itself")
	}

	// Two minutes later the first item counts as archived (nothing was
	// written): reads, filters and matching agree.
	clock = clock.Add(2 * time.Minute)
	got, err := a.svc.Item(ctx, "app1", l.ID, byDefault.ID)
	if err != nil || !got.Archived || got.ArchivedAt == nil || *got.ArchivedAt != "2026-05-01T08:01:00.000Z" {
		t.Errorf("auto-archived: %+v %v", got, err)
	}
	if n, _ := a.svc.CountItems(ctx, "app1", l.ID, mustQuery(t, `{"filters":[{"field":"archived","op":"$eq","value":true}]}`)); n != 1 {
		t.Errorf("%d archived, want 1", n)
	}
	if _, ok := a.f.Index().Match("app1", l.ID, "", values, clock); ok {
		t.Error("auto-archived item still matched")
	}
	// Archiving it again writes nothing; unarchiving clears the passed
	// auto_archives_at so it stays active.
	if again, err := a.svc.ArchiveItem(ctx, "app1", l.ID, byDefault.ID); err != nil || !again.Archived {
		t.Errorf("archive auto-archived: %+v %v", again, err)
	}
	un, err := a.svc.UnarchiveItem(ctx, "app1", l.ID, byDefault.ID)
	if err != nil || un.Archived || un.AutoArchivesAt != nil || un.ArchivedAt != nil {
		t.Errorf("unarchive: %+v %v", un, err)
	}
	if _, ok := a.f.Index().Match("app1", l.ID, "", values, clock.Add(time.Hour)); !ok {
		t.Error("unarchived item not matched")
	}
}

// TestNotificationsCommitWithTheChange reads the incidents topic (read
// committed) after creating, archiving and unarchiving items.
func TestNotificationsCommitWithTheChange(t *testing.T) {
	_, cfg := newCluster(t)
	a := newInstance(t, cfg, 5*time.Second)
	ctx := context.Background()
	l, err := a.svc.CreateList(ctx, "app1", ListInput{Name: "Allowed devices", Color: "$green", PrimaryField: schemas.ListFieldDeviceFingerprint})
	if err != nil {
		t.Fatal(err)
	}
	it, err := a.svc.CreateItem(ctx, "app1", l.ID, ItemInput{PrimaryValue: "fp-1", Author: analyst, Comment: "support ticket 42"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.svc.ArchiveItem(ctx, "app1", l.ID, it.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := a.svc.UnarchiveItem(ctx, "app1", l.ID, it.ID); err != nil {
		t.Fatal(err)
	}
	// Updates, list changes and idempotent archives notify nothing.
	if _, err := a.svc.UpdateItem(ctx, "app1", l.ID, it.ID, "x"); err != nil {
		t.Fatal(err)
	}

	cl, err := kgo.NewClient(kgo.SeedBrokers(cfg.Brokers...), kgo.ConsumeTopics(schemas.TopicIncidents),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var got []schemas.Notification
	deadline := time.Now().Add(10 * time.Second)
	for len(got) < 3 && time.Now().Before(deadline) {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		fs := cl.PollFetches(pctx)
		cancel()
		fs.EachRecord(func(r *kgo.Record) {
			var n schemas.Notification
			if err := json.Unmarshal(r.Value, &n); err != nil {
				t.Fatal(err)
			}
			if string(r.Key) != string(n.Key()) {
				t.Errorf("key %q", r.Key)
			}
			got = append(got, n)
		})
	}
	var types []string
	for _, n := range got {
		types = append(types, n.Type)
		var d ItemObject
		if err := json.Unmarshal(n.Data, &d); err != nil || d.ID != it.ID || d.ListID != l.ID || d.PrimaryValue != "fp-1" ||
			d.Author != analyst || n.AppID != "app1" || n.ID == "" || n.CreatedAt.IsZero() {
			t.Errorf("notification %+v data %s", n, n.Data)
		}
		if archived := n.Type == schemas.NotifyListItemArchived; d.Archived != archived {
			t.Errorf("%s: data archived=%v", n.Type, d.Archived)
		}
	}
	want := []string{schemas.NotifyListItemCreated, schemas.NotifyListItemArchived, schemas.NotifyListItemUnarchived}
	if strings.Join(types, ",") != strings.Join(want, ",") {
		t.Errorf("notifications %v, want %v", types, want)
	}
}

// TestUnavailableBroker: with the broker gone, commands and reads fail
// with ErrUnavailable within the timeout instead of hanging.
func TestUnavailableBroker(t *testing.T) {
	c, cfg := newCluster(t)
	a := newInstance(t, cfg, time.Second)
	ctx := context.Background()
	l, err := a.svc.CreateList(ctx, "app1", ListInput{Name: "L", Color: "$red", PrimaryField: schemas.ListFieldUserID})
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	start := time.Now()
	if _, err := a.svc.CreateItem(ctx, "app1", l.ID, ItemInput{PrimaryValue: "u1", Author: analyst}); !errors.Is(err, ErrUnavailable) {
		t.Errorf("command: %v", err)
	}
	if _, err := a.svc.List(ctx, "app1", l.ID); !errors.Is(err, ErrUnavailable) {
		t.Errorf("read: %v", err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("failing took %v", took)
	}
}
