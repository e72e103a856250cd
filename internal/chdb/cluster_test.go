package chdb

import (
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/moat-dev/moat/internal/chstore"
	"github.com/moat-dev/moat/schemas"
)

// testCluster is a cluster of one shard, this engine itself, declared in
// the config testConn gives the engine. chDB has no ZooKeeper either:
// replicated tables and ON CLUSTER queries cannot run, Distributed tables
// can.
const testCluster = "moat_test"

const clusterConfig = `<clickhouse>
    <tcp_port>19999</tcp_port>
    <remote_servers>
        <` + testCluster + `>
            <shard><replica><host>127.0.0.1</host><port>19999</port></replica></shard>
        </` + testCluster + `>
    </remote_servers>
    <macros>
        <shard>01</shard>
        <replica>r1</replica>
    </macros>
</clickhouse>
`

// Error codes of current releases.
const (
	codeSyntaxError       = 62
	codeNotImplemented    = 48
	codeNoZooKeeper       = 225
	codeQueryIsProhibited = 392
)

func errCode(err error) int {
	var code int
	if err != nil {
		fmt.Sscanf(err.Error(), "Code: %d.", &code)
	}
	return code
}

// cityHashAB is cityHash64('app', 'u1'), the sharding of one user's rows:
// the 18.16 cluster test (internal/chstore) checks the same value, so
// servers of both generations send a user's rows to the same shard.
const cityHashAB = "7972680716031870104"

// TestClusterSchema checks the cluster form of every migration
// (schemas.ClusterMigrations) on a current engine: every statement parses
// (EXPLAIN AST), every replicated table's engine arguments pass the
// engine's checks up to the missing ZooKeeper (macros expanded, version
// and sorting columns found), and the whole form, run as one server of the
// cluster runs it (schemas.WithoutZooKeeper), serves the application's
// reads and writes through Distributed tables over a one-shard cluster.
func TestClusterSchema(t *testing.T) {
	c := testConn(t)
	const db = "moat_cluster"
	if got := query(t, c, "SELECT cluster, is_local FROM system.clusters WHERE cluster = '"+testCluster+"'"); got != testCluster+"\t1" {
		t.Fatalf("test cluster not configured: %q", got)
	}
	if got := query(t, c, "SELECT cityHash64('app', 'u1')"); got != cityHashAB {
		t.Errorf("cityHash64('app', 'u1') = %s, want %s (as on 18.16)", got, cityHashAB)
	}
	ms, err := schemas.ClusterMigrations(db, testCluster)
	if err != nil {
		t.Fatal(err)
	}
	stmts := chstore.PrepareStatements(db, testCluster)
	for _, m := range ms {
		stmts = append(stmts, m.Statements...)
	}
	replicated := 0
	for i, s := range stmts {
		if _, err := c.Query("EXPLAIN AST "+s, "TabSeparated"); err != nil {
			t.Fatalf("cluster statement %d does not parse on ClickHouse %s: %v\nSQL:\n%s", i+1, c.Version(), err, s)
		}
		if strings.Contains(s, " ON CLUSTER ") {
			// As given, it needs the distributed DDL queue (ZooKeeper).
			if _, err := c.Query(s, "TabSeparated"); errCode(err) != codeQueryIsProhibited {
				t.Errorf("cluster statement %d as given: %v, want code %d (no distributed DDL here)\nSQL:\n%s", i+1, err, codeQueryIsProhibited, s)
			}
		}
		if strings.Contains(s, "ENGINE = Replicated") {
			replicated++
			local := strings.ReplaceAll(s, " ON CLUSTER "+schemas.QuoteIdent(testCluster), "")
			if _, err := c.Query(local, "TabSeparated"); errCode(err) != codeNoZooKeeper {
				t.Errorf("replicated table of statement %d: %v, want only the missing ZooKeeper (code %d)\nSQL:\n%s", i+1, err, codeNoZooKeeper, local)
			}
		}
		if _, err := c.Query(schemas.WithoutZooKeeper(s, testCluster), "TabSeparated"); err != nil {
			t.Fatalf("cluster statement %d fails on one server: %v\nSQL:\n%s", i+1, err, schemas.WithoutZooKeeper(s, testCluster))
		}
	}
	tables, _ := schemas.SchemaTables()
	if replicated != len(tables)+1 { // and schema_migrations
		t.Errorf("%d replicated tables, want %d", replicated, len(tables)+1)
	}
	t.Logf("%d cluster statements parse and run on ClickHouse %s", len(stmts), c.Version())

	t.Run("rerunnable", func(t *testing.T) {
		for i, s := range stmts[2:] {
			_, err := c.Query(schemas.WithoutZooKeeper(s, testCluster), "TabSeparated")
			if err != nil && (!strings.Contains(s, "ADD COLUMN") || !chstore.IsDuplicateColumnCode(errCode(err))) {
				t.Errorf("statement %d, second run: %v", i+3, err)
			}
		}
	})

	for _, tb := range tables {
		if got := query(t, c, "SELECT engine FROM system.tables WHERE database = '"+db+"' AND name = '"+tb+"'"); got != "Distributed" {
			t.Errorf("%s is %q, want Distributed", tb, got)
		}
	}

	// Writes go through the Distributed tables, as the projector's do.
	const app = "app-cluster"
	const cols = "app_id, id, kind, type, status, user_id, ip, device_token, fingerprint, received_at, received_at_ms, ua_browser, risk, version"
	row := func(n int, user, device, ip string, atMs uint64, risk float64, version int) string {
		return fmt.Sprintf("('%s', toUUID('00000000-0000-4000-8000-%012d'), 'risk', '$login', '$succeeded', '%s', '%s', '%s', 'fp-%s', toDateTime(%d, 'UTC'), %d, 'Firefox', %g, %d)",
			app, n, user, ip, device, device, atMs/1000, atMs, risk, version)
	}
	const t0 = uint64(1_700_000_000_000)
	query(t, c, "INSERT INTO "+db+".events ("+cols+") VALUES "+strings.Join([]string{
		row(1, "u1", "tok-a", "198.51.100.1", t0, 0.1, 1),
		row(2, "u1", "tok-a", "198.51.100.2", t0+1000, 0.2, 1),
		row(3, "u1", "tok-b", "198.51.100.3", t0+2000, 0.3, 1),
		row(4, "u2", "tok-c", "198.51.100.4", t0+3000, 0.4, 1),
	}, ", "))
	// A redelivered decision: same sorting key, newer version, own part.
	query(t, c, "INSERT INTO "+db+".events ("+cols+") VALUES "+row(2, "u1", "tok-a", "198.51.100.2", t0+1000, 0.9, 2))
	// A session of u2 that started and ended.
	query(t, c, "INSERT INTO "+db+".events (app_id, id, kind, type, user_id, received_at, received_at_ms, version, session_uuids, session_ids, session_device_tokens, session_statuses, session_reasons, session_started_ms, session_last_activity_ms, session_ended_ms) VALUES "+
		fmt.Sprintf("('%s', toUUID('00000000-0000-4000-8000-000000000005'), 'track', '$logout', 'u2', toDateTime(%d, 'UTC'), %d, 1, ['s-uuid'], ['s-1'], ['tok-c'], ['finished'], ['logout'], [%d], [%d], [%d])",
			app, (t0+4000)/1000, t0+4000, t0+3000, t0+4000, t0+4000))

	checks := []struct{ name, sql, want string }{
		{"events FINAL folds the redelivery", "SELECT count(), sum(version) FROM " + db + ".events FINAL WHERE app_id = '" + app + "'", "5\t6"},
		{"the newest version wins", "SELECT risk FROM " + db + ".events FINAL WHERE app_id = '" + app + "' AND id = toUUID('00000000-0000-4000-8000-000000000002')", "0.9"},
		{"materialized views fill the local tables", "SELECT count() > 0 FROM " + db + "." + schemas.LocalTable("devices"), "1"},
		{"devices_state reads the Distributed devices", "SELECT user_id, device_token, last_ip, event_count FROM " + db + ".devices_state WHERE app_id = '" + app + "' ORDER BY user_id, device_token",
			"u1\ttok-a\t198.51.100.2\t2\nu1\ttok-b\t198.51.100.3\t1\nu2\ttok-c\t198.51.100.4\t1"},
		{"device_states", "SELECT device_token, minMerge(first_seen_ms), maxMerge(last_seen_ms), tupleElement(argMaxMerge(last_event), 1) FROM " + db + ".device_states WHERE app_id = '" + app + "' AND user_id = 'u1' GROUP BY device_token ORDER BY device_token",
			fmt.Sprintf("tok-a\t%d\t%d\t198.51.100.2\ntok-b\t%d\t%d\t198.51.100.3", t0, t0+1000, t0+2000, t0+2000)},
		{"device_users", "SELECT user_id FROM " + db + ".device_users FINAL WHERE app_id = '" + app + "' AND device_token = 'tok-c'", "u2"},
		{"sessions_state", "SELECT user_id, session_id, status, end_reason FROM " + db + ".sessions_state WHERE app_id = '" + app + "'", "u2\ts-1\tfinished\tlogout"},
	}
	for _, ck := range checks {
		if got := query(t, c, ck.sql); got != ck.want {
			t.Errorf("%s:\n got %q\nwant %q", ck.name, got, ck.want)
		}
	}

	t.Run("docs/analytics.md queries", func(t *testing.T) {
		doc, err := os.ReadFile("../../docs/analytics.md")
		if err != nil {
			t.Fatal(err)
		}
		query(t, c, "USE "+db)
		defer query(t, c, "USE default")
		for i, b := range regexp.MustCompile("(?s)```sql\n(.*?)```").FindAllStringSubmatch(string(doc), -1) {
			q := strings.ReplaceAll(b[1], "'default'", "'"+app+"'")
			if _, err := c.Query(q, "TabSeparated"); err != nil {
				t.Errorf("analytics.md query %d fails on the cluster form: %v\nSQL:\n%s", i+1, err, q)
			}
		}
	})

	// Erasure: a mutation of a Distributed table is refused; the projector
	// must mutate the local tables ON CLUSTER (schemas.MutationTarget).
	t.Run("erasure mutates the local tables", func(t *testing.T) {
		_, err := c.Query("ALTER TABLE "+db+".events DELETE WHERE app_id = '"+app+"' AND user_id = 'u2'", "TabSeparated")
		if errCode(err) != codeNotImplemented {
			t.Errorf("mutation of the Distributed table: %v, want code %d", err, codeNotImplemented)
		}
		target := schemas.MutationTarget(db, testCluster, "events")
		del := "ALTER TABLE " + target + " DELETE WHERE app_id = '" + app + "' AND user_id = 'u2'"
		if _, err := c.Query("EXPLAIN AST "+del, "TabSeparated"); err != nil {
			t.Fatalf("%s does not parse: %v", del, err)
		}
		query(t, c, schemas.WithoutZooKeeper(del, testCluster)+" SETTINGS mutations_sync = 1")
		if got := query(t, c, "SELECT uniqExact(user_id), count() FROM "+db+".events FINAL WHERE app_id = '"+app+"'"); got != "1\t3" {
			t.Errorf("after erasing u2: users, rows = %q, want 1 and 3", got)
		}
	})
	query(t, c, "DROP DATABASE "+db)
}
