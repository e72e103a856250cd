package chserver_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/moat-dev/moat/internal/chserver"
)

// TestClusterConfig: a server given a Cluster lists it in system.clusters
// ("" is the server itself, which it knows as local) with its macros, and
// SetCluster takes effect at the next start.
func TestClusterConfig(t *testing.T) {
	needBinary(t)
	s := start(t, chserver.Config{Dir: t.TempDir(), Logger: testLogger(t),
		Cluster: &chserver.Cluster{Name: "moat_self", Shards: []string{""}, Shard: "07", Replica: "r9"}})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	row := func(q string) string {
		t.Helper()
		rows, err := open(t, s.Addr()).Query(ctx, q)
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		defer rows.Close()
		var out []string
		for rows.Next() {
			var a, b string
			if err := rows.Scan(&a, &b); err != nil {
				t.Fatal(err)
			}
			out = append(out, a+" "+b)
		}
		return strings.Join(out, "; ")
	}
	port := s.Addr()[strings.LastIndex(s.Addr(), ":")+1:]
	if got, want := row("SELECT cluster, concat(host_address, ':', toString(port), ' local=', toString(is_local)) FROM system.clusters WHERE cluster LIKE 'moat%'"), "moat_self 127.0.0.1:"+port+" local=1"; got != want {
		t.Errorf("system.clusters: %q, want %q", got, want)
	}
	if got := row("SELECT macro, substitution FROM system.macros ORDER BY macro"); got != "replica r9; shard 07" {
		t.Errorf("system.macros: %q", got)
	}
	// A Distributed table over the server itself works.
	conn := open(t, s.Addr())
	for _, q := range []string{
		"CREATE DATABASE c",
		"CREATE TABLE c.t_local (k String) ENGINE = MergeTree() ORDER BY k",
		"CREATE TABLE c.t AS c.t_local ENGINE = Distributed('moat_self', 'c', 't_local', cityHash64(k))",
	} {
		if err := conn.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	b, err := conn.PrepareBatch(ctx, "INSERT INTO c.t (k)")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"a", "b"} {
		if err := b.Append(k); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Send(); err != nil {
		t.Fatal(err)
	}
	var n uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM c.t").Scan(&n); err != nil || n != 2 {
		t.Fatalf("count() through the Distributed table = %d, %v", n, err)
	}

	s.SetCluster(&chserver.Cluster{Name: "moat_two", Shards: []string{"", "127.0.0.1:1"}})
	if err := s.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if got, want := row("SELECT cluster, toString(count()) FROM system.clusters WHERE cluster LIKE 'moat%' GROUP BY cluster"), "moat_two 2"; got != want {
		t.Errorf("after SetCluster: %q, want %q", got, want)
	}
	if got := row("SELECT macro, substitution FROM system.macros ORDER BY macro"); got != "replica r1; shard 01" {
		t.Errorf("default macros: %q", got)
	}

	for _, bad := range []*chserver.Cluster{{Name: "a b", Shards: []string{""}}, {Name: "x"}, {Name: "x", Shards: []string{"nohost"}}} {
		_, err := chserver.Start(ctx, chserver.Config{Dir: t.TempDir(), Cluster: bad})
		if err == nil || !strings.Contains(err.Error(), "cluster") {
			t.Errorf("Start with cluster %+v: %v, want an error", bad, err)
		}
	}
}
