package risk

import (
	"fmt"
	"runtime"
	"testing"
	"time"
)

// benchInputs builds n events over users users, each user with a habitual
// device and place and occasional new ones, so that the feature tables,
// population and signals do real work.
func benchInputs(n, users int) []Input {
	ins := make([]Input, n)
	for i := range ins {
		u := i % users
		in := base(t0.Add(time.Duration(i) * time.Second))
		in.Event.User.ID = fmt.Sprint("user", u)
		in.Device.Fingerprint = fmt.Sprintf("fp-%d-%d", u, i%7/5)
		in.Event.Context.IP = fmt.Sprintf("10.%d.%d.%d", u%250, i%9/8, u%200)
		in.IP.ASN = uint32(1000 + u%50 + i%11/10)
		in.IP.CountryCode = []string{"FR", "FR", "FR", "DE", "FR", "FR", "FR", "FR", "FR", "US"}[i%10]
		in.Event.Status = []string{"$succeeded", "$succeeded", "$succeeded", "$failed"}[i%4]
		ins[i] = in
	}
	return ins
}

// BenchmarkAssess: one event per op against a warm user state, with shared
// state. Target: <= 20 µs/op (50,000 events/s on one core).
func BenchmarkAssess(b *testing.B) {
	const users = 1000
	e := NewEngine(DefaultConfig())
	sh := NewSharedState(0)
	states := make([]UserState, users)
	ins := benchInputs(benchN, users)
	for i := range ins {
		ins[i].Shared = sh
		e.Assess(&states[i%users], ins[i]) // warm up
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		j := i % len(ins)
		e.Assess(&states[j%users], ins[j])
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkAssessNoShared: the same without the cross-user state.
func BenchmarkAssessNoShared(b *testing.B) {
	const users = 1000
	e := NewEngine(DefaultConfig())
	states := make([]UserState, users)
	ins := benchInputs(benchN, users)
	for i := range ins {
		e.Assess(&states[i%users], ins[i])
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		j := i % len(ins)
		e.Assess(&states[j%users], ins[j])
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

func BenchmarkStateMarshal(b *testing.B) {
	st := pathological(NewEngine(DefaultConfig()))
	buf := make([]byte, 0, MaxStateSize)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		buf, _ = st.AppendBinary(buf[:0])
	}
	b.ReportMetric(float64(len(buf)), "bytes/state")
}

func BenchmarkStateUnmarshal(b *testing.B) {
	st := pathological(NewEngine(DefaultConfig()))
	data, _ := st.MarshalBinary()
	var got UserState
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if err := got.UnmarshalBinary(data); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(data)), "bytes/state")
}

// BenchmarkMemoryPerUser measures the heap held per user when 100,000
// users' states are kept in a map keyed by user id (the scorer's likely
// layout), against the constant StateMemory of the struct alone.
func BenchmarkMemoryPerUser(b *testing.B) {
	const users = 100_000
	for i := 0; i < b.N; i++ {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		m := make(map[string]*UserState, users)
		for u := 0; u < users; u++ {
			st := &UserState{}
			st.Learned = uint32(u)
			m[fmt.Sprintf("app\x00u:user-%07d", u)] = st
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/users, "heap-bytes/user")
		b.ReportMetric(float64(StateMemory), "struct-bytes/user")
		runtime.KeepAlive(m)
	}
}

// benchN is the number of distinct prebuilt events the Assess benchmarks
// cycle through (one Input with its header map is ~1.5 KB).
var benchN = 20000
