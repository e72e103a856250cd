package chserver_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/moat-dev/moat/internal/chserver"
	"github.com/moat-dev/moat/internal/chstore"
)

// needBinary skips the test when no ClickHouse is installed, except under
// CI=true, where a missing binary fails the test.
func needBinary(t *testing.T) {
	t.Helper()
	if _, _, err := chserver.FindBinary(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true but ClickHouse is not installed: %v", err)
		}
		t.Skipf("ClickHouse not installed: %v", err)
	}
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func start(t *testing.T, cfg chserver.Config) *chserver.Server {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	begin := time.Now()
	s, err := chserver.Start(ctx, cfg)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Logf("server started in %v at %s", time.Since(begin).Round(time.Millisecond), s.Addr())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := s.Stop(ctx); err != nil {
			t.Errorf("Stop: %v", err)
		}
	})
	return s
}

func open(t *testing.T, addr string) driver.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := chstore.Open(ctx, chstore.Options{Addr: addr, Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func countRows(t *testing.T, addr string) uint64 {
	t.Helper()
	conn := open(t, addr)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var n uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM keep.t").Scan(&n); err != nil {
		t.Fatalf("count rows: %v", err)
	}
	return n
}

func TestStartStopRestartKeepsData(t *testing.T) {
	needBinary(t)
	dir := t.TempDir()
	s := start(t, chserver.Config{Dir: dir, Logger: testLogger(t)})

	cfg := s.Config()
	if cfg.Host != "127.0.0.1" || cfg.TCPPort == 0 || cfg.HTTPPort == 0 || cfg.InterserverPort == 0 || cfg.Binary == "" {
		t.Fatalf("Config() not filled in: %+v", cfg)
	}
	if want := net.JoinHostPort("127.0.0.1", strconv.Itoa(cfg.TCPPort)); s.Addr() != want {
		t.Fatalf("Addr() = %q, want %q", s.Addr(), want)
	}
	for _, f := range []string{chserver.ConfigFile, chserver.UsersFile, chserver.OutputFile, "data", "logs/" + chserver.LogFile} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("expected %s in Dir: %v", f, err)
		}
	}

	conn := open(t, s.Addr())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, q := range []string{
		"CREATE DATABASE IF NOT EXISTS keep",
		"CREATE TABLE IF NOT EXISTS keep.t (n UInt64, s String) ENGINE = MergeTree() ORDER BY n",
	} {
		if err := conn.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	batch, err := conn.PrepareBatch(ctx, "INSERT INTO keep.t (n, s)")
	if err != nil {
		t.Fatalf("PrepareBatch: %v", err)
	}
	if n := len(batch.Columns()); n != 2 {
		t.Fatalf("batch has %d columns, want 2", n)
	}
	for i := range 10 {
		if err := batch.Append(uint64(i), "row"); err != nil {
			t.Fatalf("Append: %v", err)
		}
	}
	if err := batch.Send(); err != nil {
		t.Fatalf("Send: %v", err)
	}

	// Stop, check it is down, start the same Server again.
	begin := time.Now()
	if err := s.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	t.Logf("server stopped in %v", time.Since(begin).Round(time.Millisecond))
	if s.Running() {
		t.Fatal("Running() after Stop")
	}
	if c, err := net.DialTimeout("tcp", s.Addr(), time.Second); err == nil {
		c.Close()
		t.Fatal("native port still answers after Stop")
	}
	if err := s.Stop(ctx); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	begin = time.Now()
	if err := s.Start(ctx); err != nil {
		t.Fatalf("restart: %v", err)
	}
	t.Logf("server restarted in %v", time.Since(begin).Round(time.Millisecond))
	if err := s.Start(ctx); err == nil {
		t.Fatal("Start on a running server: want an error")
	}
	if got := countRows(t, s.Addr()); got != 10 {
		t.Fatalf("after restart: %d rows, want 10", got)
	}

	// Kill it, then start a new Server on the same Dir and ports.
	s.Kill()
	if s.Running() {
		t.Fatal("Running() after Kill")
	}
	s2 := start(t, cfg)
	if s2.Addr() != s.Addr() {
		t.Fatalf("new server at %s, want %s", s2.Addr(), s.Addr())
	}
	if got := countRows(t, s2.Addr()); got != 10 {
		t.Fatalf("after kill and start: %d rows, want 10", got)
	}
}

func TestStartReportsEarlyExit(t *testing.T) {
	needBinary(t)
	// Hold the TCP port so the server cannot listen on it.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	s, err := chserver.Start(ctx, chserver.Config{Dir: t.TempDir(), TCPPort: port, Logger: testLogger(t)})
	if err == nil {
		s.Kill()
		t.Fatal("Start succeeded on a taken port")
	}
	t.Logf("error: %v", err)
	if !strings.Contains(err.Error(), "exited during start-up") || !strings.Contains(err.Error(), "log tail") {
		t.Fatalf("error does not report the early exit: %v", err)
	}
	if !strings.Contains(strings.ToLower(err.Error()), "address already in use") {
		t.Errorf("error does not include the server's reason: %v", err)
	}
}

func TestStartBadBinary(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := chserver.Start(ctx, chserver.Config{Dir: t.TempDir(), Binary: filepath.Join(t.TempDir(), "no-such-clickhouse")})
	if err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Start with a missing binary: err = %v, want not exist", err)
	}
	if _, err := chserver.Start(ctx, chserver.Config{}); err == nil {
		t.Fatal("Start without Dir: want an error")
	}
}

func TestStartHonoursContext(t *testing.T) {
	needBinary(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	s, err := chserver.Start(ctx, chserver.Config{Dir: t.TempDir(), Logger: testLogger(t)})
	if err == nil {
		s.Kill()
		t.Fatal("Start with a cancelled context succeeded")
	}
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

// TestNiceAppliesToEveryThread starts a server with Nice and checks the
// niceness of each of its threads, those started by queries included.
func TestNiceAppliesToEveryThread(t *testing.T) {
	needBinary(t)
	s := start(t, chserver.Config{Dir: t.TempDir(), Logger: testLogger(t), Nice: 7})
	conn := open(t, s.Addr())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var n uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM (SELECT number FROM system.numbers LIMIT 1000000) WHERE number % 7 = 0").Scan(&n); err != nil {
		t.Fatalf("query: %v", err)
	}
	pid := s.Pid()
	if pid == 0 {
		t.Fatal("Pid() = 0 for a running server")
	}
	tasks, err := filepath.Glob(filepath.Join("/proc", strconv.Itoa(pid), "task", "*", "stat"))
	if err != nil || len(tasks) < 2 {
		t.Fatalf("threads of %d: %v %v", pid, tasks, err)
	}
	for _, f := range tasks {
		b, err := os.ReadFile(f)
		if err != nil {
			continue // the thread ended
		}
		// Fields after the command name (in parentheses, which may hold
		// spaces): state is field 3, nice field 19.
		rest := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
		if len(rest) < 17 {
			t.Fatalf("%s: short stat line %q", f, b)
		}
		if rest[16] != "7" {
			t.Errorf("%s: nice %s, want 7", f, rest[16])
		}
	}
}
