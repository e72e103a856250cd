package chstore_test

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/google/uuid"

	"github.com/moat-dev/moat/internal/chstore"
	"github.com/moat-dev/moat/internal/chtest"
	"github.com/moat-dev/moat/schemas"
)

func TestMain(m *testing.M) { chtest.Main(m) }

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func allVersions(t *testing.T) []int {
	t.Helper()
	ms, err := schemas.Migrations("x")
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) == 0 {
		t.Fatal("no migrations embedded")
	}
	var vs []int
	for _, m := range ms {
		vs = append(vs, m.Version)
	}
	return vs
}

func TestMigrateAppliesAndIsIdempotent(t *testing.T) {
	ctx := testCtx(t)
	addr := chtest.Addr(t)
	conn, err := chstore.Open(ctx, chstore.Options{Addr: addr, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	db := fmt.Sprintf("test_migrate_%d", time.Now().UnixNano())
	t.Cleanup(func() {
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+schemas.QuoteIdent(db)); err != nil {
			t.Errorf("drop %s: %v", db, err)
		}
	})

	if err := chstore.Migrate(ctx, conn, db, nil); err != nil {
		t.Fatalf("first Migrate: %v", err)
	}
	want := allVersions(t)
	got, err := chstore.Applied(ctx, conn, db)
	if err != nil {
		t.Fatalf("Applied: %v", err)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("Applied = %v, want %v", got, want)
	}
	tables := listTables(t, conn, db)
	for _, name := range []string{"schema_migrations", "events", "devices", "devices_mv", "devices_state"} {
		if !slices.Contains(tables, name) {
			t.Errorf("table %s missing after Migrate; have %v", name, tables)
		}
	}

	// Second run: no-op, no new rows in schema_migrations.
	if err := chstore.Migrate(ctx, conn, db, nil); err != nil {
		t.Fatalf("second Migrate: %v", err)
	}
	var rows uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM "+schemas.QuoteIdent(db)+".schema_migrations").Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if rows != uint64(len(want)) {
		t.Fatalf("schema_migrations has %d rows after two runs, want %d", rows, len(want))
	}

	// A migration cut off half way (tables created, version not recorded)
	// runs again without error.
	if err := conn.Exec(ctx, "TRUNCATE TABLE "+schemas.QuoteIdent(db)+".schema_migrations"); err != nil {
		t.Fatal(err)
	}
	if err := chstore.Migrate(ctx, conn, db, nil); err != nil {
		t.Fatalf("Migrate over existing tables: %v", err)
	}
	if got, _ := chstore.Applied(ctx, conn, db); !slices.Equal(got, want) {
		t.Fatalf("Applied after re-run = %v, want %v", got, want)
	}
}

func TestAppliedWithoutTable(t *testing.T) {
	conn := chtest.Open(t, "")
	if _, err := chstore.Applied(testCtx(t), conn, "no_such_db_for_applied"); err == nil {
		t.Fatal("Applied on a missing database: want an error")
	}
}

func TestOpenFailsFast(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	begin := time.Now()
	_, err := chstore.Open(ctx, chstore.Options{Addr: "127.0.0.1:1", DialTimeout: time.Second, Logger: slog.New(slog.DiscardHandler)})
	if err == nil {
		t.Fatal("Open on a closed port: want an error")
	}
	if d := time.Since(begin); d > 5*time.Second {
		t.Fatalf("Open took %v to fail", d)
	}
	if _, err := chstore.Open(ctx, chstore.Options{}); err == nil {
		t.Fatal("Open without an address: want an error")
	}
}

func listTables(t *testing.T, conn driver.Conn, db string) []string {
	t.Helper()
	rows, err := conn.Query(testCtx(t), "SELECT name FROM system.tables WHERE database = ?", db)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		out = append(out, n)
	}
	return out
}

// eventColumns is the full column list of events, in DDL order.
var eventColumns = []string{
	"app_id", "id", "kind", "type", "status", "name", "legacy_event",
	"user_id", "user_email", "user_traits",
	"ip", "header_names", "header_values", "request_token", "client_id", "library",
	"properties", "extra", "created_at_ms", "received_at", "received_at_ms",
	"device_token", "fingerprint",
	"ua_raw", "ua_browser", "ua_browser_version", "ua_browser_type", "ua_engine",
	"ua_os", "ua_os_version", "ua_platform", "ua_device_family", "ua_device_brand", "ua_device_model", "ua_device_type",
	"risk", "action", "kafka_partition", "kafka_offset", "version",
}

type testEvent struct {
	app, user, device, ip, browser string
	id                             uuid.UUID
	at                             time.Time
	offset                         int64
}

func (e testEvent) row() []any {
	return []any{
		e.app, e.id, "track", "$login", "$succeeded", "", "$login.succeeded",
		e.user, e.user + "@example.com", `{"plan":"pro"}`,
		e.ip, []string{"user-agent"}, []string{"Mozilla/5.0 " + e.browser}, "tok", "client", "moat-js 1.0",
		`{"k":1}`, "", e.at.UnixMilli() - 50, e.at.Truncate(time.Second), uint64(e.at.UnixMilli()),
		e.device, "fp-" + e.device,
		"Mozilla/5.0 " + e.browser, e.browser, "120", "browser", "Blink",
		"Linux", "6", "desktop", "Other", "", "", "desktop",
		0.25, "allow", int32(0), e.offset, uint64(1),
	}
}

// TestEventsDedupAndDevices checks the schema against the server: a
// redelivered event (same id, new Kafka offset) counts once in events FINAL
// and in the device state, whose first/last seen and last ip are right.
func TestEventsDedupAndDevices(t *testing.T) {
	conn, db := chtest.NewDatabase(t)
	ctx := testCtx(t)

	app := "app-" + uuid.NewString()[:8]
	t1 := time.Date(2026, 3, 1, 10, 0, 0, 123e6, time.UTC)
	t2 := t1.Add(90 * time.Minute)
	first := testEvent{app: app, user: "u1", device: "dev-1", ip: "203.0.113.1", browser: "Firefox",
		id: uuid.Must(uuid.NewV7()), at: t1, offset: 10}
	redelivered := first
	redelivered.offset = 42 // same event, consumed again after a rebalance
	second := testEvent{app: app, user: "u1", device: "dev-1", ip: "198.51.100.7", browser: "Chrome",
		id: uuid.Must(uuid.NewV7()), at: t2, offset: 11}
	noDevice := testEvent{app: app, user: "u1", device: "", ip: "192.0.2.9", browser: "Safari",
		id: uuid.Must(uuid.NewV7()), at: t2.Add(time.Minute), offset: 12}
	otherApp := testEvent{app: app + "-other", user: "u1", device: "dev-1", ip: "192.0.2.1", browser: "Edge",
		id: uuid.Must(uuid.NewV7()), at: t2.Add(time.Hour), offset: 13}

	insert := func(evs ...testEvent) {
		t.Helper()
		q := fmt.Sprintf("INSERT INTO %s.events (%s)", schemas.QuoteIdent(db), strings.Join(eventColumns, ", "))
		batch, err := conn.PrepareBatch(ctx, q)
		if err != nil {
			t.Fatalf("PrepareBatch: %v", err)
		}
		if n := len(batch.Columns()); n != len(eventColumns) {
			t.Fatalf("batch has %d columns, want %d", n, len(eventColumns))
		}
		for _, e := range evs {
			if err := batch.Append(e.row()...); err != nil {
				t.Fatalf("Append: %v", err)
			}
		}
		if err := batch.Send(); err != nil {
			t.Fatalf("Send: %v", err)
		}
	}
	// Separate inserts, as redelivery happens: separate parts, kept
	// unmerged until the end so that FINAL and the -Merge functions must
	// do the deduplication.
	for _, q := range []string{"SYSTEM STOP MERGES %s.events", "SYSTEM STOP MERGES %s.devices"} {
		if err := conn.Exec(ctx, fmt.Sprintf(q, schemas.QuoteIdent(db))); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	insert(first, second, noDevice, otherApp)
	insert(redelivered)

	var raw, final uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM events WHERE app_id = ?", app).Scan(&raw); err != nil {
		t.Fatalf("count events: %v", err)
	}
	if raw != 4 {
		t.Fatalf("events holds %d rows for the app before merging, want 4 (3 events + 1 copy)", raw)
	}
	if err := conn.QueryRow(ctx, "SELECT count() FROM events FINAL WHERE app_id = ?", app).Scan(&final); err != nil {
		t.Fatalf("count events FINAL: %v", err)
	}
	if final != 3 {
		t.Fatalf("events FINAL counts %d for the app, want 3 distinct events", final)
	}
	var ids uint64
	if err := conn.QueryRow(ctx, "SELECT uniqExact(id) FROM events WHERE app_id = ?", app).Scan(&ids); err != nil {
		t.Fatalf("count ids: %v", err)
	}
	if ids != 3 {
		t.Fatalf("uniqExact(id) = %d, want 3", ids)
	}

	type deviceState struct {
		user, device, fingerprint, lastIP, browser string
		firstSeen, lastSeen, events                uint64
	}
	want := deviceState{
		user: "u1", device: "dev-1", fingerprint: "fp-dev-1", lastIP: second.ip, browser: "Chrome",
		firstSeen: uint64(t1.UnixMilli()), lastSeen: uint64(t2.UnixMilli()), events: 2,
	}
	check := func(what, query string) {
		t.Helper()
		rows, err := conn.Query(ctx, query, app)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		defer rows.Close()
		var got []deviceState
		for rows.Next() {
			var s deviceState
			if err := rows.Scan(&s.user, &s.device, &s.fingerprint, &s.firstSeen, &s.lastSeen, &s.lastIP, &s.browser, &s.events); err != nil {
				t.Fatalf("%s: scan: %v", what, err)
			}
			got = append(got, s)
		}
		if err := rows.Err(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if len(got) != 1 || got[0] != want {
			t.Fatalf("%s:\n got %+v\nwant [%+v]", what, got, want)
		}
	}
	check("devices with -Merge", `
SELECT user_id, device_token,
       anyMerge(fingerprint), minMerge(first_seen_ms), maxMerge(last_seen_ms),
       argMaxMerge(last_ip), argMaxMerge(ua_browser), uniqExactMerge(event_ids)
FROM devices
WHERE app_id = ?
GROUP BY app_id, user_id, device_token`)
	check("devices_state view", `
SELECT user_id, device_token, fingerprint, first_seen_ms, last_seen_ms, last_ip, ua_browser, event_count
FROM devices_state
WHERE app_id = ?`)

	// After the merges have run, the answers stay the same.
	for _, tbl := range []string{"events", "devices"} {
		if err := conn.Exec(ctx, "SYSTEM START MERGES "+tbl); err != nil {
			t.Fatalf("start merges on %s: %v", tbl, err)
		}
		if err := conn.Exec(ctx, "OPTIMIZE TABLE "+tbl+" FINAL"); err != nil {
			t.Fatalf("optimize %s: %v", tbl, err)
		}
	}
	if err := conn.QueryRow(ctx, "SELECT count() FROM events WHERE app_id = ?", app).Scan(&raw); err != nil {
		t.Fatalf("count events after merge: %v", err)
	}
	if raw != 3 {
		t.Fatalf("events holds %d rows for the app after OPTIMIZE FINAL, want 3", raw)
	}
	check("devices_state view after merge", `
SELECT user_id, device_token, fingerprint, first_seen_ms, last_seen_ms, last_ip, ua_browser, event_count
FROM devices_state
WHERE app_id = ?`)
}
