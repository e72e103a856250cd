// Package chserver runs a local ClickHouse server process for `moat dev` and
// for tests.
//
// Start writes a small generated config.xml and users.xml into a directory,
// starts clickhouse-server with every path (data, tmp, logs, ...) under that
// directory, and waits until the native port answers a ping. The process is
// tied to its parent (it gets SIGKILL when the parent dies) and is tuned to
// stay small: it runs on developer machines next to everything else.
//
// The generated config works with ClickHouse 18.16 (Debian's package, whose
// configs have the <yandex> root element) and with current releases, which
// still accept it.
package chserver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
)

// StartTimeout bounds how long Start waits for the server to answer a ping.
const StartTimeout = 60 * time.Second

// File names inside Config.Dir.
const (
	ConfigFile = "config.xml"
	UsersFile  = "users.xml"
	// OutputFile receives the process's stdout and stderr (start-up errors
	// before the server's own logger is configured land here).
	OutputFile = "clickhouse-server.out"
	// LogFile and ErrorLogFile are the server's own (rotated) logs, in the
	// logs folder of Dir.
	LogFile      = "clickhouse-server.log"
	ErrorLogFile = "clickhouse-server.err.log"
)

// Config says where and how to run the server.
type Config struct {
	// Dir holds the generated configs, the data and the logs. It is created
	// if missing. Starting again with the same Dir keeps the data.
	Dir string
	// Host is the only address the server listens on (default 127.0.0.1).
	Host string
	// TCPPort (native protocol), HTTPPort and InterserverPort; 0 picks a
	// free port. Server.Config reports the ports actually used.
	TCPPort         int
	HTTPPort        int
	InterserverPort int
	// Binary is the server executable. Default: clickhouse-server on PATH
	// (or in /usr/sbin, /usr/bin), else `clickhouse` run as `clickhouse server`.
	Binary string
	// Logger receives the package's own messages (default slog.Default()).
	Logger *slog.Logger
	// Cluster, when set, declares a cluster in the server's remote_servers
	// and sets its {shard} and {replica} macros, for tests of the cluster
	// form of the schema. There is no ZooKeeper: Distributed tables work,
	// replicated tables and ON CLUSTER queries fail (after parsing).
	Cluster *Cluster
	// Nice, when above 0, is the CPU niceness the server's threads run at
	// (Linux: setpriority on its process group). On a machine it shares
	// with the request path, a niced server still gets every idle cycle
	// but yields the CPU to request handling when both want it; its
	// inserts then wait instead of stalling the calls. 0 leaves it as
	// inherited.
	Nice int
}

// Cluster is a cluster of servers, one replica per shard.
type Cluster struct {
	// Name is the cluster's name (letters, digits, '_', '-', '.').
	Name string
	// Shards are the native addresses (host:port) of the shards' servers;
	// "" stands for this server itself.
	Shards []string
	// Shard and Replica are this server's {shard} and {replica} macros
	// (default "01" and "r1").
	Shard, Replica string
}

// ErrBinaryNotFound is returned (wrapped) by Start and FindBinary when no
// ClickHouse server executable can be found.
var ErrBinaryNotFound = errors.New("chserver: no clickhouse-server or clickhouse binary found (install it with scripts/install-clickhouse.sh)")

// Server is a running (or stopped) local ClickHouse process.
type Server struct {
	cfg  Config
	args []string // extra args before --config-file (e.g. "server")
	log  *slog.Logger

	mu   sync.Mutex
	proc *process // the current (or last) process; nil before the first start
}

// process is one run of the server executable.
type process struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	err  error         // cmd.Wait's result; read only after done is closed
	// logStart holds the sizes of tailFiles before the process started.
	logStart map[string]int64
}

func (p *process) running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// FindBinary returns the server executable to run and the arguments that
// must precede the server's own flags: clickhouse-server on PATH, then in
// /usr/sbin and /usr/bin (often not on a non-root PATH), then the
// single-binary `clickhouse` with the argument "server".
func FindBinary() (path string, args []string, err error) {
	if p, err := exec.LookPath("clickhouse-server"); err == nil {
		return p, nil, nil
	}
	for _, p := range []string{"/usr/sbin/clickhouse-server", "/usr/bin/clickhouse-server", "/usr/local/bin/clickhouse-server"} {
		if isExecutable(p) {
			return p, nil, nil
		}
	}
	if p, err := exec.LookPath("clickhouse"); err == nil {
		return p, []string{"server"}, nil
	}
	for _, p := range []string{"/usr/bin/clickhouse", "/usr/local/bin/clickhouse"} {
		if isExecutable(p) {
			return p, []string{"server"}, nil
		}
	}
	return "", nil, ErrBinaryNotFound
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

// Start prepares cfg.Dir and starts the server, returning once the native
// port answers a ping (at most StartTimeout, or until ctx is done). If the
// process exits before that, the error includes the tail of its logs.
//
// The process gets SIGKILL when the OS thread that started it exits, which
// in Go means when the program exits: do not call Start from a goroutine
// that has locked its OS thread (runtime.LockOSThread) and then ends.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	if cfg.Dir == "" {
		return nil, errors.New("chserver: Config.Dir is required")
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("chserver: resolve dir %q: %w", cfg.Dir, err)
	}
	cfg.Dir = dir
	if cfg.Host == "" {
		cfg.Host = "127.0.0.1"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Server{log: cfg.Logger.With("component", "chserver")}
	if cfg.Binary == "" {
		bin, args, err := FindBinary()
		if err != nil {
			return nil, err
		}
		cfg.Binary, s.args = bin, args
	} else if filepath.Base(cfg.Binary) == "clickhouse" {
		s.args = []string{"server"}
	}
	// A port picked here may be taken by someone else before the server
	// binds it (parallel test binaries): then pick again.
	want := cfg
	for attempt := 1; ; attempt++ {
		cfg.TCPPort, cfg.HTTPPort, cfg.InterserverPort = want.TCPPort, want.HTTPPort, want.InterserverPort
		if err := pickPorts(cfg.Host, &cfg.TCPPort, &cfg.HTTPPort, &cfg.InterserverPort); err != nil {
			return nil, err
		}
		s.cfg = cfg
		err := s.Start(ctx)
		if err == nil {
			return s, nil
		}
		var ee *earlyExitError
		if attempt < 3 && ctx.Err() == nil && errors.As(err, &ee) && pickedPortTaken(ee.tail, want) {
			s.log.Warn("clickhouse port taken before it could bind, picking others", "attempt", attempt)
			continue
		}
		return nil, err
	}
}

var addrInUse = regexp.MustCompile(`Address already in use: \S*:(\d+)`)

// pickedPortTaken reports whether a log tail says a port could not be bound
// and that port is not one the caller asked for (so Start picked it).
func pickedPortTaken(tail string, want Config) bool {
	m := addrInUse.FindAllStringSubmatch(tail, -1)
	if len(m) == 0 {
		return false
	}
	for _, sub := range m {
		port, _ := strconv.Atoi(sub[1])
		if port == want.TCPPort || port == want.HTTPPort || port == want.InterserverPort {
			return false
		}
	}
	return true
}

// earlyExitError reports a server that exited before it answered a ping.
type earlyExitError struct {
	status error
	tail   string
}

func (e *earlyExitError) Error() string {
	return fmt.Sprintf("chserver: clickhouse-server exited during start-up (%v); log tail:\n%s", e.status, e.tail)
}

// Config returns the configuration in use, with defaults and the chosen
// ports filled in.
func (s *Server) Config() Config { return s.cfg }

// SetCluster replaces the server's cluster (nil: none) from its next Start
// on: a cluster of several local servers can only name its peers' ports
// once they have started, so they are started, told, and restarted.
func (s *Server) SetCluster(c *Cluster) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cfg.Cluster = c
}

// Addr returns host:port of the native (TCP) protocol.
func (s *Server) Addr() string {
	return net.JoinHostPort(s.cfg.Host, strconv.Itoa(s.cfg.TCPPort))
}

// LogPath returns the path of the server's main log file.
func (s *Server) LogPath() string { return filepath.Join(s.cfg.Dir, "logs", LogFile) }

// Pid returns the server's process id, or 0 when it is not running.
func (s *Server) Pid() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil || !s.proc.running() {
		return 0
	}
	return s.proc.cmd.Process.Pid
}

// Running reports whether the server process is running.
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.proc != nil && s.proc.running()
}

// Start starts the process again after Stop or Kill, on the same Dir and
// ports (so the data is kept), and waits until it answers a ping. It is an
// error to call it while the process runs.
func (s *Server) Start(ctx context.Context) error {
	begin := time.Now()
	p, err := s.spawn()
	if err != nil {
		return err
	}
	pid := p.cmd.Process.Pid
	s.log.Debug("clickhouse starting", "pid", pid, "addr", s.Addr(), "dir", s.cfg.Dir)
	s.renice(pid)
	if err := s.waitReady(ctx, p); err != nil {
		return err
	}
	// Again: threads the server started before the first call inherited
	// the old niceness; those it starts from now on inherit the new one.
	s.renice(pid)
	s.log.Info("clickhouse ready", "addr", s.Addr(), "pid", pid, "dir", s.cfg.Dir,
		"took", time.Since(begin).Round(time.Millisecond))
	return nil
}

// spawn writes the configs and starts the process.
func (s *Server) spawn() (*process, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc != nil && s.proc.running() {
		return nil, fmt.Errorf("chserver: server at %s is already running", s.Addr())
	}
	if err := s.writeConfigs(); err != nil {
		return nil, err
	}
	logStart := s.logSizes()
	out, err := os.OpenFile(filepath.Join(s.cfg.Dir, OutputFile), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("chserver: open output log: %w", err)
	}
	args := append(append([]string{}, s.args...), "--config-file="+filepath.Join(s.cfg.Dir, ConfigFile))
	// Not exec.CommandContext: ctx bounds the start, not the server's life.
	cmd := exec.Command(s.cfg.Binary, args...)
	cmd.Dir = s.cfg.Dir
	cmd.Stdout, cmd.Stderr = out, out
	// Pdeathsig: the server dies with us even if we are SIGKILLed.
	// Setpgid: a terminal's Ctrl-C reaches us, and we stop it in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		out.Close()
		return nil, fmt.Errorf("chserver: start %s: %w", s.cfg.Binary, err)
	}
	p := &process{cmd: cmd, done: make(chan struct{}), logStart: logStart}
	go func() {
		p.err = cmd.Wait()
		out.Close()
		close(p.done)
	}()
	s.proc = p
	return p, nil
}

// renice sets the niceness of every thread of the server's process group
// (its own: the process is started with Setpgid) to Config.Nice. A failure
// is logged: the server runs anyway, at the niceness it inherited.
func (s *Server) renice(pid int) {
	if s.cfg.Nice <= 0 {
		return
	}
	if err := syscall.Setpriority(syscall.PRIO_PGRP, pid, s.cfg.Nice); err != nil {
		s.log.Warn("clickhouse: could not lower its CPU priority", "nice", s.cfg.Nice, "err", err)
	}
}

// waitReady pings the native port until it answers. On failure it kills
// the process and waits for it.
func (s *Server) waitReady(ctx context.Context, p *process) error {
	ctx, cancel := context.WithTimeout(ctx, StartTimeout)
	defer cancel()
	// A refused connection costs little: poll often, start-up takes ~0.15s.
	const delay = 25 * time.Millisecond
	for {
		select {
		case <-p.done:
			return &earlyExitError{status: exitStatus(p), tail: s.logTail(p)}
		default:
		}
		err := ping(ctx, s.Addr())
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			s.kill(p)
			return fmt.Errorf("chserver: clickhouse at %s not ready: %w (last ping: %v); log tail:\n%s", s.Addr(), ctx.Err(), err, s.logTail(p))
		}
		select {
		case <-p.done:
		case <-ctx.Done():
		case <-time.After(delay):
		}
	}
}

func exitStatus(p *process) error {
	if p.err != nil {
		return p.err
	}
	return errors.New("exit status 0")
}

// ping opens one native connection and pings it, bounded by a short timeout.
func ping(ctx context.Context, addr string) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	conn, err := clickhouse.Open(&clickhouse.Options{
		Addr:         []string{addr},
		Protocol:     clickhouse.Native,
		DialTimeout:  time.Second,
		ReadTimeout:  2 * time.Second,
		MaxOpenConns: 1,
		MaxIdleConns: 1,
	})
	if err != nil {
		return fmt.Errorf("open: %w", err)
	}
	defer conn.Close()
	if err := conn.Ping(ctx); err != nil {
		return fmt.Errorf("ping: %w", err)
	}
	return nil
}

// Stop sends SIGTERM and waits for the process to exit; when ctx is done
// first it sends SIGKILL and waits for that. Stopping a stopped server is a
// no-op.
func (s *Server) Stop(ctx context.Context) error {
	s.mu.Lock()
	p := s.proc
	s.mu.Unlock()
	if p == nil || !p.running() {
		return nil
	}
	begin := time.Now()
	pid := p.cmd.Process.Pid
	if err := syscall.Kill(-pid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("chserver: SIGTERM clickhouse (pid %d): %w", pid, err)
	}
	select {
	case <-p.done:
		s.log.Info("clickhouse stopped", "addr", s.Addr(), "took", time.Since(begin).Round(time.Millisecond))
		return nil
	case <-ctx.Done():
	}
	s.log.Warn("clickhouse did not stop in time, killing it", "pid", pid)
	if err := s.kill(p); err != nil {
		return err
	}
	return fmt.Errorf("chserver: stop clickhouse (pid %d): killed after %w", pid, ctx.Err())
}

// Kill sends SIGKILL to the process (and its process group) and waits for
// it to exit. Killing a stopped server is a no-op.
func (s *Server) Kill() {
	s.mu.Lock()
	p := s.proc
	s.mu.Unlock()
	if p == nil || !p.running() {
		return
	}
	if err := s.kill(p); err != nil {
		s.log.Error("kill clickhouse", "err", err)
		return
	}
	s.log.Info("clickhouse killed", "addr", s.Addr())
}

func (s *Server) kill(p *process) error {
	pid := p.cmd.Process.Pid
	if err := syscall.Kill(-pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("chserver: SIGKILL clickhouse (pid %d): %w", pid, err)
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("chserver: clickhouse (pid %d) still running 10s after SIGKILL", pid)
	}
}

// Done returns a channel that is closed when the current process exits
// (nil before the first start).
func (s *Server) Done() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return nil
	}
	return s.proc.done
}

// tailFiles are the files, relative to Dir, whose tails explain a failed
// start: the process output (errors before the logger is set up) and the
// server's error log.
var tailFiles = []string{OutputFile, filepath.Join("logs", ErrorLogFile)}

// logSizes returns the current sizes of tailFiles.
func (s *Server) logSizes() map[string]int64 {
	m := make(map[string]int64, len(tailFiles))
	for _, name := range tailFiles {
		if fi, err := os.Stat(filepath.Join(s.cfg.Dir, name)); err == nil {
			m[name] = fi.Size()
		}
	}
	return m
}

// logTail returns the last lines p wrote to the process output and the
// error log (not those of earlier runs in the same Dir).
func (s *Server) logTail(p *process) string {
	var b bytes.Buffer
	for _, name := range tailFiles {
		t := tail(filepath.Join(s.cfg.Dir, name), p.logStart[name], 4096)
		if len(bytes.TrimSpace(t)) == 0 {
			continue
		}
		fmt.Fprintf(&b, "==> %s <==\n%s\n", name, bytes.TrimRight(t, "\n"))
	}
	if b.Len() == 0 {
		return "(logs are empty)"
	}
	return b.String()
}

// tail returns at most the last n bytes of path written after offset since,
// starting at a line boundary.
func tail(path string, since, n int64) []byte {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil
	}
	size := fi.Size()
	if since > size { // rotated
		since = 0
	}
	off := max(size-n, since)
	b, _ := io.ReadAll(io.NewSectionReader(f, off, size-off))
	if off > since {
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	return b
}

// pickPorts sets every zero port to a distinct free TCP port on host.
// The listeners stay open until all are picked, so no port is chosen twice.
func pickPorts(host string, ports ...*int) error {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for _, p := range ports {
		if *p != 0 {
			continue
		}
		l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			return fmt.Errorf("chserver: pick a free port on %s: %w", host, err)
		}
		ls = append(ls, l)
		*p = l.Addr().(*net.TCPAddr).Port
	}
	return nil
}
