// Package chtest gives tests a real ClickHouse: one local server per test
// binary (or the one at $CLICKHOUSE_ADDR) and a fresh, migrated database per
// test. Import it only from _test.go files.
//
// Use it from TestMain:
//
//	func TestMain(m *testing.M) { chtest.Main(m) }
//
// then, in a test:
//
//	conn, db := chtest.NewDatabase(t)
//
// Without a ClickHouse binary, tests that need one are skipped with the
// reason, except under CI=true, where Main fails the run instead: CI must
// never pass by skipping.
package chtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/moat-dev/moat/internal/chserver"
	"github.com/moat-dev/moat/internal/chstore"
	"github.com/moat-dev/moat/schemas"
)

// EnvAddr names the environment variable with the host:port (native
// protocol) of an existing server to use instead of starting one.
const EnvAddr = "CLICKHOUSE_ADDR"

var (
	mu         sync.Mutex
	addr       string
	server     *chserver.Server
	skipReason string
	mainCalled bool
)

// Main runs the package's tests with a ClickHouse server: the one at
// $CLICKHOUSE_ADDR, or else one started in a temporary directory on free
// ports for the whole run and stopped afterwards. It calls os.Exit.
func Main(m *testing.M) {
	os.Exit(run(m))
}

// Run is Main without the exit, for a TestMain with cleanup of its own: it
// returns the exit code.
func Run(m *testing.M) int { return run(m) }

func run(m *testing.M) int {
	mu.Lock()
	mainCalled = true
	mu.Unlock()
	log := logger()
	if a := strings.TrimSpace(os.Getenv(EnvAddr)); a != "" {
		setAddr(a, nil, "")
		return m.Run()
	}
	if _, _, err := chserver.FindBinary(); err != nil {
		if isCI() {
			fmt.Fprintf(os.Stderr, "chtest: FATAL: CI=true but ClickHouse is not installed: %v\n"+
				"chtest: install it before the tests, or set %s to a running server.\n", err, EnvAddr)
			return 1
		}
		setAddr("", nil, fmt.Sprintf("ClickHouse not available: %v, or set %s", err, EnvAddr))
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "moat-chtest-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "chtest: create temp dir: %v\n", err)
		return 1
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithTimeout(context.Background(), 2*chserver.StartTimeout)
	srv, err := chserver.Start(ctx, chserver.Config{Dir: dir, Logger: log})
	cancel()
	if err != nil {
		// An installed server that does not start is a failure everywhere,
		// not a reason to skip.
		fmt.Fprintf(os.Stderr, "chtest: start ClickHouse: %v\n", err)
		return 1
	}
	setAddr(srv.Addr(), srv, "")
	code := m.Run()
	ctx, cancel = context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.Stop(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "chtest: stop ClickHouse: %v\n", err)
	}
	return code
}

func setAddr(a string, s *chserver.Server, reason string) {
	mu.Lock()
	defer mu.Unlock()
	addr, server, skipReason = a, s, reason
}

func isCI() bool {
	v := strings.ToLower(strings.TrimSpace(os.Getenv("CI")))
	return v == "true" || v == "1"
}

// logger logs warnings and errors to stderr (everything with
// CHTEST_DEBUG set); the server's own log stays in its directory.
func logger() *slog.Logger {
	level := slog.LevelWarn
	if os.Getenv("CHTEST_DEBUG") != "" {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

// Addr returns host:port of the server's native protocol. It skips the test
// when ClickHouse is not available, and fails it when TestMain does not call
// Main.
func Addr(t testing.TB) string {
	t.Helper()
	mu.Lock()
	a, reason, called := addr, skipReason, mainCalled
	mu.Unlock()
	switch {
	case a != "":
		return a
	case reason != "":
		t.Skip("chtest: " + reason)
	case !called:
		t.Fatal("chtest: the package's TestMain must call chtest.Main(m)")
	default:
		t.Fatal("chtest: no ClickHouse address")
	}
	return ""
}

// Server returns the server Main started, so fault tests can Stop and
// Start it; nil when $CLICKHOUSE_ADDR is used or ClickHouse is missing.
func Server() *chserver.Server {
	mu.Lock()
	defer mu.Unlock()
	return server
}

// Open opens a connection to the test server with database as its default
// database ("" for default), closed when the test ends.
func Open(t testing.TB, database string) driver.Conn {
	t.Helper()
	a := Addr(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := chstore.Open(ctx, chstore.Options{Addr: a, Database: database, Logger: logger()})
	if err != nil {
		t.Fatalf("chtest: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// NewDatabase creates a database test_<random hex>, applies the migrations
// to it and returns a connection whose default database it is, with the
// name. When the test ends the database is dropped and the connection
// closed.
func NewDatabase(t testing.TB) (driver.Conn, string) {
	t.Helper()
	a := Addr(t)
	name := "test_" + randomHex(8)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	log := logger()
	// Connect without the database first: it does not exist yet.
	admin, err := chstore.Open(ctx, chstore.Options{Addr: a, Logger: log})
	if err != nil {
		t.Fatalf("chtest: %v", err)
	}
	err = chstore.Migrate(ctx, admin, name, log)
	admin.Close()
	if err != nil {
		dropDatabase(t, a, name)
		t.Fatalf("chtest: %v", err)
	}
	conn, err := chstore.Open(ctx, chstore.Options{Addr: a, Database: name, Logger: log})
	if err != nil {
		dropDatabase(t, a, name)
		t.Fatalf("chtest: %v", err)
	}
	t.Cleanup(func() {
		conn.Close()
		dropDatabase(t, a, name)
	})
	return conn, name
}

// dropDatabase drops name on a fresh connection (the test may have
// restarted the server, breaking pooled ones).
func dropDatabase(t testing.TB, addr, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := chstore.Open(ctx, chstore.Options{Addr: addr, Logger: logger()})
	if err != nil {
		t.Errorf("chtest: drop database %s: %v", name, err)
		return
	}
	defer conn.Close()
	if err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+schemas.QuoteIdent(name)); err != nil {
		t.Errorf("chtest: drop database %s: %v", name, err)
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}
