package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/moat-dev/moat/internal/chserver"
	"github.com/moat-dev/moat/internal/chstore"
)

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// devProcess is one `moat dev` run.
type devProcess struct {
	cmd    *exec.Cmd
	output *syncBuilder
	ready  chan string
}

// syncBuilder is a strings.Builder safe for one writer and readers.
type syncBuilder struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuilder) WriteString(v string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.b.WriteString(v)
}

func (s *syncBuilder) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func startDev(t *testing.T, bin string, args ...string) *devProcess {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"dev", "--log-format", "text"}, args...)...)
	cmd.Env = append(os.Environ(), "MOAT_API_SECRET=")
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	p := &devProcess{cmd: cmd, output: &syncBuilder{}, ready: make(chan string, 1)}
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			line := sc.Text()
			p.output.WriteString(line + "\n")
			if strings.Contains(line, "API secret:") {
				f := strings.Fields(line)
				p.ready <- f[len(f)-1]
			}
		}
	}()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
		pw.Close()
	})
	return p
}

func (p *devProcess) waitReady(t *testing.T) string {
	t.Helper()
	select {
	case s := <-p.ready:
		if !strings.Contains(p.output.String(), "ready") {
			t.Fatalf("no ready line:\n%s", p.output)
		}
		return s
	case <-time.After(90 * time.Second):
		t.Fatalf("moat dev not ready:\n%s", p.output)
	}
	return ""
}

func (p *devProcess) terminate(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("moat dev exited with %v:\n%s", err, p.output)
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("moat dev did not stop on SIGTERM:\n%s", p.output)
	}
}

// TestDevEndToEnd runs the real binary the way README's `make run` does:
// a track call becomes a ClickHouse row within seconds, SIGTERM stops
// everything (the ClickHouse child included), and a restart keeps the
// secret and every event.
func TestDevEndToEnd(t *testing.T) {
	if _, _, err := chserver.FindBinary(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "moat")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	httpAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	chPort := freePort(t)
	args := []string{"--data-dir", filepath.Join(dir, "data"), "--http-addr", httpAddr,
		"--kafka-port", fmt.Sprint(freePort(t)), "--clickhouse-port", fmt.Sprint(chPort)}

	p := startDev(t, bin, args...)
	secret := p.waitReady(t)
	if len(secret) != 32 {
		t.Fatalf("secret %q", secret)
	}
	req, _ := http.NewRequest("POST", "http://"+httpAddr+"/v1/track", strings.NewReader(
		`{"event":"$login.succeeded","user_id":"u1","context":{"ip":"8.8.8.8","headers":{"User-Agent":"curl/8"}}}`))
	req.SetBasicAuth("", secret)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 204 {
		t.Fatalf("track: %d", res.StatusCode)
	}
	chAddr := fmt.Sprintf("127.0.0.1:%d", chPort)
	count := func() uint64 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		conn, err := chstore.Open(ctx, chstore.Options{Addr: chAddr})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		var n uint64
		if err := conn.QueryRow(ctx, "SELECT count() FROM moat.events FINAL WHERE app_id = 'default' AND user_id = 'u1'").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	deadline := time.Now().Add(10 * time.Second)
	for count() != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("the event did not reach ClickHouse:\n%s", p.output)
		}
		time.Sleep(100 * time.Millisecond)
	}
	p.terminate(t)
	if c, err := net.DialTimeout("tcp", chAddr, time.Second); err == nil {
		c.Close()
		t.Fatal("ClickHouse still answers after moat dev stopped")
	}

	p2 := startDev(t, bin, args...)
	if s := p2.waitReady(t); s != secret {
		t.Fatalf("secret changed across restarts: %q then %q", secret, s)
	}
	time.Sleep(time.Second) // a replay of the log would show up as a second row
	if n := count(); n != 1 {
		t.Fatalf("%d rows after restart, want 1", n)
	}
	p2.terminate(t)
}
