package chtest_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/moat-dev/moat/internal/chtest"
)

func TestMain(m *testing.M) { chtest.Main(m) }

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return c
}

func TestNewDatabaseCreatesAndDrops(t *testing.T) {
	admin := chtest.Open(t, "")
	var name string
	t.Run("use", func(t *testing.T) {
		conn, db := chtest.NewDatabase(t)
		name = db
		if !strings.HasPrefix(db, "test_") {
			t.Fatalf("database %q: want a test_ prefix", db)
		}
		var current string
		if err := conn.QueryRow(ctx(t), "SELECT currentDatabase()").Scan(&current); err != nil {
			t.Fatal(err)
		}
		if current != db {
			t.Fatalf("connection's database is %q, want %q", current, db)
		}
		var n uint64
		if err := conn.QueryRow(ctx(t), "SELECT count() FROM system.tables WHERE database = ? AND name = 'events'", db).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 1 {
			t.Fatalf("events table missing in %s", db)
		}
	})
	var n uint64
	if err := admin.QueryRow(ctx(t), "SELECT count() FROM system.databases WHERE name = ?", name).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("database %s still exists after the test ended", name)
	}
}

func TestServerRestartKeepsDatabase(t *testing.T) {
	srv := chtest.Server()
	if srv == nil {
		if os.Getenv(chtest.EnvAddr) != "" {
			t.Skipf("%s is set: no server to restart", chtest.EnvAddr)
		}
		chtest.Addr(t) // skips with the reason when ClickHouse is missing
		t.Fatal("Server() is nil though Main started no external address")
	}
	if srv.Addr() != chtest.Addr(t) {
		t.Fatalf("Server().Addr() = %s, Addr() = %s", srv.Addr(), chtest.Addr(t))
	}
	conn, db := chtest.NewDatabase(t)
	if err := srv.Stop(ctx(t)); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if err := conn.Ping(ctx(t)); err == nil {
		t.Fatal("Ping succeeded while the server is stopped")
	}
	if err := srv.Start(ctx(t)); err != nil {
		t.Fatalf("Start: %v", err)
	}
	// A pooled connection from before the restart may fail once; the
	// driver then dials anew.
	var err error
	for i := 0; i < 3; i++ {
		if err = conn.Ping(ctx(t)); err == nil {
			break
		}
		t.Logf("ping after restart (try %d): %v", i+1, err)
	}
	if err != nil {
		t.Fatalf("Ping after restart: %v", err)
	}
	fresh := chtest.Open(t, db)
	var n uint64
	if err := fresh.QueryRow(ctx(t), "SELECT count() FROM schema_migrations").Scan(&n); err != nil {
		t.Fatalf("query after restart: %v", err)
	}
	if n == 0 {
		t.Fatal("schema_migrations empty after restart")
	}
}
