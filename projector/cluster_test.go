package projector_test

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/google/uuid"
	"github.com/moat-dev/moat/internal/chtest"
	"github.com/moat-dev/moat/internal/privacy"
	"github.com/moat-dev/moat/schemas"
	"github.com/twmb/franz-go/pkg/kgo"
)

// settingsConn records, for every insert run through it (INSERT ...
// SELECT by Exec, batches by PrepareBatch), the insert settings the server
// applied to it: system.settings read with the statement's own context,
// and so its query settings.
type settingsConn struct {
	driver.Conn
	t                *testing.T
	mu               sync.Mutex
	selects, batches []string
}

func (c *settingsConn) settings(ctx context.Context) string {
	rows, err := c.Conn.Query(ctx, "SELECT name, value FROM system.settings WHERE name IN ('insert_distributed_sync', 'insert_deduplicate') ORDER BY name")
	if err != nil {
		c.t.Errorf("read the insert's settings: %v", err)
		return err.Error()
	}
	defer rows.Close()
	var got []string
	for rows.Next() {
		var name, value string
		if err := rows.Scan(&name, &value); err != nil {
			c.t.Errorf("read the insert's settings: %v", err)
		}
		got = append(got, name+"="+value)
	}
	return strings.Join(got, " ")
}

func (c *settingsConn) Exec(ctx context.Context, query string, args ...any) error {
	if strings.HasPrefix(query, "INSERT INTO") {
		s := c.settings(ctx)
		c.mu.Lock()
		c.selects = append(c.selects, s)
		c.mu.Unlock()
	}
	return c.Conn.Exec(ctx, query, args...)
}

func (c *settingsConn) PrepareBatch(ctx context.Context, query string, opts ...driver.PrepareBatchOption) (driver.Batch, error) {
	if strings.HasPrefix(query, "INSERT INTO") {
		s := c.settings(ctx)
		c.mu.Lock()
		c.batches = append(c.batches, s)
		c.mu.Unlock()
	}
	return c.Conn.PrepareBatch(ctx, query, opts...)
}

// inserts returns the settings of the INSERT ... SELECT statements and of
// the batches.
func (c *settingsConn) inserts() (selects, batches []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.selects), slices.Clone(c.batches)
}

// TestProjectorErasesOnCluster runs the projector, and its erasure of a
// user, on the cluster form of the schema, on a cluster of two ClickHouse
// 18.16 servers (two shards, one replica each, no ZooKeeper).
//
// The projector's own code runs unchanged against server 1: its inserts,
// the erasure's reads and rebuilding INSERT ... SELECT go through the
// Distributed tables, and it waits for the mutations of both shards by
// reading cluster('moat_test', system.mutations). Only the distributed
// DDL queue is emulated (chtest.Cluster.DDLConn): each ALTER TABLE ...
// DELETE ON CLUSTER the erasure issues must be accepted by server 1 up to
// the missing queue (it parsed, the cluster is known, DELETE may run ON
// CLUSTER), then runs without ON CLUSTER on both servers, on their plain
// local tables, as the queue would run it on every host.
//
// The erased user's rows live on one shard and the anonymous rows sent
// with the user's email on the other, so the erasure must reach both; a
// bystander on each shard stays whole.
func TestProjectorErasesOnCluster(t *testing.T) {
	const cluster = "moat_test"
	c := chtest.NewCluster(t, cluster, 2)
	ddl, db := c.NewDatabase()
	migrated := len(c.DDL())
	conn := &settingsConn{Conn: ddl, t: t}
	f := newFixtureOn(t, conn, db, cluster)
	nodes := []driver.Conn{c.Open(0, db), c.Open(1, db)}
	ctx := context.Background()

	// The shard of a user's rows: the Distributed tables' sharding key,
	// shard i+1 on server i.
	shardOf := func(user string) int {
		t.Helper()
		var h uint64
		if err := nodes[0].QueryRow(ctx, "SELECT toUInt64(cityHash64('app', ?) % 2)", user).Scan(&h); err != nil {
			t.Fatal(err)
		}
		return int(h)
	}
	pick := func(prefix string, shard int) string {
		t.Helper()
		for i := range 100 {
			if u := fmt.Sprintf("%s%d", prefix, i); shardOf(u) == shard {
				return u
			}
		}
		t.Fatalf("no user %s* on shard %d", prefix, shard+1)
		return ""
	}
	anon := shardOf("")
	kim := pick("kim", 1-anon)                          // the erased user
	near, far := pick("bob", 1-anon), pick("ann", anon) // bystanders, on kim's shard and the other
	t.Logf("kim %s on server %d, anonymous rows on server %d", kim, 2-anon, anon+1)

	w := f.startProjector()
	session := func(uuid string, at time.Duration) schemas.SessionChange {
		ms := f.base.Add(at).UnixMilli()
		return schemas.SessionChange{UUID: uuid, ID: uuid, DeviceToken: "dev-k", Status: "active", StartedAtMs: ms, LastActivityAtMs: ms}
	}
	f.decide("app", schemas.KindTrack, kim, "kim@example.com", "dev-k", time.Minute, session("s-old", time.Minute))
	f.decide("app", schemas.KindTrack, kim, "kim@example.com", "dev-k", 2*time.Minute)
	f.decide("app", schemas.KindTrack, kim, "", "dev-k2", 3*time.Minute)
	f.decide("app", schemas.KindTrack, kim, "", "dev-k", 20*time.Minute, session("s-new", 20*time.Minute)) // after the deletion below
	f.decide("app", schemas.KindTrack, "", "kim@example.com", "dev-anon", 4*time.Minute)
	f.decide("app", schemas.KindTrack, "", "", "dev-anon", 5*time.Minute)
	f.decide("app", schemas.KindTrack, near, near+"@example.com", "dev-near", time.Minute)
	f.decide("app", schemas.KindTrack, far, far+"@example.com", "dev-far", time.Minute)
	f.decide("app2", schemas.KindTrack, kim, "kim@example.com", "dev-k", time.Minute)
	f.waitCount(4, rowsOf, kim)
	f.waitCount(2, rowsOf, "")
	f.waitCount(1, rowsOf, near)
	f.waitCount(1, rowsOf, far)
	f.waitCount(2, devicesOf, kim)
	f.waitCount(2, "SELECT count() FROM sessions_state WHERE app_id = 'app' AND user_id = ?", kim)
	f.waitCount(1, "SELECT count() FROM events FINAL WHERE app_id = 'app2'")

	// Where the rows are: each user's on the shard its hash names.
	local := func(i int, q string, args ...any) uint64 {
		t.Helper()
		var n uint64
		if err := nodes[i].QueryRow(ctx, q, args...).Scan(&n); err != nil {
			t.Fatalf("server %d: %s: %v", i+1, q, err)
		}
		return n
	}
	const localRows = "SELECT count() FROM events_local FINAL WHERE app_id = 'app' AND user_id = ?"
	for user, want := range map[string][2]uint64{kim: {4, 0}, "": {2, 0}, near: {1, 0}, far: {1, 0}} {
		shard := shardOf(user)
		if got := [2]uint64{local(shard, localRows, user), local(1-shard, localRows, user)}; got != want {
			t.Fatalf("%q's rows on its shard and the other: %v, want %v", user, got, want)
		}
	}

	at := f.base.Add(10 * time.Minute)
	if err := f.w.Erase(ctx, "app", []privacy.Subject{{Type: privacy.TypeEmail, Identifier: "kim@example.com"}, {Type: privacy.TypeID, Identifier: kim}}, nil, at); err != nil {
		t.Fatal(err)
	}
	for _, u := range []schemas.User{{Email: "kim@example.com"}, {ID: kim}} {
		d := schemas.Decision{V: 1, Event: schemas.Event{V: 1, ID: uuid.Must(uuid.NewV7()).String(), AppID: "app", Kind: schemas.KindUserDelete, User: u, ReceivedAt: at}}
		b, _ := json.Marshal(d)
		if err := f.cl.ProduceSync(ctx, &kgo.Record{Topic: schemas.TopicDecisions, Key: d.Event.Key(), Value: b}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	f.waitCount(1, rowsOf, kim)
	f.waitCount(1, rowsOf, "")
	f.waitCount(0, "SELECT count() FROM cluster(?, system.mutations) WHERE database = ? AND is_done = 0", cluster, db)

	t.Run("the mutations named the local tables ON CLUSTER", func(t *testing.T) {
		re := regexp.MustCompile("^ALTER TABLE `" + regexp.QuoteMeta(db) + "`\\.(\\w+) ON CLUSTER `" + cluster + "` DELETE WHERE ")
		mutated := map[string]bool{}
		for _, stmt := range c.DDL()[migrated:] {
			m := re.FindStringSubmatch(stmt)
			if m == nil {
				t.Errorf("unexpected DDL of the erasure: %s", stmt)
				continue
			}
			mutated[m[1]] = true
		}
		for _, tb := range []string{"events", "devices", "device_users", "device_states", "sessions"} {
			if !mutated[schemas.LocalTable(tb)] {
				t.Errorf("%s was not mutated (mutated: %v)", schemas.LocalTable(tb), mutated)
			}
		}
	})

	t.Run("inserts are synchronous, the rebuild's not deduplicated", func(t *testing.T) {
		selects, batches := conn.inserts()
		if len(selects) == 0 || len(batches) == 0 {
			t.Fatalf("%d INSERT ... SELECT and %d batches ran, want some of each", len(selects), len(batches))
		}
		for _, s := range selects {
			if s != "insert_deduplicate=0 insert_distributed_sync=1" {
				t.Errorf("the rebuild ran with %q", s)
			}
		}
		for _, s := range batches {
			// Deduplication of a retried batch stays on.
			if s != "insert_deduplicate=1 insert_distributed_sync=1" {
				t.Errorf("a batch ran with %q", s)
			}
		}
	})

	t.Run("the erased rows are gone from both shards, the rest stay", func(t *testing.T) {
		for i := range nodes {
			for q, want := range map[string]uint64{
				"SELECT count() FROM events_local WHERE app_id = 'app' AND lowerUTF8(user_email) = 'kim@example.com'":               0,
				"SELECT count() FROM events_local WHERE app_id = 'app' AND user_id = '" + kim + "' AND received_at_ms <= " + ms(at): 0,
				"SELECT count() FROM events_local WHERE kind = 'user.delete'":                                                       0,
				"SELECT count() FROM devices_local WHERE app_id = 'app' AND device_token = 'dev-k2'":                                0,
				"SELECT count() FROM sessions_local WHERE app_id = 'app' AND session_uuid = 's-old'":                                0,
				"SELECT count() FROM device_users_local FINAL WHERE app_id = 'app' AND device_token = 'dev-k2'":                     0,
			} {
				if n := local(i, q); n != want {
					t.Errorf("server %d: %s = %d, want %d", i+1, q, n, want)
				}
			}
			for user, want := range map[string]uint64{kim: 1, "": 1, near: 1, far: 1} {
				if shardOf(user) != i {
					want = 0
				}
				if n := local(i, localRows, user); n != want {
					t.Errorf("server %d: %q has %d rows, want %d", i+1, user, n, want)
				}
			}
		}
		if n := f.count("SELECT count() FROM events FINAL WHERE app_id = 'app2' AND user_id = ?", kim); n != 1 {
			t.Errorf("app2's %s has %d rows, want 1", kim, n)
		}
		var first, last, events uint64
		if err := f.conn.QueryRow(ctx, "SELECT first_seen_ms, last_seen_ms, event_count FROM devices_state WHERE app_id = 'app' AND user_id = ?", kim).
			Scan(&first, &last, &events); err != nil {
			t.Fatal(err)
		}
		if want := uint64(f.base.Add(20 * time.Minute).UnixMilli()); first != want || last != want || events != 1 {
			t.Errorf("kim's device rebuilt as first %d last %d events %d, want %d, %d, 1", first, last, events, want, want)
		}
		var sessions []string
		if err := f.conn.QueryRow(ctx, "SELECT groupArray(session_uuid) FROM sessions_state WHERE app_id = 'app' AND user_id = ?", kim).Scan(&sessions); err != nil ||
			len(sessions) != 1 || sessions[0] != "s-new" {
			t.Errorf("kim's sessions after the erasure: %v %v, want the new one", sessions, err)
		}
		var anonEvents uint64
		if err := f.conn.QueryRow(ctx, "SELECT event_count FROM devices_state WHERE app_id = 'app' AND user_id = '' AND device_token = 'dev-anon'").Scan(&anonEvents); err != nil || anonEvents != 1 {
			t.Errorf("the anonymous device kept %d events (%v), want the visitor's 1", anonEvents, err)
		}
		for _, u := range []string{near, far} {
			if n := f.count(devicesOf, u); n != 1 {
				t.Errorf("%s has %d devices, want 1", u, n)
			}
		}
	})

	t.Run("the wait reads the mutations of every shard", func(t *testing.T) {
		// Hold a mutation on server 2 only: server 1's system.mutations
		// knows nothing of it, the projector's count must.
		if err := nodes[1].Exec(ctx, "SYSTEM STOP MERGES events_local"); err != nil {
			t.Fatal(err)
		}
		started := false
		defer func() {
			if !started {
				_ = nodes[1].Exec(ctx, "SYSTEM START MERGES events_local")
			}
		}()
		if err := nodes[1].Exec(ctx, "ALTER TABLE events_local DELETE WHERE app_id = 'nobody'"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(500 * time.Millisecond)
		if n := local(0, "SELECT count() FROM system.mutations WHERE database = ? AND is_done = 0", db); n != 0 {
			t.Fatalf("server 1 has %d pending mutations of its own, want 0", n)
		}
		if n := local(1, "SELECT count() FROM system.mutations WHERE database = ? AND is_done = 0", db); n != 1 {
			t.Fatalf("server 2 has %d pending mutations, want the held one", n)
		}
		if n, err := w.PendingMutations(ctx); err != nil || n != 1 {
			t.Errorf("the projector counts %d pending mutations (%v), want server 2's 1", n, err)
		}
		if err := nodes[1].Exec(ctx, "SYSTEM START MERGES events_local"); err != nil {
			t.Fatal(err)
		}
		started = true
		deadline := time.Now().Add(30 * time.Second)
		for {
			n, err := w.PendingMutations(ctx)
			if err == nil && n == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the projector still counts %d pending mutations (%v) 30 s after the merges restarted", n, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
}

func ms(t time.Time) string { return fmt.Sprint(t.UnixMilli()) }
