package projector_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/google/uuid"
	"github.com/moat-dev/moat/internal/chtest"
	"github.com/moat-dev/moat/internal/kafka"
	"github.com/moat-dev/moat/internal/privacy"
	"github.com/moat-dev/moat/projector"
	"github.com/moat-dev/moat/schemas"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

func TestMain(m *testing.M) { chtest.Main(m) }

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

type fixture struct {
	t       *testing.T
	kcfg    kafka.Config
	cl      *kgo.Client
	conn    driver.Conn
	db      string
	cluster string // the cluster form's cluster ("" for a single server)
	reg     *privacy.Registry
	w       *privacy.Writer
	base    time.Time
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	conn, db := chtest.NewDatabase(t)
	return newFixtureOn(t, conn, db, "")
}

// newFixtureOn is newFixture on the database db of conn, migrated in the
// form of cluster.
func newFixtureOn(t *testing.T, conn driver.Conn, db, cluster string) *fixture {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	kcfg := kafka.DefaultConfig()
	kcfg.Brokers = c.ListenAddrs()
	kcfg.Partitions = 2
	cl, err := kgo.NewClient(kgo.SeedBrokers(kcfg.Brokers...), kgo.ProducerLinger(0))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := kafka.EnsureTopics(ctx, cl, kcfg, schemas.AllTopics()...); err != nil {
		t.Fatal(err)
	}
	h, err := privacy.NewHasher([]byte(strings.Repeat("p", 32)))
	if err != nil {
		t.Fatal(err)
	}
	reg, err := privacy.NewRegistry(kcfg, h, discard)
	if err != nil {
		t.Fatal(err)
	}
	run(t, reg.Run)
	w, err := privacy.NewWriter(kcfg, h, 5*time.Second, discard)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Close)
	return &fixture{t: t, kcfg: kcfg, cl: cl, conn: conn, db: db, cluster: cluster, reg: reg, w: w,
		base: time.Now().UTC().Truncate(time.Millisecond).Add(-time.Hour)}
}

func run(t *testing.T, f func(context.Context) error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
}

// decide appends a decision as the scorer would: an event of kind about
// user (with email) of app at base+offset, from device ("" for none).
func (f *fixture) decide(app string, kind schemas.Kind, user, email, device string, offset time.Duration, sessions ...schemas.SessionChange) string {
	f.t.Helper()
	id := uuid.Must(uuid.NewV7()).String()
	d := schemas.Decision{V: 1, Event: schemas.Event{V: 1, ID: id, AppID: app, Kind: kind, Type: "$login", Status: "$succeeded",
		User: schemas.User{ID: user, Email: email}, Context: schemas.Context{IP: "192.0.2.9"}, ReceivedAt: f.base.Add(offset)}, Sessions: sessions}
	if device != "" {
		d.Device = schemas.Device{Token: device, Fingerprint: "fp-" + device, UserAgent: schemas.UserAgent{Browser: "Chrome"}}
	}
	b, err := json.Marshal(d)
	if err != nil {
		f.t.Fatal(err)
	}
	if err := f.cl.ProduceSync(context.Background(), &kgo.Record{Topic: schemas.TopicDecisions, Key: d.Event.Key(), Value: b}).FirstErr(); err != nil {
		f.t.Fatal(err)
	}
	return id
}

func (f *fixture) count(q string, args ...any) uint64 {
	f.t.Helper()
	var n uint64
	if err := f.conn.QueryRow(context.Background(), q, args...).Scan(&n); err != nil {
		f.t.Fatalf("%s: %v", q, err)
	}
	return n
}

func (f *fixture) waitCount(want uint64, q string, args ...any) {
	f.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for n := f.count(q, args...); n != want; n = f.count(q, args...) {
		if time.Now().After(deadline) {
			f.t.Fatalf("%s = %d, want %d", q, n, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (f *fixture) startProjector() *projector.Worker {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := f.reg.Sync(ctx); err != nil {
		f.t.Fatal(err)
	}
	w, err := projector.New(projector.Config{Kafka: f.kcfg, Database: f.db, BatchSize: 1000, FlushInterval: 50 * time.Millisecond,
		InsertTimeout: 10 * time.Second, Erasures: f.reg, MutationWait: 30 * time.Second, Cluster: f.cluster}, f.conn, discard)
	if err != nil {
		f.t.Fatal(err)
	}
	run(f.t, w.Run)
	return w
}

const (
	rowsOf    = "SELECT count() FROM events FINAL WHERE app_id = 'app' AND user_id = ?"
	devicesOf = "SELECT count() FROM devices_state WHERE app_id = 'app' AND user_id = ?"
)

// TestProjectorSkipsForgottenRows: decisions of a user deleted in the
// registry (by id or by email) dated at or before the deletion are never
// inserted, even without a user.delete command (as in a replay of the
// decisions); later ones, and other apps' users of the same id, are.
func TestProjectorSkipsForgottenRows(t *testing.T) {
	f := newFixture(t)
	deletedAt := f.base.Add(10 * time.Minute)
	err := f.w.Erase(context.Background(), "app", []privacy.Subject{{Type: privacy.TypeID, Identifier: "gone"}, {Type: privacy.TypeEmail, Identifier: "Gone@Example.com"}}, nil, deletedAt)
	if err != nil {
		t.Fatal(err)
	}
	f.decide("app", schemas.KindTrack, "gone", "", "dev-g", time.Minute)
	f.decide("app", schemas.KindTrack, "gone", "", "dev-g", 10*time.Minute) // at the deletion: erased too
	later := f.decide("app", schemas.KindTrack, "gone", "", "dev-g2", 11*time.Minute)
	f.decide("app", schemas.KindTrack, "alias", "gone@example.com", "dev-a", 2*time.Minute)
	f.decide("app", schemas.KindTrack, "alias", "other@example.com", "dev-a", 3*time.Minute)
	f.decide("app", schemas.KindTrack, "kept", "kept@example.com", "dev-k", time.Minute)
	f.decide("app2", schemas.KindTrack, "gone", "gone@example.com", "dev-x", time.Minute)
	// Sentinels: once they are in, everything before them on their
	// partitions was projected.
	for _, u := range []string{"gone", "alias", "kept"} {
		f.decide("app", schemas.KindTrack, u, "", "", 30*time.Minute)
	}
	f.decide("app2", schemas.KindTrack, "gone", "", "", 30*time.Minute)
	f.startProjector()
	f.waitCount(2, rowsOf, "kept")
	f.waitCount(2, rowsOf, "alias")
	f.waitCount(2, rowsOf, "gone")
	f.waitCount(2, "SELECT count() FROM events FINAL WHERE app_id = 'app2' AND user_id = 'gone'")
	if n := f.count("SELECT count() FROM events WHERE app_id = 'app' AND user_id = 'gone' AND id = toUUID(?)", later); n != 1 {
		t.Errorf("the row after the deletion is missing: %d", n)
	}
	if n := f.count("SELECT count() FROM events WHERE app_id = 'app' AND (user_email = 'gone@example.com' OR received_at_ms <= ? AND user_id = 'gone')", uint64(deletedAt.UnixMilli())); n != 0 {
		t.Errorf("%d forgotten rows were inserted", n)
	}
	if n := f.count("SELECT count() FROM devices_state WHERE app_id = 'app' AND device_token = 'dev-g'"); n != 0 {
		t.Errorf("the forgotten device has %d rows", n)
	}
	f.waitCount(1, devicesOf, "gone") // dev-g2
}

// TestProjectorErasesOnCommand: a user.delete decision erases the user's
// rows up to the deletion from events and rebuilds the user's devices from
// the rows after it (the same device token in a new life), stores nothing
// of the command itself, and leaves everyone else alone.
func TestProjectorErasesOnCommand(t *testing.T) {
	f := newFixture(t)
	f.startProjector()
	session := func(uuid string, at time.Duration) schemas.SessionChange {
		ms := f.base.Add(at).UnixMilli()
		return schemas.SessionChange{UUID: uuid, ID: uuid, DeviceToken: "dev-k", Status: "active", StartedAtMs: ms, LastActivityAtMs: ms}
	}
	f.decide("app", schemas.KindTrack, "kim", "kim@example.com", "dev-k", time.Minute, session("s-old", time.Minute))
	f.decide("app", schemas.KindTrack, "kim", "kim@example.com", "dev-k", 2*time.Minute)
	f.decide("app", schemas.KindTrack, "kim", "", "dev-k2", 3*time.Minute)
	f.decide("app", schemas.KindTrack, "kim", "", "dev-k", 20*time.Minute, session("s-new", 20*time.Minute)) // after the deletion below
	f.decide("app", schemas.KindTrack, "", "kim@example.com", "dev-anon", 4*time.Minute)
	f.decide("app", schemas.KindTrack, "", "", "dev-anon", 5*time.Minute) // an anonymous visitor on the same device
	f.decide("app", schemas.KindTrack, "bob", "bob@example.com", "dev-b", time.Minute)
	f.decide("app2", schemas.KindTrack, "kim", "kim@example.com", "dev-k", time.Minute)
	f.waitCount(4, rowsOf, "kim")
	f.waitCount(2, rowsOf, "")
	f.waitCount(1, rowsOf, "bob")
	f.waitCount(2, devicesOf, "kim")
	f.waitCount(2, "SELECT count() FROM sessions_state WHERE app_id = 'app' AND user_id = 'kim'")
	f.waitCount(1, "SELECT count() FROM events FINAL WHERE app_id = 'app2'")

	at := f.base.Add(10 * time.Minute)
	if err := f.w.Erase(context.Background(), "app", []privacy.Subject{{Type: privacy.TypeEmail, Identifier: "kim@example.com"}, {Type: privacy.TypeID, Identifier: "kim"}}, nil, at); err != nil {
		t.Fatal(err)
	}
	// The commands as the scorer passes them on: one for the email, one
	// for the user id found with it.
	for _, u := range []schemas.User{{Email: "kim@example.com"}, {ID: "kim"}} {
		d := schemas.Decision{V: 1, Event: schemas.Event{V: 1, ID: uuid.Must(uuid.NewV7()).String(), AppID: "app", Kind: schemas.KindUserDelete, User: u, ReceivedAt: at}}
		b, _ := json.Marshal(d)
		if err := f.cl.ProduceSync(context.Background(), &kgo.Record{Topic: schemas.TopicDecisions, Key: d.Event.Key(), Value: b}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	f.waitCount(1, rowsOf, "kim")
	f.waitCount(1, rowsOf, "")
	f.waitCount(0, "SELECT count() FROM system.mutations WHERE database = ? AND is_done = 0", f.db)
	var first, last, events uint64
	if err := f.conn.QueryRow(context.Background(), "SELECT first_seen_ms, last_seen_ms, event_count FROM devices_state WHERE app_id = 'app' AND user_id = 'kim'").
		Scan(&first, &last, &events); err != nil {
		t.Fatal(err)
	}
	if want := uint64(f.base.Add(20 * time.Minute).UnixMilli()); first != want || last != want || events != 1 {
		t.Errorf("kim's device rebuilt as first %d last %d events %d, want %d, %d, 1", first, last, events, want, want)
	}
	f.waitCount(1, devicesOf, "kim") // dev-k2 had only erased rows
	var sessions []string
	if err := f.conn.QueryRow(context.Background(), "SELECT groupArray(session_uuid) FROM sessions_state WHERE app_id = 'app' AND user_id = 'kim'").Scan(&sessions); err != nil ||
		len(sessions) != 1 || sessions[0] != "s-new" {
		t.Errorf("kim's sessions after the erasure: %v %v, want the new one", sessions, err)
	}
	var anon uint64
	if err := f.conn.QueryRow(context.Background(), "SELECT event_count FROM devices_state WHERE app_id = 'app' AND user_id = '' AND device_token = 'dev-anon'").Scan(&anon); err != nil || anon != 1 {
		t.Errorf("the anonymous device kept %d events (%v), want the visitor's 1", anon, err)
	}
	for q, want := range map[string]uint64{
		"SELECT count() FROM events WHERE kind = 'user.delete'":                                         0,
		"SELECT count() FROM events WHERE app_id = 'app' AND lowerUTF8(user_email) = 'kim@example.com'": 0,
		"SELECT count() FROM events FINAL WHERE app_id = 'app' AND user_id = 'bob'":                     1,
		"SELECT count() FROM devices_state WHERE app_id = 'app' AND user_id = 'bob'":                    1,
		"SELECT count() FROM events FINAL WHERE app_id = 'app2' AND user_id = 'kim'":                    1,
		"SELECT count() FROM devices_state WHERE app_id = 'app2' AND user_id = 'kim'":                   1,
	} {
		if n := f.count(q); n != want {
			t.Errorf("%s = %d, want %d", q, n, want)
		}
	}
}
