package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moat-dev/moat/ingest"
	"github.com/moat-dev/moat/schemas"
)

func ms(v ...int) []time.Duration {
	out := make([]time.Duration, len(v))
	for i, x := range v {
		out[i] = time.Duration(x) * time.Millisecond
	}
	return out
}

func TestPercentile(t *testing.T) {
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		hundred[i] = time.Duration(i+1) * time.Millisecond // 1..100 ms
	}
	for _, tc := range []struct {
		name   string
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{"empty", nil, 50, 0},
		{"single p50", ms(7), 50, 7 * time.Millisecond},
		{"single p99", ms(7), 99, 7 * time.Millisecond},
		{"1..100 p50", hundred, 50, 50 * time.Millisecond},
		{"1..100 p95", hundred, 95, 95 * time.Millisecond},
		{"1..100 p99", hundred, 99, 99 * time.Millisecond},
		{"1..100 p100", hundred, 100, 100 * time.Millisecond},
		{"1..100 p0", hundred, 0, 1 * time.Millisecond},
		{"1..100 p99.5 rounds up", hundred, 99.5, 100 * time.Millisecond},
		// Nearest rank over 4 values: p50 is the 2nd, p51 the 3rd, p75 the 3rd, p76 the 4th.
		{"four p50", ms(1, 2, 3, 4), 50, 2 * time.Millisecond},
		{"four p51", ms(1, 2, 3, 4), 51, 3 * time.Millisecond},
		{"four p75", ms(1, 2, 3, 4), 75, 3 * time.Millisecond},
		{"four p76", ms(1, 2, 3, 4), 76, 4 * time.Millisecond},
		{"over 100 clamps", ms(1, 2), 150, 2 * time.Millisecond},
	} {
		if got := Percentile(tc.sorted, tc.p); got != tc.want {
			t.Errorf("%s: Percentile(p%v) = %v, want %v", tc.name, tc.p, got, tc.want)
		}
	}
}

func TestSummarize(t *testing.T) {
	// 1000 values, shuffled: 1..1000 µs.
	ds := make([]time.Duration, 1000)
	for i := range ds {
		ds[i] = time.Duration(i+1) * time.Microsecond
	}
	r := rand.New(rand.NewPCG(1, 2))
	r.Shuffle(len(ds), func(i, j int) { ds[i], ds[j] = ds[j], ds[i] })
	s := Summarize(ds)
	want := Percentiles{N: 1000, P50: 500 * time.Microsecond, P95: 950 * time.Microsecond,
		P99: 990 * time.Microsecond, Max: 1000 * time.Microsecond, Mean: 500500 * time.Nanosecond}
	if s != want {
		t.Errorf("Summarize = %+v, want %+v", s, want)
	}
	if z := Summarize(nil); z != (Percentiles{}) || z.String() != "no samples" {
		t.Errorf("Summarize(nil) = %+v %q", z, z.String())
	}
	if got := (Percentiles{N: 1, P50: 1500 * time.Microsecond, P95: 12 * time.Millisecond, P99: 250 * time.Millisecond, Max: 2500 * time.Millisecond}).String(); got != "p50 1.50 ms · p95 12.0 ms · p99 250.0 ms · max 2.50 s" {
		t.Errorf("String = %q", got)
	}
}

// TestBodies checks that generated bodies are valid JSON with the fields the
// Castle SDKs send, and that Moat's own decoder accepts them.
func TestBodies(t *testing.T) {
	g := newBodyGen("run-1", 50, 42)
	r := rand.New(rand.NewPCG(3, 4))
	now := time.Date(2026, 5, 1, 12, 0, 0, 123e6, time.UTC)
	kinds := map[string]schemas.Kind{PathTrack: schemas.KindTrack, PathLog: schemas.KindLog, PathIdentify: schemas.KindIdentify}
	types := map[string]int{}
	legacy, modern, uas := 0, 0, map[string]bool{}
	for seq := uint64(0); seq < 3000; seq++ {
		path := []string{PathTrack, PathLog, PathIdentify}[seq%3]
		body := g.appendBody(nil, path, seq, now, r)
		var m map[string]any
		if err := json.Unmarshal(body, &m); err != nil {
			t.Fatalf("seq %d: invalid JSON: %v\n%s", seq, err, body)
		}
		// Properties carry the run markers, in compact form for visitParamExtract.
		props, ok := m["properties"].(map[string]any)
		if !ok {
			t.Fatalf("seq %d: no properties object: %s", seq, body)
		}
		if props[PropRun] != "run-1" || props[PropSeq] != float64(seq) || props[PropSentMs] != float64(now.UnixMilli()) {
			t.Fatalf("seq %d: bad markers %v", seq, props)
		}
		marker := fmt.Sprintf(`"properties":{"lg_run":"run-1","lg_seq":%d,"lg_sent_ms":%d`, seq, now.UnixMilli())
		if !bytes.Contains(body, []byte(marker)) {
			t.Fatalf("seq %d: markers not compact/first: %s", seq, body)
		}
		ctx, ok := m["context"].(map[string]any)
		if !ok {
			t.Fatalf("seq %d: no context: %s", seq, body)
		}
		if ip, _ := ctx["ip"].(string); ip == "" {
			t.Fatalf("seq %d: no context.ip", seq)
		}
		hdrs, _ := ctx["headers"].(map[string]any)
		ua, _ := hdrs["User-Agent"].(string)
		if ua == "" {
			t.Fatalf("seq %d: no User-Agent header: %s", seq, body)
		}
		uas[ua] = true
		if lib, _ := ctx["library"].(map[string]any); lib["name"] == "" || lib["version"] == "" {
			t.Fatalf("seq %d: no library: %s", seq, body)
		}
		switch {
		case m["event"] != nil:
			legacy++
			if m["timestamp"] == nil || m["user_traits"] == nil || ctx["client_id"] == nil {
				t.Fatalf("seq %d: legacy body lacks timestamp/user_traits/client_id: %s", seq, body)
			}
		case m["type"] != nil:
			modern++
			if m["created_at"] == nil || m["request_token"] == nil || m["user"] == nil {
				t.Fatalf("seq %d: modern body lacks created_at/request_token/user: %s", seq, body)
			}
		case path == PathIdentify:
			if m["user_id"] == nil || m["user_traits"] == nil {
				t.Fatalf("seq %d: identify lacks user_id/user_traits: %s", seq, body)
			}
		default:
			t.Fatalf("seq %d: neither type nor event: %s", seq, body)
		}
		if m["sent_at"] == nil {
			t.Fatalf("seq %d: no sent_at", seq)
		}

		ev, err := ingest.Decode(kinds[path], body, nil)
		if err != nil {
			t.Fatalf("seq %d: ingest.Decode(%s): %v\n%s", seq, kinds[path], err, body)
		}
		if ev.Context.IP == "" || ev.Context.Headers["user-agent"] == "" || ev.Context.Library == nil {
			t.Fatalf("seq %d: decoded context incomplete: %+v", seq, ev.Context)
		}
		if path == PathIdentify && ev.User.ID == "" {
			t.Fatalf("seq %d: identify without user id", seq)
		}
		if path != PathIdentify {
			types[ev.Type+" "+ev.Status]++
		}
		if ev.CreatedAt == nil || !ev.CreatedAt.Equal(now) {
			t.Fatalf("seq %d: created_at = %v", seq, ev.CreatedAt)
		}
	}
	if legacy == 0 || modern == 0 {
		t.Errorf("want both SDK shapes, got %d legacy and %d modern", legacy, modern)
	}
	for _, want := range []string{"$login $succeeded", "$logout $succeeded", "$login $failed", "$custom "} {
		if types[want] == 0 {
			t.Errorf("no %q event in %v", want, types)
		}
	}
	if len(uas) < 8 {
		t.Errorf("only %d distinct user agents", len(uas))
	}
	// Users vary.
	users := map[string]bool{}
	for i := 0; i < 200; i++ {
		ev, err := ingest.Decode(schemas.KindTrack, g.appendBody(nil, PathTrack, 1, now, r), nil)
		if err != nil {
			t.Fatal(err)
		}
		users[ev.User.ID+ev.User.Email] = true
	}
	if len(users) < 30 {
		t.Errorf("only %d distinct users of 50", len(users))
	}
}

func TestAppendStrEscapes(t *testing.T) {
	for _, s := range []string{"plain", `quo"te`, `back\slash`, "new\nline", "ünï", "<&>"} {
		b := appendStr(nil, s)
		var got string
		if err := json.Unmarshal(b, &got); err != nil || got != s {
			t.Errorf("appendStr(%q) = %s (%v)", s, b, err)
		}
	}
}

func TestParseProc(t *testing.T) {
	stat := []byte("1234 (my (weird) proc) S 1 1234 1234 0 -1 4194560 2000 0 0 0 250 75 0 0 20 0 12 0 100 1000000 500 18446744073709551615\n")
	ticks, err := parseStatTicks(stat)
	if err != nil || ticks != 325 {
		t.Errorf("parseStatTicks = %d, %v; want 325", ticks, err)
	}
	status := []byte("Name:\tmoat\nVmPeak:\t  900000 kB\nVmRSS:\t  204800 kB\nThreads:\t12\n")
	rss, err := parseStatusRSS(status)
	if err != nil || rss != 204800 {
		t.Errorf("parseStatusRSS = %d, %v", rss, err)
	}
	ps := []byte("cpu  100 5 50 800 20 3 2 10 0 0\ncpu0 50 2 25 400 10 1 1 5 0 0\ncpu1 50 3 25 400 10 2 1 5 0 0\nintr 1\n")
	c, err := parseProcStat(ps)
	if err != nil || c.busy != 170 || c.total != 990 || c.steal != 10 || c.cpus != 2 {
		t.Errorf("parseProcStat = %+v, %v; want busy 170, total 990, steal 10, 2 cpus", c, err)
	}
	// 200 more jiffies on 2 CPUs (one second): 120 busy, 40 of them stolen.
	later := cpuTimes{busy: c.busy + 120, total: c.total + 200, steal: c.steal + 40, cpus: 2}
	if busy, steal, ok := later.sub(c); !ok || busy != 120 || steal != 40 {
		t.Errorf("sub = %v, %v, %v; want 120%%, 40%%", busy, steal, ok)
	}
	if ticks, rss, err := procSample(0); err != nil || rss == 0 {
		t.Errorf("procSample(self) = %d, %d, %v", ticks, rss, err)
	}
}

func TestParsePaths(t *testing.T) {
	got, err := ParsePaths("track=80, /v1/log=20,identify")
	if err != nil {
		t.Fatal(err)
	}
	want := []PathWeight{{PathTrack, 80}, {PathLog, 20}, {PathIdentify, 1}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("ParsePaths = %v, want %v", got, want)
	}
	if _, err := ParsePaths("track=x"); err == nil {
		t.Error("ParsePaths accepted a bad weight")
	}
	if w := weightedPaths([]PathWeight{{PathTrack, 3}, {PathLog, 1}}); len(w) != 100 || w[74] != PathTrack || w[75] != PathLog {
		t.Errorf("weightedPaths = %d entries", len(w))
	}
}

// TestRawClientResponses exercises the raw client's response parsing:
// bodies with Content-Length and chunked, errors, and Connection: close.
func TestRawClientResponses(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if u, p, ok := req.BasicAuth(); !ok || u != "" || p != "s3cret" {
			http.Error(w, `{"type":"unauthorized"}`, http.StatusUnauthorized)
			return
		}
		io.Copy(io.Discard, req.Body)
		switch req.URL.Path {
		case "/v1/track":
			w.WriteHeader(http.StatusNoContent)
		case "/len":
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnprocessableEntity)
			w.Write([]byte(`{"type":"invalid_parameters","message":"x"}`))
		case "/chunked":
			w.WriteHeader(http.StatusOK)
			for i := 0; i < 3; i++ {
				w.Write(bytes.Repeat([]byte("a"), 5000))
				w.(http.Flusher).Flush()
			}
		case "/close":
			w.Header().Set("Connection", "close")
			w.WriteHeader(http.StatusServiceUnavailable)
			w.Write([]byte("busy"))
		}
	}))
	defer srv.Close()
	mk, err := newClient(Config{BaseURL: srv.URL, Secret: "s3cret", Client: ClientRaw, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	c := mk()
	defer c.close()
	for i, tc := range []struct {
		path string
		want int
	}{
		{"/v1/track", 204}, {"/len", 422}, {"/v1/track", 204}, {"/chunked", 200}, {"/v1/track", 204},
		{"/close", 503}, {"/v1/track", 204}, {"/len", 422},
	} {
		got, err := c.do(tc.path, []byte(`{"type":"$login"}`))
		if err != nil || got != tc.want {
			t.Errorf("%d %s: status %d, %v; want %d", i, tc.path, got, err, tc.want)
		}
	}
	mk, _ = newClient(Config{BaseURL: srv.URL, Secret: "wrong", Client: ClientRaw, Timeout: 5 * time.Second})
	if got, err := mk().do("/v1/track", []byte(`{}`)); err != nil || got != 401 {
		t.Errorf("wrong secret: %d, %v", got, err)
	}
}

// TestRunAgainstHTTPTest runs the generator for about 2 s at a low rate
// against a server that answers 204, without ClickHouse.
func TestRunAgainstHTTPTest(t *testing.T) {
	for _, client := range []string{ClientRaw, ClientNetHTTP} {
		t.Run(strings.ReplaceAll(client, "/", ""), func(t *testing.T) {
			var (
				mu    sync.Mutex
				seqs  = map[uint64]int{}
				bad   atomic.Int64
				paths sync.Map
			)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
				body, _ := io.ReadAll(req.Body)
				var m struct {
					Properties struct {
						Run string `json:"lg_run"`
						Seq uint64 `json:"lg_seq"`
					} `json:"properties"`
				}
				_, p, _ := req.BasicAuth()
				if err := json.Unmarshal(body, &m); err != nil || m.Properties.Run != "test-run" || p != "sec" ||
					req.Header.Get("Content-Type") != "application/json" {
					bad.Add(1)
					http.Error(w, "bad", http.StatusBadRequest)
					return
				}
				paths.Store(req.URL.Path, true)
				mu.Lock()
				seqs[m.Properties.Seq]++
				mu.Unlock()
				w.WriteHeader(http.StatusNoContent)
			}))
			defer srv.Close()

			var progress bytes.Buffer
			rep, err := Run(context.Background(), Config{
				BaseURL: srv.URL, Secret: "sec", Rate: 200, Duration: 2 * time.Second,
				Users: 20, Workers: 8, Client: client, RunID: "test-run", Seed: 7,
				ProgressEvery: 500 * time.Millisecond, Command: "loadgen-test --rate 200",
			}, &progress)
			if err != nil {
				t.Fatalf("Run: %v\n%s", err, progress.String())
			}
			if rep.Sent != 400 || rep.Accepted != 400 || rep.StatusCounts[204] != 400 || rep.TransportErrors != 0 {
				t.Errorf("sent %d accepted %d statuses %v errors %d %v", rep.Sent, rep.Accepted, rep.StatusCounts, rep.TransportErrors, rep.ErrorSamples)
			}
			if bad.Load() != 0 || len(seqs) != 400 {
				t.Errorf("server saw %d bad bodies and %d distinct seqs", bad.Load(), len(seqs))
			}
			for s, c := range seqs {
				if s >= 400 || c != 1 {
					t.Errorf("seq %d seen %d times", s, c)
				}
			}
			if _, ok := paths.Load(PathTrack); !ok {
				t.Error("no track call")
			}
			if _, ok := paths.Load(PathLog); !ok {
				t.Error("no log call")
			}
			// Open model: 400 requests spread over ~2 s.
			if rep.SendElapsed < 1900*time.Millisecond || rep.SendElapsed > 4*time.Second {
				t.Errorf("sending took %s", rep.SendElapsed)
			}
			if rep.AchievedRate < 180 || rep.AchievedRate > 220 {
				t.Errorf("achieved rate %.1f, want ~200", rep.AchievedRate)
			}
			if rep.Latency.N != 400 || rep.Latency.P50 <= 0 || rep.Latency.Max < rep.Latency.P99 {
				t.Errorf("latency %+v", rep.Latency)
			}
			if rep.LagMeasured || !strings.Contains(rep.LagNote, "not measured") {
				t.Errorf("lag measured %v, note %q", rep.LagMeasured, rep.LagNote)
			}
			if len(rep.Procs) != 1 || rep.Procs[0].Name != "loadgen" || rep.Procs[0].MaxRSSMiB <= 0 {
				t.Errorf("procs %+v", rep.Procs)
			}
			if !rep.OK() {
				t.Error("report not OK")
			}
			md := rep.Markdown()
			for _, want := range []string{"| Metric | Value |", "`loadgen-test --rate 200`", "400 / 400 (100.00%)", "204: 400",
				"not measured (no ClickHouse address)", "CPU / RSS: loadgen", "| Machine CPU |", "| Result | PASS |"} {
				if !strings.Contains(md, want) {
					t.Errorf("Markdown lacks %q:\n%s", want, md)
				}
			}
			if !strings.Contains(progress.String(), "accepted") {
				t.Errorf("no progress lines:\n%s", progress.String())
			}
			t.Logf("\n%s\n%s", progress.String(), md)
		})
	}
}

func BenchmarkBody(b *testing.B) {
	g := newBodyGen("bench", 10_000, 1)
	r := rand.New(rand.NewPCG(1, 1))
	buf := make([]byte, 0, 4096)
	now := time.Now()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		buf = g.appendBody(buf[:0], PathTrack, uint64(i), now, r)
	}
	b.SetBytes(int64(len(buf)))
}

// BenchmarkClient compares the CPU cost of one request through each client
// against an in-process server that answers 204 (both sides are measured;
// the difference between the clients is the generator's).
func BenchmarkClient(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		io.Copy(io.Discard, req.Body)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	body := newBodyGen("bench", 100, 1).appendBody(nil, PathTrack, 1, time.Now(), rand.New(rand.NewPCG(1, 1)))
	for _, client := range []string{ClientRaw, ClientNetHTTP} {
		b.Run(strings.ReplaceAll(client, "/", ""), func(b *testing.B) {
			mk, _ := newClient(Config{BaseURL: srv.URL, Client: client, Timeout: 5 * time.Second, Workers: 64})
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				c := mk()
				defer c.close()
				for pb.Next() {
					if st, err := c.do(PathTrack, body); err != nil || st != 204 {
						b.Errorf("%d %v", st, err)
						return
					}
				}
			})
		})
	}
}

func TestFailures(t *testing.T) {
	ok := Report{Requests: 100, Sent: 100, Accepted: 100, AcceptedRate: 995,
		Latency: Percentiles{N: 100, P99: 40 * time.Millisecond}, LagMeasured: true, Verified: true,
		Lag:     Percentiles{N: 100, P99: 1500 * time.Millisecond},
		Targets: Targets{MinRate: 1000, MaxP99Latency: 50 * time.Millisecond, MaxP99Lag: 2 * time.Second}}
	if f := ok.Failures(); len(f) != 0 || !ok.OK() {
		t.Fatalf("Failures = %v", f)
	}
	if md := ok.Markdown(); !strings.Contains(md, "| Result | PASS |") || !strings.Contains(md, "≥ 1000 events/s accepted, p99 ingest latency < 50.0 ms, p99 end-to-end lag < 2.00 s, zero loss") {
		t.Errorf("Markdown:\n%s", md)
	}
	bad := ok
	bad.Accepted, bad.Lost, bad.Duplicated, bad.AcceptedRate = 98, 1, 2, 500
	bad.Latency.P99, bad.Lag.P99 = 60*time.Millisecond, 3*time.Second
	f := bad.Failures()
	want := []string{"2 of 100 requests not accepted", "1 accepted events lost, 2 duplicated", "accepted 500 events/s, target 1000",
		"p99 ingest latency 60.0 ms, target < 50.0 ms", "p99 end-to-end lag 3.00 s, target < 2.00 s"}
	if fmt.Sprint(f) != fmt.Sprint(want) {
		t.Errorf("Failures =\n%q\nwant\n%q", f, want)
	}
	if md := bad.Markdown(); !strings.Contains(md, "| Result | FAIL: 2 of 100 requests not accepted; ") {
		t.Errorf("Markdown:\n%s", md)
	}
}

// TestRunOverrun checks that a server slower than the rate does not stretch
// the run past Duration + Overrun, and that the shortfall is reported.
func TestRunOverrun(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		io.Copy(io.Discard, req.Body)
		time.Sleep(50 * time.Millisecond)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	begin := time.Now()
	rep, err := Run(context.Background(), Config{BaseURL: srv.URL, Secret: "s", Rate: 100, Duration: time.Second,
		Overrun: 500 * time.Millisecond, Workers: 2, Users: 5, ProgressEvery: time.Hour}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if el := time.Since(begin); el > 3*time.Second {
		t.Errorf("run took %s", el)
	}
	// 2 workers × 1.5 s / 50 ms ≈ 60 requests, far fewer than 100.
	if rep.Sent < 30 || rep.Sent > 80 || rep.Accepted != rep.Sent {
		t.Errorf("sent %d, accepted %d", rep.Sent, rep.Accepted)
	}
	if rep.ScheduleLag.Max < 200*time.Millisecond {
		t.Errorf("schedule lag %v", rep.ScheduleLag)
	}
	if f := rep.Failures(); len(f) != 1 || !strings.Contains(f[0], "scheduled requests not sent") {
		t.Errorf("Failures = %q", f)
	}
	if md := rep.Markdown(); !strings.Contains(md, "scheduled requests not sent") {
		t.Errorf("Markdown:\n%s", md)
	}
}

// isStopped reports whether /proc shows pid stopped.
func isStopped(pid int) bool {
	state, err := procState(pid)
	return err == nil && state == 'T'
}

func TestRunPausesWhileSending(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc")
	}
	child := exec.Command("sleep", "60")
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = child.Process.Kill(); _ = child.Wait() }()
	pid := child.Process.Pid

	var stoppedDuring atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		io.Copy(io.Discard, req.Body)
		if isStopped(pid) {
			stoppedDuring.Add(1)
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	rep, err := Run(context.Background(), Config{BaseURL: srv.URL, Secret: "s", Rate: 50, Duration: 500 * time.Millisecond,
		Workers: 2, Users: 5, ProgressEvery: time.Hour, Paused: []NamedPID{{Name: "worker", PID: pid}},
		Targets: Targets{MaxP99Lag: time.Second}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n := stoppedDuring.Load(); n != rep.Sent || n == 0 {
		t.Errorf("the process was stopped during %d of %d requests", n, rep.Sent)
	}
	// Continued once sending is done (the kernel may take a moment).
	deadline := time.Now().Add(5 * time.Second)
	for isStopped(pid) {
		if time.Now().After(deadline) {
			t.Fatal("the paused process was not continued")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The lag target is not checked when the pipeline was paused.
	if f := rep.Failures(); len(f) != 0 {
		t.Errorf("Failures = %q", f)
	}
	if md := rep.Markdown(); !strings.Contains(md, "Paused while sending | worker") {
		t.Errorf("Markdown lacks the paused row:\n%s", md)
	}
	// A pid that cannot be signalled fails the run before anything is sent.
	if _, err := Run(context.Background(), Config{BaseURL: srv.URL, Secret: "s", Rate: 10, Duration: 100 * time.Millisecond,
		Paused: []NamedPID{{Name: "gone", PID: 0}}}, nil); err == nil {
		t.Error("Run with an unusable pid to pause succeeded")
	}
}
