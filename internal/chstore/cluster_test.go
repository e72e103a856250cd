package chstore_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/ClickHouse/clickhouse-go/v2/lib/proto"

	"github.com/moat-dev/moat/internal/chserver"
	"github.com/moat-dev/moat/internal/chstore"
	"github.com/moat-dev/moat/internal/chtest"
	"github.com/moat-dev/moat/schemas"
)

// Error codes of ClickHouse 18.16.
const (
	codeNotImplemented = 48
	// DDL background thread is not initialized: ON CLUSTER without
	// ZooKeeper, answered after the query parsed.
	codeNoDDLWorker = 49
	codeNoZooKeeper = 225
)

func exceptionCode(err error) int {
	var ex *proto.Exception
	if errors.As(err, &ex) {
		return int(ex.Code)
	}
	return 0
}

// twoShards starts two local servers forming the cluster name of two
// shards, one replica each (no ZooKeeper), and returns a connection to
// each.
func twoShards(t *testing.T, name string) []driver.Conn {
	t.Helper()
	chtest.Addr(t) // skips without ClickHouse (fails under CI)
	log := slog.New(slog.DiscardHandler)
	ctx, cancel := context.WithTimeout(context.Background(), 3*chserver.StartTimeout)
	defer cancel()
	var servers []*chserver.Server
	for range 2 {
		s, err := chserver.Start(ctx, chserver.Config{Dir: t.TempDir(), Logger: log})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := s.Stop(ctx); err != nil {
				t.Errorf("stop: %v", err)
			}
		})
		servers = append(servers, s)
	}
	// The servers learn each other's ports once both run: restart them
	// with the cluster.
	var conns []driver.Conn
	for i, s := range servers {
		s.SetCluster(&chserver.Cluster{Name: name, Shards: []string{servers[0].Addr(), servers[1].Addr()},
			Shard: fmt.Sprintf("%02d", i+1), Replica: "r1"})
		if err := s.Stop(ctx); err != nil {
			t.Fatal(err)
		}
		if err := s.Start(ctx); err != nil {
			t.Fatal(err)
		}
		conn, err := chstore.Open(ctx, chstore.Options{Addr: s.Addr(), Logger: log})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		conns = append(conns, conn)
	}
	return conns
}

func queryStrings(t *testing.T, conn driver.Conn, q string, args ...any) []string {
	t.Helper()
	rows, err := conn.Query(testCtx(t), q, args...)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	defer rows.Close()
	var out []string
	cols := len(rows.Columns())
	for rows.Next() {
		vals := make([]any, cols)
		ptrs := make([]any, cols)
		for i, ct := range rows.ColumnTypes() {
			switch ct.DatabaseTypeName() {
			case "String":
				ptrs[i] = new(string)
			case "UInt64":
				ptrs[i] = new(uint64)
			case "UInt8":
				ptrs[i] = new(uint8)
			default:
				t.Fatalf("%s: column type %s", q, ct.DatabaseTypeName())
			}
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		var parts []string
		for i := range vals {
			switch p := ptrs[i].(type) {
			case *string:
				parts = append(parts, *p)
			case *uint64:
				parts = append(parts, strconv.FormatUint(*p, 10))
			case *uint8:
				parts = append(parts, strconv.Itoa(int(*p)))
			}
		}
		out = append(out, strings.Join(parts, "\t"))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestMigrateClusterTwoShards runs the cluster form of the schema on a
// cluster of two ClickHouse 18.16 servers (two shards, one replica each).
// There is no ZooKeeper, so ON CLUSTER is emulated: MigrateCluster's DDL
// runs, as the distributed DDL queue would run it, on both servers, with
// the replicated engines made plain (schemas.WithoutZooKeeper). Before
// that, each statement as generated must get as far as ZooKeeper: the ON
// CLUSTER form parses and is refused for want of the DDL queue, and each
// replicated table's engine arguments pass 18.16's checks (macros, version
// and sorting columns) and fail only for want of ZooKeeper. Then the
// application's writes and reads go through the Distributed tables: every
// user's rows live on one shard, chosen by cityHash64(app_id, user_id),
// and FINAL, the aggregate views and erasure through the local tables give
// the single-server answers.
func TestMigrateClusterTwoShards(t *testing.T) {
	const cluster = "moat_test"
	nodes := twoShards(t, cluster)
	ctx := testCtx(t)
	db := fmt.Sprintf("test_cluster_%d", time.Now().UnixNano())
	t.Cleanup(func() {
		for _, n := range nodes {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			_ = n.Exec(ctx, "DROP DATABASE IF EXISTS "+schemas.QuoteIdent(db))
			cancel()
		}
	})
	onCluster := " ON CLUSTER " + schemas.QuoteIdent(cluster)
	var ran, replicated int
	restore := chstore.SetExecStatement(func(ctx context.Context, conn driver.Conn, stmt string) error {
		ran++
		if !strings.Contains(stmt, onCluster) {
			// Backfills run once, on the server migrating.
			return chstore.Exec(ctx, conn, stmt)
		}
		if err := conn.Exec(ctx, stmt); exceptionCode(err) != codeNoDDLWorker {
			t.Errorf("as generated: %v, want code %d (parsed, no DDL queue without ZooKeeper)\nSQL:\n%s", err, codeNoDDLWorker, stmt)
		}
		for i, n := range nodes {
			if strings.Contains(stmt, "ENGINE = Replicated") {
				local := strings.ReplaceAll(stmt, onCluster, "")
				err := n.Exec(ctx, local)
				if exceptionCode(err) == codeNoZooKeeper {
					replicated++
				} else if err != nil {
					t.Errorf("server %d: replicated table: %v, want only the missing ZooKeeper (code %d)\nSQL:\n%s", i+1, err, codeNoZooKeeper, local)
				}
			}
			if err := chstore.Exec(ctx, n, schemas.WithoutZooKeeper(stmt, cluster)); err != nil {
				return fmt.Errorf("server %d: %w", i+1, err)
			}
		}
		return nil
	})
	defer restore()

	if err := chstore.MigrateCluster(ctx, nodes[0], db, cluster, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	tables, err := schemas.SchemaTables()
	if err != nil {
		t.Fatal(err)
	}
	if want := 2 * (len(tables) + 1); replicated != want {
		t.Errorf("%d replicated tables reached ZooKeeper, want %d (every table and schema_migrations, on both servers)", replicated, want)
	}
	if got, want := mustApplied(t, nodes[0], db), allVersions(t); !slices.Equal(got, want) {
		t.Fatalf("Applied = %v, want %v", got, want)
	}
	ran = 0
	if err := chstore.MigrateCluster(ctx, nodes[0], db, cluster, nil); err != nil {
		t.Fatalf("second MigrateCluster: %v", err)
	}
	if ran != len(chstore.PrepareStatements(db, cluster)) {
		t.Errorf("second MigrateCluster ran %d statements, want only the %d that prepare", ran, len(chstore.PrepareStatements(db, cluster)))
	}
	restore()

	t.Run("the forms are not mixed", func(t *testing.T) {
		err := chstore.Migrate(ctx, nodes[1], db, nil)
		if !errors.Is(err, chstore.ErrLayout) {
			t.Errorf("single-server Migrate of the cluster database: %v, want ErrLayout", err)
		}
		single, name := chtest.NewDatabase(t)
		if err := chstore.MigrateCluster(ctx, single, name, cluster, nil); !errors.Is(err, chstore.ErrLayout) {
			t.Errorf("MigrateCluster of a single-server database: %v, want ErrLayout", err)
		}
		if err := chstore.MigrateCluster(ctx, single, name, "bad name", nil); err == nil {
			t.Error("MigrateCluster accepted a bad cluster name")
		}
	})

	for _, n := range nodes {
		for _, tb := range tables {
			if got := queryStrings(t, n, "SELECT engine FROM system.tables WHERE database = ? AND name = ?", db, tb); !slices.Equal(got, []string{"Distributed"}) {
				t.Errorf("%s is %v, want Distributed", tb, got)
			}
		}
	}

	// The projector's writes: through the Distributed events of server 1,
	// synchronously to both shards. 40 users, 3 events each on 2 devices;
	// user 0's first event is redelivered (newer version, own insert).
	const app, users = "app", 40
	q := "INSERT INTO " + schemas.QuoteIdent(db) + ".events (app_id, id, kind, type, user_id, ip, device_token, fingerprint, received_at, received_at_ms, risk, version, session_uuids, session_ids, session_device_tokens, session_statuses, session_reasons, session_started_ms, session_last_activity_ms, session_ended_ms)"
	sync := clickhouse.Context(ctx, clickhouse.WithSettings(clickhouse.Settings{"insert_distributed_sync": 1}))
	t0 := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	type ev struct {
		n, user, ev int
		version     uint64
	}
	insert := func(evs ...ev) {
		t.Helper()
		b, err := nodes[0].PrepareBatch(sync, q)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range evs {
			at := t0.Add(time.Duration(e.n) * time.Second)
			user := fmt.Sprintf("u%d", e.user)
			device := fmt.Sprintf("tok-%d-%d", e.user, e.ev%2)
			sess := fmt.Sprintf("s-%d", e.user)
			ended := uint64(0)
			status := "active"
			if e.ev == 2 {
				ended, status = uint64(at.UnixMilli()), "finished"
			}
			id := fmt.Sprintf("00000000-0000-4000-8000-%012d", e.n)
			if err := b.Append(app, id, "risk", "$login", user, fmt.Sprintf("198.51.100.%d", e.ev), device, "fp", at, uint64(at.UnixMilli()), 0.5, e.version,
				[]string{sess}, []string{sess}, []string{device}, []string{status}, []string{""}, []uint64{uint64(t0.UnixMilli())}, []uint64{uint64(at.UnixMilli())}, []uint64{ended}); err != nil {
				t.Fatal(err)
			}
		}
		if err := b.Send(); err != nil {
			t.Fatal(err)
		}
	}
	var all []ev
	for u := range users {
		for e := range 3 {
			all = append(all, ev{n: u*3 + e, user: u, ev: e, version: 1})
		}
	}
	insert(all...)
	insert(ev{n: 0, user: 0, ev: 0, version: 2})

	t.Run("a user's rows live on one shard, chosen by cityHash64(app_id, user_id)", func(t *testing.T) {
		if got := queryStrings(t, nodes[0], "SELECT toString(cityHash64('app', 'u1'))"); got[0] != "7972680716031870104" {
			t.Errorf("cityHash64('app', 'u1') = %s, want the value chDB (a current release) gives", got[0])
		}
		seen := map[string]int{}
		for i, n := range nodes {
			for _, tb := range []string{"events", "devices", "device_states", "device_users", "sessions"} {
				rows := queryStrings(t, n, "SELECT DISTINCT user_id, toString(cityHash64(app_id, user_id) % 2) FROM "+schemas.QuoteIdent(db)+"."+schemas.LocalTable(tb))
				if len(rows) == 0 || len(rows) == users {
					t.Errorf("server %d holds %d users' %s: the rows are not spread", i+1, len(rows), tb)
				}
				for _, r := range rows {
					user, slot, _ := strings.Cut(r, "\t")
					if slot != strconv.Itoa(i) {
						t.Errorf("%s: %s on server %d, its hash says shard %s", tb, user, i+1, slot)
					}
					if tb == "events" {
						seen[user]++
					}
				}
			}
		}
		if len(seen) != users {
			t.Errorf("%d users stored, want %d", len(seen), users)
		}
		for u, n := range seen {
			if n != 1 {
				t.Errorf("%s's events on %d shards", u, n)
			}
		}
	})

	t.Run("reads through the Distributed tables, from either server", func(t *testing.T) {
		d := schemas.QuoteIdent(db)
		for i, n := range nodes {
			checks := []struct {
				sql  string
				want []string
			}{
				{"SELECT count(), sum(version) FROM " + d + ".events FINAL WHERE app_id = 'app'", []string{fmt.Sprintf("%d\t%d", 3*users, 3*users+1)}},
				{"SELECT count() FROM " + d + ".events WHERE app_id = 'app' AND user_id = 'u0'", []string{"4"}},
				{"SELECT device_token, toString(event_count), last_ip FROM " + d + ".devices_state WHERE app_id = 'app' AND user_id = 'u7' ORDER BY device_token",
					[]string{"tok-7-0\t2\t198.51.100.2", "tok-7-1\t1\t198.51.100.1"}},
				{"SELECT device_token, tupleElement(argMaxMerge(last_event), 1) FROM " + d + ".device_states WHERE app_id = 'app' AND user_id = 'u7' GROUP BY device_token ORDER BY device_token",
					[]string{"tok-7-0\t198.51.100.2", "tok-7-1\t198.51.100.1"}},
				{"SELECT user_id FROM " + d + ".device_users FINAL WHERE app_id = 'app' AND device_token = 'tok-33-1'", []string{"u33"}},
				{"SELECT count(), countIf(status = 'finished') FROM " + d + ".sessions_state WHERE app_id = 'app'", []string{fmt.Sprintf("%d\t%d", users, users)}},
			}
			for _, c := range checks {
				if got := queryStrings(t, n, c.sql); !slices.Equal(got, c.want) {
					t.Errorf("server %d: %s\n got %q\nwant %q", i+1, c.sql, got, c.want)
				}
			}
		}
	})

	t.Run("erasure mutates the local tables of every shard", func(t *testing.T) {
		d := schemas.QuoteIdent(db)
		err := nodes[0].Exec(ctx, "ALTER TABLE "+d+".events DELETE WHERE app_id = 'app' AND user_id = 'u5'")
		if exceptionCode(err) != codeNotImplemented {
			t.Errorf("mutation of the Distributed table: %v, want code %d", err, codeNotImplemented)
		}
		del := "ALTER TABLE " + schemas.MutationTarget(db, cluster, "events") + " DELETE WHERE app_id = 'app' AND user_id = 'u5'"
		if err := nodes[0].Exec(ctx, del); exceptionCode(err) != codeNoDDLWorker {
			t.Errorf("%s: %v, want code %d (parsed, no DDL queue)", del, err, codeNoDDLWorker)
		}
		for _, n := range nodes {
			if err := n.Exec(ctx, schemas.WithoutZooKeeper(del, cluster)); err != nil {
				t.Fatal(err)
			}
		}
		deadline := time.Now().Add(30 * time.Second)
		for _, n := range nodes {
			for {
				got := queryStrings(t, n, "SELECT count() FROM system.mutations WHERE database = ? AND is_done = 0", db)
				if got[0] == "0" {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("mutations not done after 30 s")
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
		got := queryStrings(t, nodes[1], "SELECT uniqExact(user_id), count() FROM "+d+".events FINAL WHERE app_id = 'app'")
		if want := fmt.Sprintf("%d\t%d", users-1, 3*(users-1)); got[0] != want {
			t.Errorf("after erasing u5: users and rows %q, want %q", got[0], want)
		}
	})
}

func mustApplied(t *testing.T, conn driver.Conn, db string) []int {
	t.Helper()
	got, err := chstore.Applied(testCtx(t), conn, db)
	if err != nil {
		t.Fatal(err)
	}
	sort.Ints(got)
	return got
}
