// Package chaos_test kills Moat's roles for real: each role runs as its own
// `moat` process against a `moat broker` process and a real ClickHouse,
// under load, while the test SIGKILLs the scorer, the projector and the
// webhooker, takes the webhook receiver down for a while, restarts the
// broker and stops ClickHouse. Afterwards every event accepted with 2xx is
// in ClickHouse exactly once (FINAL) and has exactly one decision, and
// every incident reached the receiver, signed.
//
// `make chaos` runs it with MOAT_CHAOS_EVENTS=100000 and a 60 s ClickHouse
// outage (the receiver is then down for 60 s too); `make test` runs a
// shortened form (6,000 events, ClickHouse down 5 s, the receiver 10 s).
// MOAT_CHAOS_RECEIVER_DOWN_SECONDS sets the receiver's outage (at most 90).
package chaos_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/moat-dev/moat/internal/chtest"
	"github.com/moat-dev/moat/schemas"
	"github.com/moat-dev/moat/webhooker"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

func TestMain(m *testing.M) {
	code := chtest.Run(m)
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath)) // about 50 MB a run
	}
	os.Exit(code)
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// moatBinary builds cmd/moat once per test binary.
func moatBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "moat-chaos-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "moat")
		if out, err := exec.Command("go", "build", "-o", binPath, "../../cmd/moat").CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// proc is one moat process that can be killed and started again.
type proc struct {
	t    *testing.T
	name string
	args []string
	env  []string
	log  *os.File
	cmd  *exec.Cmd
	done chan struct{}
	// stopping and killing mark exits the test caused.
	stopping, killing atomic.Bool
}

func (p *proc) start() {
	p.t.Helper()
	p.cmd = exec.Command(p.args[0], p.args[1:]...)
	p.cmd.Env = append(os.Environ(), p.env...)
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		p.t.Fatalf("start %s: %v", p.name, err)
	}
	p.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) {
		err := cmd.Wait()
		if !p.stopping.Load() && !p.killing.Load() {
			p.t.Errorf("%s exited on its own: %v", p.name, err)
		}
		close(done)
	}(p.cmd, p.done)
}

func (p *proc) kill() {
	p.killing.Store(true)
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
	p.killing.Store(false)
}

func (p *proc) stop() {
	p.stopping.Store(true)
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		p.kill()
	}
}

// receiverAt is the share of the events sent when the webhook receiver
// goes down: early, so that in the CI form it is back before the
// webhooker's SIGKILL (at half the events) and one webhooker process rides
// the outage out; make chaos's longer outage spans that SIGKILL and the
// broker's restart.
const receiverAt = 0.1

// maxReceiverDown bounds the receiver's outage so that no delivery reaches
// the third retry tier (10 minutes): the circuit breaker closes at most
// one cooldown (30 s) after the receiver is back, before any delivery has
// used its third attempt (30 s + 2 min after its first), so every delivery
// is done by its third attempt (see webhooker.DefaultSchedule).
const maxReceiverDown = 90 * time.Second

func TestChaos(t *testing.T) {
	events := envInt("MOAT_CHAOS_EVENTS", 6000)
	chDown := time.Duration(envInt("MOAT_CHAOS_CLICKHOUSE_DOWN_SECONDS", 5)) * time.Second
	defRecvDown := 10 // CI: incidents refused by it are delivered on the 30 s tier
	if events >= 50000 {
		defRecvDown = 60 // make chaos: long enough for second attempts to fail too
	}
	recvDown := time.Duration(envInt("MOAT_CHAOS_RECEIVER_DOWN_SECONDS", defRecvDown)) * time.Second
	if recvDown > maxReceiverDown {
		t.Fatalf("MOAT_CHAOS_RECEIVER_DOWN_SECONDS: at most %v (deliveries would reach the 10-minute retry tier)", maxReceiverDown)
	}
	begin := time.Now()
	note := func(format string, args ...any) {
		t.Helper()
		t.Logf("[%6.1fs] "+format, append([]any{time.Since(begin).Seconds()}, args...)...)
	}
	srv := chtest.Server()
	if srv == nil {
		t.Skip("ClickHouse is external ($CLICKHOUSE_ADDR): the test cannot stop it")
	}
	conn, db := chtest.NewDatabase(t)
	dir := t.TempDir()
	bin := moatBinary(t)
	logf, err := os.Create(filepath.Join(dir, "roles.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("role logs (tail):\n%s", tail(string(b), 60000))
		}
	}()
	kafkaPort, httpPort := freePort(t), freePort(t)
	brokers := fmt.Sprintf("127.0.0.1:%d", kafkaPort)
	secret := "chaos-secret-0123456789abcdef01234"
	// The webhook receiver: every 10th call is a risk call denied by a
	// Castle test token, whose $incident.confirmed must reach it, signed
	// with the app's secret (the endpoint has none of its own).
	rc := newReceiver(secret)
	receiver := httptest.NewServer(rc)
	defer receiver.Close()
	appsFile := filepath.Join(dir, "apps.json")
	if err := os.WriteFile(appsFile, []byte(fmt.Sprintf(`{"apps":[{"id":"default","name":"Chaos","secret":%q,"test":true,
		"risk":{"timeout_ms":2000,"failover":"allow"},
		"webhooks":[{"id":"ep","url":%q,"types":["$incident.confirmed"],"allow_private":true}]}]}`, secret, receiver.URL)), 0o600); err != nil {
		t.Fatal(err)
	}
	common := []string{"MOAT_KAFKA_BROKERS=" + brokers, "MOAT_KAFKA_PARTITIONS=4", "MOAT_LOG_FORMAT=text", "MOAT_LOG_LEVEL=warn",
		"MOAT_CLICKHOUSE_ADDR=" + chtest.Addr(t), "MOAT_CLICKHOUSE_DATABASE=" + db, "MOAT_APPS_FILE=" + appsFile,
		"MOAT_DEVICE_KEY=chaos-device-key-0123456789abcdef0123", "MOAT_METRICS_ADDR="}
	mk := func(name string, args ...string) *proc {
		p := &proc{t: t, name: name, args: append([]string{bin}, args...), env: common, log: logf}
		p.start()
		t.Cleanup(p.stop)
		return p
	}
	broker := mk("broker", "broker", "--data-dir", filepath.Join(dir, "kafka"), "--kafka-port", strconv.Itoa(kafkaPort))
	time.Sleep(500 * time.Millisecond)
	mk("ingest", "ingest", "--http-addr", fmt.Sprintf("127.0.0.1:%d", httpPort), "--produce-timeout", "2s")
	scorer := mk("scorer", "scorer", "--scorer-transactional-id", "chaos-scorer")
	projector := mk("projector", "projector", "--projector-flush-interval", "200ms")
	hooks := mk("webhooker", "webhooker")
	url := fmt.Sprintf("http://127.0.0.1:%d/v1/track", httpPort)
	riskURL := fmt.Sprintf("http://127.0.0.1:%d/v1/risk", httpPort)
	waitHTTP(t, fmt.Sprintf("http://127.0.0.1:%d/readyz", httpPort))

	// Load: workers post every event until it is accepted (as an app that
	// retries 503s and connection errors would), counting acceptances.
	var accepted, attempts, risky, riskyWhileDown atomic.Int64
	var next atomic.Int64
	var wg sync.WaitGroup
	client := &http.Client{Timeout: 10 * time.Second}
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(events) {
					return
				}
				body := fmt.Sprintf(`{"event":"$login.succeeded","user_id":"u%d","properties":{"seq":%d},
					"context":{"ip":"203.0.113.%d","headers":{"User-Agent":"Mozilla/5.0 (X11; Linux x86_64) Firefox/125.0"}}}`, i%500, i, i%250)
				target, want := url, 204
				if i%10 == 0 { // a login the policy denies: one incident each
					target, want = riskURL, 201
					body = fmt.Sprintf(`{"type":"$login","status":"$succeeded","user":{"id":"r%d"},"request_token":"test|policy.action:deny","properties":{"seq":%d},
					"context":{"ip":"198.51.100.%d","headers":{"User-Agent":"Mozilla/5.0 (X11; Linux x86_64) Firefox/125.0"}}}`, i, i, i%250)
					risky.Add(1)
				}
				for try := 0; ; try++ {
					attempts.Add(1)
					req, _ := http.NewRequest("POST", target, strings.NewReader(body))
					req.SetBasicAuth("", secret)
					res, err := client.Do(req)
					if err == nil {
						res.Body.Close()
						if res.StatusCode == want {
							accepted.Add(1)
							if want == 201 && rc.down.Load() {
								riskyWhileDown.Add(1)
							}
							break
						}
					}
					if try > 600 {
						t.Errorf("event %d never accepted", i)
						return
					}
					time.Sleep(100 * time.Millisecond)
				}
			}
		}()
	}
	at := func(frac float64) {
		for next.Load() < int64(float64(events)*frac) {
			time.Sleep(20 * time.Millisecond)
		}
	}
	skip := os.Getenv("MOAT_CHAOS_SKIP") // e.g. "broker,clickhouse" while debugging
	// kill SIGKILLs a role at share frac of the load and starts it again
	// a second later.
	kill := func(frac float64, p *proc) {
		at(frac)
		if strings.Contains(skip, p.name) {
			return
		}
		note("SIGKILL %s", p.name)
		p.kill()
		time.Sleep(time.Second)
		p.start()
	}
	// The webhook receiver goes down while incidents keep being raised,
	// refusing every request (503 or a dropped connection), then comes
	// back.
	var recvUpAt time.Time
	recvDone := make(chan struct{})
	recvCtx, recvCancel := context.WithCancel(context.Background())
	t.Cleanup(func() { recvCancel(); <-recvDone }) // if the test ends early
	pause := func(d time.Duration) bool {
		select {
		case <-recvCtx.Done():
			return false
		case <-time.After(d):
			return true
		}
	}
	go func() {
		defer close(recvDone)
		for next.Load() < int64(float64(events)*receiverAt) {
			if !pause(20 * time.Millisecond) {
				return
			}
		}
		if strings.Contains(skip, "receiver") {
			return
		}
		note("webhook receiver down for %v", recvDown)
		rc.down.Store(true)
		ok := pause(recvDown)
		rc.down.Store(false)
		if ok {
			recvUpAt = time.Now()
			note("webhook receiver up again (%d requests refused)", rc.refused.Load())
		}
	}()
	kill(0.2, scorer)
	kill(0.4, projector)
	kill(0.5, hooks)
	at(0.6)
	if !strings.Contains(skip, "broker") {
		// The broker is restarted, not killed: after a SIGKILL, kfake (a
		// test broker) does not recover its transaction and group-offset
		// state atomically, and the test saw a decision committed twice;
		// a real Kafka keeps transactional offsets in the transaction.
		note("restart the broker from its data dir")
		broker.stop()
		broker.stopping.Store(false)
		time.Sleep(time.Second)
		broker.start()
	}
	at(0.8)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if !strings.Contains(skip, "clickhouse") {
		note("ClickHouse down for %v", chDown)
		if err := srv.Stop(ctx); err != nil {
			t.Fatal(err)
		}
		time.Sleep(chDown)
		if err := srv.Start(ctx); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	<-recvDone
	n := accepted.Load()
	note("%d events accepted (%d attempts)", n, attempts.Load())
	if n != int64(events) {
		t.Fatalf("accepted %d of %d", n, events)
	}

	// Exactly once in ClickHouse, as a query sees it.
	deadline := time.Now().Add(3 * time.Minute)
	var rows uint64
	for {
		qctx, qcancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := conn.QueryRow(qctx, "SELECT count() FROM events FINAL WHERE app_id = 'default'").Scan(&rows)
		qcancel()
		if err == nil && rows >= uint64(n) || time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	time.Sleep(time.Second)
	qctx, qcancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer qcancel()
	var distinctSeq uint64
	if err := conn.QueryRow(qctx, `SELECT count(), uniqExact(visitParamExtractUInt(properties, 'seq')) FROM events FINAL WHERE app_id = 'default'`).Scan(&rows, &distinctSeq); err != nil {
		t.Fatal(err)
	}
	if rows != uint64(n) || distinctSeq != uint64(n) {
		adm := kadm.NewClient(mustClient(t, brokers))
		for _, topic := range []string{schemas.TopicEvents, schemas.TopicDecisions} {
			hw, _ := adm.ListEndOffsets(context.Background(), topic)
			lso, _ := adm.ListCommittedOffsets(context.Background(), topic)
			hw.Each(func(o kadm.ListedOffset) {
				l, _ := lso.Lookup(topic, o.Partition)
				t.Logf("%s/%d: high watermark %d, last stable %d", topic, o.Partition, o.Offset, l.Offset)
			})
		}
		for _, g := range []string{schemas.GroupScorer, schemas.GroupProjector} {
			off, err := adm.FetchOffsets(context.Background(), g)
			t.Logf("group %s offsets %v err %v", g, off, err)
		}
		if os.Getenv("MOAT_CHAOS_DUMP") != "" {
			_ = projector.cmd.Process.Signal(syscall.SIGQUIT)
			time.Sleep(2 * time.Second)
		}
		t.Fatalf("ClickHouse has %d rows (%d distinct events) for %d accepted", rows, distinctSeq, n)
	}

	// Exactly one committed decision per event: read every partition of the
	// decisions topic up to its last stable offset.
	seen := map[string]int{}
	readCommitted(t, brokers, schemas.TopicDecisions, func(r *kgo.Record) {
		var d struct {
			Event struct {
				ID string `json:"id"`
			} `json:"event"`
		}
		if json.Unmarshal(r.Value, &d) == nil {
			seen[d.Event.ID]++
		}
	})
	// No event has two committed decisions.
	for id, c := range seen {
		if c != 1 {
			t.Fatalf("event %s has %d committed decisions", id, c)
		}
	}
	if len(seen) != int(n) {
		t.Fatalf("%d of %d events have a committed decision", len(seen), n)
	}

	// Every committed $incident.confirmed reached the endpoint.
	// incidents: delivery id → the body the webhooker must send.
	incidents := map[string][]byte{}
	readCommitted(t, brokers, schemas.TopicIncidents, func(r *kgo.Record) {
		var nt schemas.Notification
		if json.Unmarshal(r.Value, &nt) == nil && nt.Type == schemas.NotifyIncidentConfirmed {
			body, err := webhooker.Body(&nt)
			if err != nil {
				t.Errorf("incident %s: %v", nt.ID, err)
			}
			incidents[webhooker.DeliveryID("default", "ep", nt.ID)] = body
		}
	})
	if len(incidents) != int(risky.Load()) {
		t.Fatalf("%d incidents on the topic for %d denied logins", len(incidents), risky.Load())
	}
	// Deliveries the receiver refused wait on the retry tiers: the first
	// retry comes 30 s (+10% jitter) after the failure, and the circuit
	// breaker defers every delivery for a cooldown (30 s) after five
	// failures in a row, so a delivery deferred again at its second attempt
	// waits 2 minutes more. Wait for that, plus a minute for the consumer
	// groups to settle after the restarts; it returns as soon as all are in.
	deadline = time.Now().Add(time.Minute)
	if !recvUpAt.IsZero() {
		retry := time.Duration(float64(webhooker.DefaultSchedule[1]) * (1 + webhooker.DefaultJitter))
		if d := recvUpAt.Add(webhooker.DefaultBreakerCooldown + retry + time.Minute); d.After(deadline) {
			deadline = d
		}
	}
	if m := rc.missing(incidents); m > 0 {
		note("%d of %d incidents not delivered yet; waiting up to %v", m, len(incidents), time.Until(deadline).Round(time.Second))
	}
	for rc.missing(incidents) > 0 && rc.rejected() == 0 && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
	rep := rc.check(incidents)
	for i, p := range rep.problems {
		if i == 10 {
			t.Errorf("... and %d more", len(rep.problems)-10)
			break
		}
		t.Error(p)
	}
	if len(rep.problems) > 0 {
		t.FailNow()
	}
	if m := rc.missing(incidents); m > 0 {
		t.Fatalf("%d of %d incidents never delivered", m, len(incidents))
	}
	note("%d incidents, all delivered and signed: %d processed once each (%d requests answered 2xx, %d of them repeats); "+
		"%d processed on a retry (attempt up to %d)", len(incidents), rep.processed, rep.requests, rep.duplicates, rep.retried, rep.maxAttempt)
	if !recvUpAt.IsZero() {
		note("receiver outage: %d denied logins accepted while it was down; %d requests refused (%d answered 503, %d connections dropped) for %d delivery ids",
			riskyWhileDown.Load(), rep.refused, rep.refused-rep.dropped, rep.dropped, rep.refusedIDs)
		if rep.refused == 0 || riskyWhileDown.Load() == 0 {
			t.Fatal("the receiver's outage refused no delivery, or no incident was raised during it: it tested nothing")
		}
	}
}

// readCommitted calls fn with every committed record of topic (control
// records excluded), reading each partition up to its last stable offset.
func readCommitted(t *testing.T, brokers, topic string, fn func(*kgo.Record)) {
	t.Helper()
	adm := kadm.NewClient(mustClient(t, brokers))
	lsos, err := adm.ListCommittedOffsets(context.Background(), topic)
	if err != nil {
		t.Fatal(err)
	}
	want := map[int32]int64{}
	lsos.Each(func(o kadm.ListedOffset) { want[o.Partition] = o.Offset })
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.KeepControlRecords())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	pos := map[int32]int64{}
	done := func() bool {
		for p, o := range want {
			if pos[p] < o {
				return false
			}
		}
		return true
	}
	deadline := time.Now().Add(2 * time.Minute)
	for !done() && time.Now().Before(deadline) {
		pctx, pcancel := context.WithTimeout(context.Background(), 2*time.Second)
		fs := cl.PollFetches(pctx)
		pcancel()
		fs.EachError(func(_ string, p int32, err error) {
			if err != context.DeadlineExceeded {
				t.Logf("fetch %s/%d: %v", topic, p, err)
			}
		})
		fs.EachRecord(func(r *kgo.Record) {
			pos[r.Partition] = r.Offset + 1
			if !r.Attrs.IsControl() {
				fn(r)
			}
		})
	}
	if !done() {
		t.Fatalf("%s: read up to offsets %v in 2 minutes, last stable offsets %v", topic, pos, want)
	}
}

func mustClient(t *testing.T, brokers string) *kgo.Client {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

func waitHTTP(t *testing.T, url string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if res, err := http.Get(url); err == nil {
			res.Body.Close()
			if res.StatusCode == 200 {
				return
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("%s never ready", url)
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[len(s)-n:]
}
