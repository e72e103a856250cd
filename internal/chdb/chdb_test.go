package chdb

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moat-dev/moat/internal/chstore"
	"github.com/moat-dev/moat/schemas"
)

// The library comes from scripts/fetch-chdb.sh: MOAT_CHDB_LIB names it, or
// it is looked up in the fetch cache. Without it the tests skip, except
// under CI=true, where a missing library fails the build.

var shared struct {
	once    sync.Once
	conn    *Conn
	err     error
	lib     string
	dir     string
	openDur time.Duration
}

func libPath() string {
	if p := os.Getenv("MOAT_CHDB_LIB"); p != "" {
		return p
	}
	cache := os.Getenv("MOAT_DATA_CACHE")
	if cache == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return ""
		}
		cache = filepath.Join(home, ".cache", "moat")
	}
	m, _ := filepath.Glob(filepath.Join(cache, "chdb", "*", "package", "libchdb.so"))
	if len(m) == 0 {
		return ""
	}
	sort.Strings(m)
	return m[len(m)-1]
}

// testConn returns the process's shared chDB session (chDB runs one engine
// per process, so every test uses the same one; TestMain closes it).
func testConn(t *testing.T) *Conn {
	t.Helper()
	shared.once.Do(func() {
		shared.lib = libPath()
		if shared.lib == "" {
			shared.err = fmt.Errorf("libchdb.so not found: run scripts/fetch-chdb.sh and set MOAT_CHDB_LIB=$(scripts/fetch-chdb.sh)")
			return
		}
		if _, err := os.Stat(shared.lib); err != nil {
			shared.err = fmt.Errorf("libchdb.so: %w (run scripts/fetch-chdb.sh)", err)
			return
		}
		dir, err := os.MkdirTemp("", "moat-chdb-")
		if err != nil {
			shared.err = err
			return
		}
		shared.dir = dir
		// A one-shard cluster of this engine itself, for the cluster form
		// of the schema (cluster_test.go).
		config := filepath.Join(dir, "config.xml")
		if err := os.WriteFile(config, []byte(clusterConfig), 0o644); err != nil {
			shared.err = err
			return
		}
		begin := time.Now()
		shared.conn, shared.err = Open(shared.lib, dir, "--config-file="+config)
		shared.openDur = time.Since(begin)
	})
	if shared.err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("chdb (required when CI=true): %v", shared.err)
		}
		t.Skipf("skipping ClickHouse portability test: %v", shared.err)
	}
	return shared.conn
}

func TestMain(m *testing.M) {
	code := m.Run()
	if shared.conn != nil {
		_ = shared.conn.Close()
	}
	if shared.dir != "" {
		_ = os.RemoveAll(shared.dir)
	}
	os.Exit(code)
}

func query(t *testing.T, c *Conn, sql string) string {
	t.Helper()
	out, err := c.Query(sql, "TabSeparated")
	if err != nil {
		t.Fatalf("chdb: %v\nSQL:\n%s", err, sql)
	}
	return strings.TrimSpace(string(out))
}

func TestOpenAndErrors(t *testing.T) {
	c := testConn(t)
	t.Logf("library %s, chdb_version %s, opened in %s", shared.lib, c.Version(), shared.openDur.Round(time.Millisecond))
	if got := query(t, c, "SELECT 1 + 1"); got != "2" {
		t.Fatalf("SELECT 1 + 1 = %q", got)
	}
	t.Logf("engine version(): %s", query(t, c, "SELECT version()"))
	if _, err := c.Query("SELEC 1", "TabSeparated"); err == nil || !strings.Contains(err.Error(), "SYNTAX_ERROR") {
		t.Fatalf("bad SQL: err = %v, want a SYNTAX_ERROR", err)
	}
	if _, err := Open(shared.lib, t.TempDir()); err != ErrBusy {
		t.Fatalf("second Open: err = %v, want ErrBusy", err)
	}
	out, err := c.Query("SELECT number FROM system.numbers LIMIT 3", "CSV")
	if err != nil || string(out) != "0\n1\n2\n" {
		t.Fatalf("CSV output %q, %v", out, err)
	}
}

const app = "app-chdb"

// TestPortability applies every migration, loads a few events and runs every
// documented analyst query on chDB, a current ClickHouse engine.
func TestPortability(t *testing.T) {
	c := testConn(t)
	begin := time.Now()
	defer func() { t.Logf("portability checks took %s", time.Since(begin).Round(time.Millisecond)) }()

	query(t, c, "CREATE DATABASE IF NOT EXISTS moat")
	migrations, err := schemas.Migrations("moat")
	if err != nil {
		t.Fatal(err)
	}
	if len(migrations) == 0 {
		t.Fatal("no migrations")
	}
	failed := false
	for _, m := range migrations {
		for i, stmt := range m.Statements {
			if _, err := c.Query(stmt, "TabSeparated"); err != nil {
				failed = true
				t.Errorf("migration %04d_%s statement %d fails on ClickHouse %s:\n%v\nSQL:\n%s", m.Version, m.Name, i+1, shared.conn.Version(), err, stmt)
			}
		}
	}
	if failed {
		t.FailNow()
	}

	t.Run("migrations are rerunnable", func(t *testing.T) {
		// chstore.Migrate re-applies a migration cut off half way: CREATE …
		// IF NOT EXISTS must pass, and a repeated ADD COLUMN must fail with
		// a code chstore treats as "already done".
		for _, m := range migrations {
			for i, stmt := range m.Statements {
				_, err := c.Query(stmt, "TabSeparated")
				if err == nil {
					continue
				}
				var code int
				fmt.Sscanf(err.Error(), "Code: %d.", &code)
				if !strings.Contains(stmt, "ADD COLUMN") || !chstore.IsDuplicateColumnCode(code) {
					t.Errorf("migration %04d_%s statement %d, second run: %v", m.Version, m.Name, i+1, err)
				}
			}
		}
	})

	now := time.Now().UTC().Truncate(time.Second)
	ms := func(d time.Duration) uint64 { return uint64(now.Add(d).UnixMilli()) }
	type ev struct {
		id, kind, typ, status, name, user, ip, device, fp, props, action, target string
		at                                                                       uint64
		risk                                                                     float64
		signals, cnames                                                          []string
		cvalues                                                                  []float64
		version                                                                  uint64
	}
	const riskID = "00000000-0000-4000-8000-000000000004"
	events := []ev{
		{id: "00000000-0000-4000-8000-000000000001", kind: "log", typ: "$login", status: "$failed", user: "u2", ip: "198.51.100.9", at: ms(-50 * time.Minute)},
		{id: "00000000-0000-4000-8000-000000000002", kind: "log", typ: "$custom", name: "Plan changed", user: "u1", ip: "203.0.113.1", device: "tok-a", fp: "fp-1", props: `{"plan":"pro"}`, at: ms(-40 * time.Minute)},
		// u3 signs in from u1's browser: one fingerprint, two accounts.
		{id: "00000000-0000-4000-8000-000000000003", kind: "track", typ: "$login", status: "$succeeded", user: "u3", ip: "203.0.113.1", device: "tok-c", fp: "fp-1", at: ms(-30 * time.Minute)},
		{id: riskID, kind: "risk", typ: "$login", status: "$attempted", user: "u1", ip: "203.0.113.2", device: "tok-a", fp: "fp-1", action: "challenge", risk: 0.72,
			signals: []string{"new_device", "proxy_ip"}, cnames: []string{"new_device", "ip_datacenter"}, cvalues: []float64{1.5, -0.25}, at: ms(-20 * time.Minute)},
		{id: "00000000-0000-4000-8000-000000000005", kind: "track", typ: "$profile_update", status: "$succeeded", user: "u1", ip: "203.0.113.3", device: "tok-b", fp: "fp-2", at: ms(-10 * time.Minute)},
		{id: "00000000-0000-4000-8000-000000000006", kind: "track", typ: "$profile_update", status: "$succeeded", user: "u1", ip: "203.0.113.4", device: "tok-b", fp: "fp-2", at: ms(-5 * time.Minute)},
		// Commands: a report of u1's tok-a, then an account recovery.
		{id: "00000000-0000-4000-8000-000000000007", kind: "device.report", user: "u1", target: "tok-a", at: ms(-4 * time.Minute)},
		{id: "00000000-0000-4000-8000-000000000008", kind: "user.recover", user: "u1", at: ms(-3 * time.Minute)},
	}
	dup := events[3] // redelivered risk decision: same id and sorting key, newer version
	dup.version = 2

	lit := func(s string) string {
		return "'" + strings.ReplaceAll(strings.ReplaceAll(s, `\`, `\\`), "'", `\'`) + "'"
	}
	arr := func(ss []string) string {
		q := make([]string, len(ss))
		for i, s := range ss {
			q[i] = lit(s)
		}
		return "[" + strings.Join(q, ",") + "]"
	}
	farr := func(fs []float64) string {
		q := make([]string, len(fs))
		for i, f := range fs {
			q[i] = strconv.FormatFloat(f, 'g', -1, 64)
		}
		return "[" + strings.Join(q, ",") + "]"
	}
	insert := func(evs ...ev) {
		t.Helper()
		var rows []string
		for i, e := range evs {
			if e.version == 0 {
				e.version = 1
			}
			at := time.UnixMilli(int64(e.at)).UTC()
			rows = append(rows, fmt.Sprintf("(%s, toUUID(%s), %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %d, %s, %s, %s, %s, %g, %s, %s, %s, %s, %d, %d, %d, %s)",
				lit(app), lit(e.id), lit(e.kind), lit(e.typ), lit(e.status), lit(e.name), lit(e.user), lit(e.ip), lit(e.device), lit(e.fp), lit(e.props),
				lit(at.Format("2006-01-02 15:04:05")), e.at, lit("Chrome"), lit("Mac OS X"), lit("desktop"), lit(e.action), e.risk,
				arr(e.signals), arr(e.cnames), farr(e.cvalues), lit("pol-1"), 0, i, e.version, lit(e.target)))
		}
		query(t, c, `INSERT INTO moat.events (app_id, id, kind, type, status, name, user_id, ip, device_token, fingerprint, properties,
    received_at, received_at_ms, ua_browser, ua_os, ua_device_type, action, risk,
    signals, contribution_names, contribution_values, policy_id, kafka_partition, kafka_offset, version, target_device_token) VALUES `+strings.Join(rows, ",\n"))
	}
	insert(events...)
	insert(dup) // a separate insert makes a separate part: FINAL must fold it

	t.Run("events FINAL dedups", func(t *testing.T) {
		if got := query(t, c, "SELECT count() FROM moat.events FINAL WHERE app_id = '"+app+"'"); got != strconv.Itoa(len(events)) {
			t.Errorf("count() FINAL = %s, want %d", got, len(events))
		}
		if got := query(t, c, "SELECT count() FROM moat.events FINAL"); got != strconv.Itoa(len(events)) {
			t.Errorf("count() FINAL (all apps) = %s, want %d", got, len(events))
		}
		if got := query(t, c, "SELECT version FROM moat.events FINAL WHERE id = toUUID('"+riskID+"')"); got != "2" {
			t.Errorf("FINAL kept version %s of the duplicate, want the newest (2)", got)
		}
		if got := query(t, c, "SELECT count() FROM moat.events WHERE app_id = '"+app+"'"); got != strconv.Itoa(len(events)+1) && got != strconv.Itoa(len(events)) {
			t.Errorf("count() without FINAL = %s, want %d (before merge) or %d", got, len(events)+1, len(events))
		}
		// Defaults of columns added by ALTER (0003, 0004) read back on new rows.
		if got := query(t, c, "SELECT score_bot, length(signals), ip_asn, target_device_token = '' FROM moat.events FINAL WHERE id = toUUID('"+riskID+"')"); got != "0\t2\t0\t1" {
			t.Errorf("added columns = %q", got)
		}
	})

	t.Run("devices_state and devices aggregate", func(t *testing.T) {
		got := query(t, c, "SELECT user_id, device_token, fingerprint, first_seen_ms, last_seen_ms, last_ip, ua_browser, event_count FROM moat.devices_state WHERE app_id = '"+app+"' ORDER BY user_id, device_token")
		want := strings.Join([]string{
			fmt.Sprintf("u1\ttok-a\tfp-1\t%d\t%d\t203.0.113.2\tChrome\t2", events[1].at, events[3].at),
			fmt.Sprintf("u1\ttok-b\tfp-2\t%d\t%d\t203.0.113.4\tChrome\t2", events[4].at, events[5].at),
			fmt.Sprintf("u3\ttok-c\tfp-1\t%d\t%d\t203.0.113.1\tChrome\t1", events[2].at, events[2].at),
		}, "\n")
		if got != want {
			t.Errorf("devices_state:\n got %q\nwant %q", got, want)
		}
		got = query(t, c, "SELECT device_token, uniqExactMerge(event_ids), maxMerge(last_seen_ms), argMaxMerge(last_ip) FROM moat.devices WHERE app_id = '"+app+"' AND user_id = 'u1' GROUP BY device_token ORDER BY device_token")
		want = fmt.Sprintf("tok-a\t2\t%d\t203.0.113.2\ntok-b\t2\t%d\t203.0.113.4", events[3].at, events[5].at)
		if got != want {
			t.Errorf("devices -Merge:\n got %q\nwant %q", got, want)
		}
		// device_users (0008) maps each token to its user.
		if got := query(t, c, "SELECT user_id FROM moat.device_users FINAL WHERE app_id = '"+app+"' AND device_token = 'tok-c'"); got != "u3" {
			t.Errorf("device_users tok-c = %q, want u3", got)
		}
	})

	// Sessions (0006), inserted after the checks of the rows above: u1
	// logs in on tok-a (session s-1 starts), then logs out; the logout row
	// is inserted twice (a redelivery).
	sessionRow := func(id string, at uint64, typ, status, reason string, ended uint64) string {
		return fmt.Sprintf("(%s, toUUID(%s), 'track', %s, 'u1', %s, %d, '', '', ['s-uuid-1'], ['s-1'], ['tok-a'], [%s], [%s], [%d], [%d], [%d], 1)",
			lit(app), lit(id), lit(typ), lit(time.UnixMilli(int64(at)).UTC().Format("2006-01-02 15:04:05")), at, lit(status), lit(reason), ms(-45*time.Minute), at, ended)
	}
	loginAt, logoutAt := ms(-45*time.Minute), ms(-44*time.Minute)
	for _, rows := range []string{
		sessionRow("00000000-0000-4000-8000-000000000011", loginAt, "$login", "active", "", 0) + ",\n" + sessionRow("00000000-0000-4000-8000-000000000012", logoutAt, "$logout", "finished", "logout", logoutAt),
		sessionRow("00000000-0000-4000-8000-000000000012", logoutAt, "$logout", "finished", "logout", logoutAt),
	} {
		query(t, c, `INSERT INTO moat.events (app_id, id, kind, type, user_id, received_at, received_at_ms, device_token, fingerprint,
    session_uuids, session_ids, session_device_tokens, session_statuses, session_reasons, session_started_ms, session_last_activity_ms, session_ended_ms, version) VALUES `+rows)
	}
	t.Run("sessions_state folds session changes", func(t *testing.T) {
		got := query(t, c, "SELECT session_id, device_token, started_ms, last_activity_ms, ended_ms, status, end_reason FROM moat.sessions_state WHERE app_id = '"+app+"'")
		want := fmt.Sprintf("s-1\ttok-a\t%d\t%d\t%d\tfinished\tlogout", loginAt, logoutAt, logoutAt)
		if got != want {
			t.Errorf("sessions_state:\n got %q\nwant %q", got, want)
		}
	})
	t.Run("docs/analytics.md queries", func(t *testing.T) {
		doc, err := os.ReadFile("../../docs/analytics.md")
		if err != nil {
			t.Fatal(err)
		}
		blocks := regexp.MustCompile("(?s)```sql\n(.*?)```").FindAllStringSubmatch(string(doc), -1)
		if len(blocks) < 5 {
			t.Fatalf("only %d sql blocks in docs/analytics.md", len(blocks))
		}
		// The documented queries name tables without a database.
		query(t, c, "USE moat")
		for i, b := range blocks {
			q := strings.ReplaceAll(b[1], "'default'", "'"+app+"'")
			out, err := c.Query(q, "TabSeparated")
			if err != nil {
				t.Errorf("analytics.md query %d fails on ClickHouse %s:\n%v\nSQL:\n%s", i+1, c.Version(), err, q)
				continue
			}
			// Every query matches the rows above; no rows means the engine
			// reads the SQL differently from 18.16.
			if rows := strings.Count(string(out), "\n"); rows == 0 {
				t.Errorf("analytics.md query %d returned no rows on data that should match:\n%s", i+1, q)
			} else {
				t.Logf("analytics.md query %d: %d rows", i+1, rows)
			}
		}
	})
}
