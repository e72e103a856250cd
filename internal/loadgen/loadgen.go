// Package loadgen drives Castle-compatible ingest traffic at a constant rate
// (open model: requests are scheduled on the clock, not when the previous
// answer came back) and measures what it costs the server under test: HTTP
// status and latency of every call, CPU and RSS of chosen processes, and
// the end-to-end lag until each accepted event is visible in ClickHouse,
// with a check that none was lost or stored twice.
//
// Every body carries {"lg_run":"<run id>","lg_seq":N,"lg_sent_ms":<ms>} at
// the start of its properties object; lag and integrity are read back from
// the events table through SQL that ClickHouse 18.16 accepts
// (visitParamExtract*, no CTEs, no window functions).
package loadgen

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// PathWeight is one endpoint and its share of the traffic.
type PathWeight struct {
	Path   string // "/v1/track", "/v1/log", "/v1/identify", "/v1/risk", "/v1/filter" or PathDevices
	Weight int
}

// NamedPID names a process whose CPU and RSS are sampled.
type NamedPID struct {
	Name string
	PID  int
}

// Client kinds.
const (
	// ClientRaw writes HTTP/1.1 requests directly on keep-alive TCP
	// connections, one per worker: the cheapest in CPU (see the package
	// benchmarks), so that the generator steals as little as possible from
	// a server on the same machine.
	ClientRaw = "raw"
	// ClientNetHTTP uses net/http with a tuned Transport.
	ClientNetHTTP = "net/http"
)

// Defaults applied by Run to zero fields.
const (
	DefaultWorkers       = 256
	DefaultUsers         = 10_000
	DefaultPollInterval  = 150 * time.Millisecond
	DefaultDrainTimeout  = 2 * time.Minute
	DefaultProgressEvery = 5 * time.Second
	DefaultTimeout       = 10 * time.Second
	DefaultOverrun       = 10 * time.Second
	DefaultAppID         = "default"
	DefaultDatabase      = "moat"
	// MaxRequests bounds Rate × Duration (the per-request bookkeeping is
	// preallocated: about 50 bytes a request).
	MaxRequests = 20_000_000
)

// Config describes one load run.
type Config struct {
	// BaseURL of the ingest API, e.g. http://127.0.0.1:8080.
	BaseURL string
	// Secret is the app's API secret (HTTP Basic password, empty user).
	Secret string
	// Rate is the request rate, per second, kept constant for Duration
	// whatever the server's latency (open model).
	Rate int
	// Duration of the sending phase.
	Duration time.Duration
	// Users is the number of simulated end users (default DefaultUsers),
	// each with 1-3 devices (user agent, IP, client id, request token).
	Users int
	// Workers bounds the requests in flight (default DefaultWorkers); each
	// worker keeps one connection. When all are busy, requests queue and
	// the schedule lag in the report grows.
	Workers int
	// Overrun is how long past Duration requests that fell behind the
	// schedule may still be sent (default DefaultOverrun); the rest are
	// reported as not sent. It bounds the run when the server is slower
	// than the rate.
	Overrun time.Duration
	// Paths and their weights (default track 80, log 20).
	Paths []PathWeight
	// Client is ClientRaw (default) or ClientNetHTTP.
	Client string
	// Timeout of one request (default DefaultTimeout).
	Timeout time.Duration

	// ClickHouseAddr (native protocol) enables the end-to-end lag and loss
	// measurement; empty skips it (the report says so).
	ClickHouseAddr string
	// Database holding the events table (default DefaultDatabase).
	Database string
	// AppID the Secret belongs to (default DefaultAppID).
	AppID string
	// PollInterval of the visibility poller (default DefaultPollInterval):
	// the resolution of the lag measurement.
	PollInterval time.Duration
	// DrainTimeout bounds the wait, after sending, for the last accepted
	// events to become visible (default DefaultDrainTimeout).
	DrainTimeout time.Duration

	// ServerPID, when positive, is sampled for CPU and RSS during the
	// sending phase ("server" in the report); ExtraPIDs likewise. The
	// generator's own process is always sampled.
	ServerPID int
	ExtraPIDs []NamedPID
	// Paused processes are stopped (SIGSTOP) for the sending phase and
	// continued (SIGCONT) for the drain: with the scorer and projector
	// paused, the run measures ingest on its own, and still verifies that
	// every accepted event reached ClickHouse once. The lag then measures
	// the catch-up, not the pipeline, and its target is not checked.
	Paused []NamedPID

	// ProgressEvery is the progress line period (default DefaultProgressEvery).
	ProgressEvery time.Duration
	// RunID marks this run's events (default: random).
	RunID string
	// Seed of the body generator (0: random).
	Seed uint64
	// Command is the command line reported in Markdown (default os.Args).
	Command string
	// Targets are checked by Report.Failures and shown in Markdown.
	Targets Targets
}

func (c *Config) setDefaults() error {
	if c.BaseURL == "" {
		return errors.New("loadgen: BaseURL is required")
	}
	u, err := url.Parse(c.BaseURL)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		return fmt.Errorf("loadgen: BaseURL must be http://host:port, got %q", c.BaseURL)
	}
	if c.Rate <= 0 {
		return errors.New("loadgen: Rate must be positive")
	}
	if c.Duration <= 0 {
		return errors.New("loadgen: Duration must be positive")
	}
	if n := float64(c.Rate) * c.Duration.Seconds(); n > MaxRequests {
		return fmt.Errorf("loadgen: Rate × Duration = %.0f requests, more than %d", n, MaxRequests)
	}
	if c.Users <= 0 {
		c.Users = DefaultUsers
	}
	if c.Workers <= 0 {
		c.Workers = DefaultWorkers
	}
	if len(c.Paths) == 0 {
		c.Paths = []PathWeight{{PathTrack, 80}, {PathLog, 20}}
	}
	for _, p := range c.Paths {
		switch strings.TrimSuffix(p.Path, ".json") {
		case PathTrack, PathLog, PathIdentify, PathRisk, PathFilter, PathDevices:
		default:
			return fmt.Errorf("loadgen: unknown path %q (want %s, %s, %s, %s, %s or devices)", p.Path, PathTrack, PathLog, PathIdentify, PathRisk, PathFilter)
		}
		if p.Weight < 0 {
			return fmt.Errorf("loadgen: negative weight for %s", p.Path)
		}
	}
	if totalWeight(c.Paths) == 0 {
		return errors.New("loadgen: path weights add up to 0")
	}
	switch c.Client {
	case "":
		c.Client = ClientRaw
	case ClientRaw, ClientNetHTTP:
	default:
		return fmt.Errorf("loadgen: unknown client %q", c.Client)
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	if c.Overrun <= 0 {
		c.Overrun = DefaultOverrun
	}
	if c.Database == "" {
		c.Database = DefaultDatabase
	}
	if c.AppID == "" {
		c.AppID = DefaultAppID
	}
	if c.PollInterval <= 0 {
		c.PollInterval = DefaultPollInterval
	}
	if c.DrainTimeout <= 0 {
		c.DrainTimeout = DefaultDrainTimeout
	}
	if c.ProgressEvery <= 0 {
		c.ProgressEvery = DefaultProgressEvery
	}
	if c.RunID == "" {
		var b [6]byte
		_, _ = rand.Read(b[:])
		c.RunID = time.Now().UTC().Format("20060102T150405") + "-" + hex.EncodeToString(b[:])
	}
	if c.Seed == 0 {
		var b [8]byte
		_, _ = rand.Read(b[:])
		for _, x := range b {
			c.Seed = c.Seed<<8 | uint64(x)
		}
	}
	if c.Command == "" {
		c.Command = shellJoin(os.Args)
	}
	return nil
}

func totalWeight(ps []PathWeight) int {
	n := 0
	for _, p := range ps {
		n += p.Weight
	}
	return n
}

// ParsePaths parses "track=80,log=20" (names or paths) into weights. The
// names are track, log, identify, risk, filter (POSTs of events) and
// devices (GET /v1/users/{id}/devices of a simulated user).
func ParsePaths(s string) ([]PathWeight, error) {
	var out []PathWeight
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, w, ok := strings.Cut(part, "=")
		n := 1
		if ok {
			var err error
			if n, err = strconv.Atoi(strings.TrimSpace(w)); err != nil || n < 0 {
				return nil, fmt.Errorf("loadgen: bad weight in %q", part)
			}
		}
		name = strings.TrimSpace(name)
		if name == "devices" {
			name = PathDevices
		}
		if !strings.HasPrefix(name, "/") {
			name = "/v1/" + name
		}
		out = append(out, PathWeight{Path: name, Weight: n})
	}
	return out, nil
}

// shellJoin quotes args for a POSIX shell.
func shellJoin(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		if a != "" && strings.IndexFunc(a, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:=,@%+", r))
		}) < 0 {
			q[i] = a
		} else {
			q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
	}
	return strings.Join(q, " ")
}

// statusTransportErr marks a request that got no HTTP answer.
const statusTransportErr = 1000

// run is the state shared by the workers, the pacer, the progress printer
// and the poller. Per-request slots are written by the one worker that sent
// the request and read atomically by the others.
type run struct {
	cfg   Config
	n     int
	start time.Time
	gen   *bodyGen
	paths []int  // weighted indexes into cfg.Paths: one entry per unit of weight, reduced
	reads []bool // by index into cfg.Paths: a GET, not an event
	urls  map[string]string

	sentAt  []atomic.Int64  // unix ns of the write; 0 = not sent yet
	latency []atomic.Int64  // ns, valid once status is set
	status  []atomic.Uint32 // 0 = pending, HTTP status, or statusTransportErr
	pathOf  []atomic.Uint32 // index into cfg.Paths + 1; 0 = not sent yet

	sent, finished, accepted, failed atomic.Int64
	visible                          atomic.Int64
	sendDone                         atomic.Bool
	overran                          atomic.Bool
	lastSend                         atomic.Int64 // unix ns

	errMu   sync.Mutex
	errs    map[string]int
	errList []string
}

func (r *run) noteErr(msg string) {
	r.errMu.Lock()
	defer r.errMu.Unlock()
	if _, ok := r.errs[msg]; !ok {
		r.errList = append(r.errList, msg)
	}
	r.errs[msg]++
}

// Run drives the load described by cfg, printing progress to progress
// (which may be nil), and returns the report. The error is non-nil when the
// run could not be carried out, or when accepted events were lost or
// duplicated (ErrIntegrity; the report is complete then).
func Run(ctx context.Context, cfg Config, progress io.Writer) (Report, error) {
	if err := cfg.setDefaults(); err != nil {
		return Report{}, err
	}
	if progress == nil {
		progress = io.Discard
	}
	n := int(float64(cfg.Rate)*cfg.Duration.Seconds() + 0.5)
	if n < 1 {
		n = 1
	}
	r := &run{
		cfg:     cfg,
		n:       n,
		gen:     newBodyGen(cfg.RunID, cfg.Users, cfg.Seed),
		sentAt:  make([]atomic.Int64, n),
		latency: make([]atomic.Int64, n),
		status:  make([]atomic.Uint32, n),
		pathOf:  make([]atomic.Uint32, n),
		errs:    map[string]int{},
		urls:    map[string]string{},
	}
	base := strings.TrimRight(cfg.BaseURL, "/")
	for _, p := range cfg.Paths {
		r.urls[p.Path] = base + p.Path
	}
	index := map[string]int{}
	for i, p := range cfg.Paths {
		if _, ok := index[p.Path]; !ok {
			index[p.Path] = i
		}
		r.reads = append(r.reads, isRead(p.Path))
	}
	for _, p := range weightedPaths(cfg.Paths) {
		r.paths = append(r.paths, index[p])
	}

	rep := Report{
		RunID: cfg.RunID, Command: cfg.Command, Client: cfg.Client,
		TargetRate: cfg.Rate, Duration: cfg.Duration, Workers: cfg.Workers,
		Users: cfg.Users, Paths: cfg.Paths, Requests: n, Targets: cfg.Targets,
	}

	var poller *lagPoller
	if cfg.ClickHouseAddr != "" {
		var err error
		poller, err = newLagPoller(ctx, r)
		if err != nil {
			return rep, err
		}
		defer poller.close()
	}

	newConn, err := newClient(cfg)
	if err != nil {
		return rep, err
	}

	named := []NamedPID{{Name: "loadgen", PID: 0}}
	if cfg.ServerPID > 0 {
		named = append(named, NamedPID{Name: "server", PID: cfg.ServerPID})
	}
	named = append(named, cfg.ExtraPIDs...)
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	watcher := watchProcs(wctx, named)

	if len(cfg.Paused) > 0 {
		// Continued on every way out, so that no run leaves them stopped.
		defer continueAll(cfg.Paused)
		if err := signalAll(cfg.Paused, syscall.SIGSTOP); err != nil {
			continueAll(cfg.Paused)
			return rep, err
		}
		for _, p := range cfg.Paused {
			rep.Paused = append(rep.Paused, p.Name)
		}
		fmt.Fprintf(progress, "loadgen: paused %s while sending\n", strings.Join(rep.Paused, ", "))
	}

	r.start = time.Now()
	rep.Started = r.start
	fmt.Fprintf(progress, "loadgen: run %s: %d req/s for %s (%d requests) to %s, %d workers, %d users, client %s\n",
		cfg.RunID, cfg.Rate, cfg.Duration, n, cfg.BaseURL, cfg.Workers, cfg.Users, cfg.Client)

	pctx, pcancel := context.WithCancel(ctx)
	pollDone := make(chan struct{})
	if poller != nil {
		go func() { defer close(pollDone); poller.loop(pctx) }()
	} else {
		close(pollDone)
	}

	jobs := make(chan int, cfg.Workers)
	var wg sync.WaitGroup
	for i := 0; i < cfg.Workers; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			r.worker(ctx, newConn(), jobs, mrand.New(mrand.NewPCG(cfg.Seed, uint64(i)+1)))
		}(i)
	}
	progDone := make(chan struct{})
	progStop := make(chan struct{})
	go func() { defer close(progDone); r.progressLoop(progress, watcher, poller, progStop) }()

	r.pace(ctx, jobs)
	close(jobs)
	wg.Wait()
	r.sendDone.Store(true)
	sendEnd := time.Now()
	if len(cfg.Paused) > 0 {
		continueAll(cfg.Paused)
		fmt.Fprintf(progress, "loadgen: continued %s for the drain\n", strings.Join(rep.Paused, ", "))
	}
	rep.Procs = watcher.stop(wcancel)
	rep.Host = watcher.hostStop
	close(progStop)
	<-progDone

	rep.SendElapsed = sendEnd.Sub(r.start)
	r.fillHTTP(&rep)
	fmt.Fprintf(progress, "loadgen: sending done in %s: sent %d, accepted %d, failed %d\n",
		rep.SendElapsed.Round(time.Millisecond), rep.Sent, rep.Accepted, rep.Sent-rep.Accepted)
	for _, p := range rep.PerPath {
		fmt.Fprintf(progress, "loadgen:   %-24s %6.0f req/s, sent %d, 2xx %d, latency %s, errors %s\n",
			p.Path, p.Rate, p.Sent, p.Accepted, p.Latency, p.errorsString())
	}
	if r.overran.Load() {
		fmt.Fprintf(progress, "loadgen: %d of %d requests not sent: the schedule fell more than %s behind\n",
			int64(n)-rep.Sent, n, cfg.Overrun)
	}

	if poller == nil {
		pcancel()
		<-pollDone
		rep.LagNote = "end-to-end lag and loss not measured (no ClickHouse address)"
		return rep, ctx.Err()
	}

	// Wait until the poller saw every accepted event, or the drain timeout.
	drainStart := time.Now()
	dctx, dcancel := context.WithTimeout(ctx, cfg.DrainTimeout)
	select {
	case <-poller.allSeen:
	case <-dctx.Done():
		fmt.Fprintf(progress, "loadgen: drain timeout after %s: %d of %d accepted events visible\n",
			cfg.DrainTimeout, r.visible.Load(), rep.AcceptedEvents)
	case <-pollDone:
	}
	dcancel()
	pcancel()
	<-pollDone
	rep.DrainElapsed = time.Since(drainStart)
	if poller.err != nil {
		return rep, poller.err
	}
	poller.fillLag(&rep)

	// Authoritative check on the deduplicated view.
	if err := poller.verify(ctx, &rep); err != nil {
		return rep, err
	}
	fmt.Fprintf(progress, "loadgen: verified in ClickHouse: %d accepted events, %d rows of the run (FINAL), %d lost, %d duplicated, %d unexpected\n",
		rep.AcceptedEvents, rep.StoredRows, rep.Lost, rep.Duplicated, rep.Unexpected)
	if rep.Lost > 0 || rep.Duplicated > 0 {
		return rep, fmt.Errorf("%w: %d lost, %d duplicated", ErrIntegrity, rep.Lost, rep.Duplicated)
	}
	return rep, ctx.Err()
}

// signalAll sends sig to every process of ps.
func signalAll(ps []NamedPID, sig syscall.Signal) error {
	for _, p := range ps {
		if p.PID <= 0 {
			return fmt.Errorf("loadgen: cannot pause %s: pid %d", p.Name, p.PID)
		}
		if err := syscall.Kill(p.PID, sig); err != nil {
			return fmt.Errorf("loadgen: signal %s (pid %d): %w", p.Name, p.PID, err)
		}
	}
	if sig == syscall.SIGSTOP {
		// A stop takes effect asynchronously: wait (briefly) until the
		// kernel shows every process stopped, so none runs while sending.
		deadline := time.Now().Add(time.Second)
		for _, p := range ps {
			for !stopped(p.PID) && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
		}
	}
	return nil
}

// stopped reports whether /proc shows pid stopped (state T); true when it
// cannot tell, so that callers do not wait for nothing.
func stopped(pid int) bool {
	state, err := procState(pid)
	return err != nil || state == 'T' || state == 't'
}

// continueAll continues every process of ps (SIGCONT), whatever their
// state: continuing a running process does nothing.
func continueAll(ps []NamedPID) {
	for _, p := range ps {
		if p.PID > 0 {
			_ = syscall.Kill(p.PID, syscall.SIGCONT)
		}
	}
}

// ErrIntegrity says accepted events were lost or duplicated.
var ErrIntegrity = errors.New("loadgen: accepted events lost or duplicated")

// weightedPaths expands weights into a table of at most 100 entries.
func weightedPaths(ps []PathWeight) []string {
	total := totalWeight(ps)
	var out []string
	for _, p := range ps {
		k := (p.Weight*100 + total/2) / total
		if k == 0 && p.Weight > 0 {
			k = 1
		}
		for i := 0; i < k; i++ {
			out = append(out, p.Path)
		}
	}
	return out
}

// pace hands out sequence numbers on the clock: by the time t after start,
// rate×t requests are due. It wakes about every millisecond and hands out
// what is due; when every worker is busy it blocks and catches up later
// (the schedule lag shows it), until Duration + Overrun.
func (r *run) pace(ctx context.Context, jobs chan<- int) {
	rate := float64(r.cfg.Rate)
	stop := time.NewTimer(time.Until(r.start.Add(r.cfg.Duration + r.cfg.Overrun)))
	defer stop.Stop()
	tick := time.NewTimer(0)
	defer tick.Stop()
	next := 0
	for next < r.n {
		due := int(time.Since(r.start).Seconds()*rate) + 1
		if due > r.n {
			due = r.n
		}
		for ; next < due; next++ {
			select {
			case jobs <- next:
			case <-ctx.Done():
				return
			case <-stop.C:
				r.overran.Store(true)
				return
			}
		}
		if next >= r.n {
			return
		}
		wait := time.Until(r.start.Add(time.Duration(float64(next) / rate * float64(time.Second))))
		if wait < time.Millisecond {
			wait = time.Millisecond
		}
		tick.Reset(wait)
		select {
		case <-tick.C:
		case <-ctx.Done():
			return
		case <-stop.C:
			r.overran.Store(true)
			return
		}
	}
}

// worker sends the requests it is handed.
func (r *run) worker(ctx context.Context, c conn, jobs <-chan int, rnd *mrand.Rand) {
	defer c.close()
	buf := make([]byte, 0, 4096)
	pbuf := make([]byte, 0, 64)
	for seq := range jobs {
		if ctx.Err() != nil {
			r.status[seq].Store(statusTransportErr)
			r.finished.Add(1)
			r.failed.Add(1)
			continue
		}
		idx := r.paths[rnd.IntN(len(r.paths))]
		path := r.cfg.Paths[idx].Path
		var body []byte
		if r.reads[idx] {
			pbuf = r.gen.appendDevicesPath(pbuf[:0], rnd)
			path = string(pbuf)
		}
		now := time.Now()
		if !r.reads[idx] {
			buf = r.gen.appendBody(buf[:0], strings.TrimSuffix(path, ".json"), uint64(seq), now, rnd)
			body = buf
		}
		r.pathOf[seq].Store(uint32(idx) + 1)
		r.sentAt[seq].Store(now.UnixNano())
		r.lastSend.Store(now.UnixNano())
		r.sent.Add(1)
		status, err := c.do(path, body)
		lat := time.Since(now)
		r.latency[seq].Store(int64(lat))
		if err != nil {
			status = statusTransportErr
			r.noteErr(err.Error())
		}
		r.status[seq].Store(uint32(status))
		r.finished.Add(1)
		if status >= 200 && status < 300 {
			r.accepted.Add(1)
		} else {
			r.failed.Add(1)
		}
	}
}

func is2xx(st uint32) bool { return st >= 200 && st < 300 }

// isRead reports that seq was sent as a GET (no event to look for).
func (r *run) isRead(seq int) bool {
	i := r.pathOf[seq].Load()
	return i != 0 && r.reads[i-1]
}

// progressLoop prints a line every ProgressEvery until stop is closed.
func (r *run) progressLoop(w io.Writer, watcher *procWatcher, p *lagPoller, stop <-chan struct{}) {
	t := time.NewTicker(r.cfg.ProgressEvery)
	defer t.Stop()
	lastT := r.start
	var lastSent, lastAcc int64
	lastSeq := 0
	prevCPU := map[string]float64{}
	prevHost, _ := hostSample()
	for {
		select {
		case <-stop:
			return
		case now := <-t.C:
			sent, acc := r.sent.Load(), r.accepted.Load()
			dt := now.Sub(lastT).Seconds()
			// Latency of the requests finished since the last line.
			// Latency of the requests finished since the last line, up to
			// the oldest one still in flight.
			var lats []time.Duration
			for ; lastSeq < r.n; lastSeq++ {
				st := r.status[lastSeq].Load()
				if st == 0 {
					break
				}
				if is2xx(st) {
					lats = append(lats, time.Duration(r.latency[lastSeq].Load()))
				}
			}
			line := fmt.Sprintf("[%5.1fs] sent %d (%.0f/s) accepted %d (%.0f/s) failed %d in-flight %d",
				now.Sub(r.start).Seconds(), sent, float64(sent-lastSent)/dt, acc, float64(acc-lastAcc)/dt,
				r.failed.Load(), sent-r.finished.Load())
			if len(lats) > 0 {
				s := Summarize(lats)
				line += fmt.Sprintf(" | latency p50 %s p99 %s", fmtDur(s.P50), fmtDur(s.P99))
			}
			if p != nil {
				line += fmt.Sprintf(" | visible %d, lag p99 %s", r.visible.Load(), p.recentP99())
			}
			var ours float64
			for _, ps := range watcher.snapshot() {
				cpu := ps.CPUSeconds - prevCPU[ps.Name]
				prevCPU[ps.Name] = ps.CPUSeconds
				ours += 100 * cpu / dt
				line += fmt.Sprintf(" | %s %.0f%% CPU", ps.Name, 100*cpu/dt)
			}
			if now, err := hostSample(); err == nil {
				if host, steal, ok := now.sub(prevHost); ok {
					line += fmt.Sprintf(" | machine %.0f%% (stolen %.0f%%, others %.0f%%)", host, steal, max(0, host-ours))
				}
				prevHost = now
			}
			fmt.Fprintln(w, line)
			lastT, lastSent, lastAcc = now, sent, acc
		}
	}
}

// fillHTTP computes the request-side numbers of the report.
func (r *run) fillHTTP(rep *Report) {
	rep.StatusCounts = map[int]int64{}
	var lats, corrected, sched []time.Duration
	per := make([]PathStats, len(r.cfg.Paths))
	perLats := make([][]time.Duration, len(r.cfg.Paths))
	for i, p := range r.cfg.Paths {
		per[i] = PathStats{Path: p.Path, StatusCounts: map[int]int64{}}
	}
	var first, last int64
	interval := float64(time.Second) / float64(r.cfg.Rate)
	for seq := 0; seq < r.n; seq++ {
		at := r.sentAt[seq].Load()
		if at == 0 {
			continue
		}
		rep.Sent++
		if first == 0 || at < first {
			first = at
		}
		last = max(last, at)
		intended := r.start.UnixNano() + int64(float64(seq)*interval)
		sched = append(sched, time.Duration(max(0, at-intended)))
		st := r.status[seq].Load()
		var ps *PathStats
		pi := int(r.pathOf[seq].Load()) - 1
		if pi >= 0 && pi < len(per) {
			ps = &per[pi]
		} else {
			ps = &PathStats{StatusCounts: map[int]int64{}} // not reached: pathOf is set before sentAt
		}
		ps.Sent++
		switch {
		case st == statusTransportErr || st == 0:
			rep.TransportErrors++
			ps.TransportErrors++
		default:
			rep.StatusCounts[int(st)]++
			ps.StatusCounts[int(st)]++
		}
		if is2xx(st) {
			rep.Accepted++
			ps.Accepted++
			if !r.isRead(seq) {
				rep.AcceptedEvents++
			}
			lat := time.Duration(r.latency[seq].Load())
			lats = append(lats, lat)
			if pi >= 0 && pi < len(per) {
				perLats[pi] = append(perLats[pi], lat)
			}
			corrected = append(corrected, lat+time.Duration(max(0, at-intended)))
		}
	}
	rep.Latency = Summarize(lats)
	rep.CorrectedLatency = Summarize(corrected)
	rep.ScheduleLag = Summarize(sched)
	if rep.Sent > 1 && last > first {
		// Rate over the span of send times, counting one interval for the
		// last request.
		span := time.Duration(last-first) + time.Duration(interval)
		rep.AchievedRate = float64(rep.Sent) / span.Seconds()
		rep.AcceptedRate = float64(rep.Accepted) / span.Seconds()
		for i := range per {
			per[i].Rate = float64(per[i].Sent) / span.Seconds()
		}
	}
	for i := range per {
		per[i].Latency = Summarize(perLats[i])
	}
	rep.PerPath = per
	r.errMu.Lock()
	for _, e := range r.errList {
		rep.ErrorSamples = append(rep.ErrorSamples, fmt.Sprintf("%dx %s", r.errs[e], e))
		if len(rep.ErrorSamples) == 10 {
			break
		}
	}
	r.errMu.Unlock()
	slices.Sort(rep.ErrorSamples)
}

// basicAuth is the Authorization header value for the API secret.
func basicAuth(secret string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(":"+secret))
}
