package loadgen

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat.
// It is 100 on every Linux architecture Go supports (sysconf(_SC_CLK_TCK)
// would need cgo).
const clockTicks = 100

// ProcStats is the CPU and memory use of one process during the run.
type ProcStats struct {
	Name string
	PID  int
	// AvgCPU is the CPU time used per second of wall time over the run, in
	// percent of one core (200 = both cores of a 2-core machine).
	AvgCPU float64
	// CPUSeconds is the CPU time used during the run (user + system).
	CPUSeconds float64
	// MaxRSSMiB is the largest resident set size sampled (VmRSS).
	MaxRSSMiB float64
	// Err is set when the process could not be read (gone, no /proc).
	Err string
}

// procSample reads utime+stime (ticks) of /proc/<pid>/stat and VmRSS (KiB)
// of /proc/<pid>/status; pid 0 means this process.
func procSample(pid int) (ticks uint64, rssKiB uint64, err error) {
	dir := "/proc/self"
	if pid > 0 {
		dir = "/proc/" + strconv.Itoa(pid)
	}
	stat, err := os.ReadFile(dir + "/stat")
	if err != nil {
		return 0, 0, err
	}
	ticks, err = parseStatTicks(stat)
	if err != nil {
		return 0, 0, err
	}
	status, err := os.ReadFile(dir + "/status")
	if err != nil {
		return 0, 0, err
	}
	rssKiB, err = parseStatusRSS(status)
	return ticks, rssKiB, err
}

// parseStatTicks returns utime+stime, the 14th and 15th fields of a
// /proc/<pid>/stat line. The command (2nd field) may hold spaces and
// parentheses, so fields are counted from its last ')'.
func parseStatTicks(stat []byte) (uint64, error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("loadgen: malformed /proc stat")
	}
	f := bytes.Fields(stat[i+1:])
	// f[0] is field 3 (state); utime is field 14, stime 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("loadgen: short /proc stat")
	}
	u, err1 := strconv.ParseUint(string(f[11]), 10, 64)
	s, err2 := strconv.ParseUint(string(f[12]), 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("loadgen: malformed /proc stat times")
	}
	return u + s, nil
}

// parseStatusRSS returns VmRSS in KiB from /proc/<pid>/status (0 for a
// zombie, which has none).
func parseStatusRSS(status []byte) (uint64, error) {
	for line := range bytes.Lines(status) {
		rest, ok := bytes.CutPrefix(line, []byte("VmRSS:"))
		if !ok {
			continue
		}
		f := bytes.Fields(rest)
		if len(f) == 0 {
			break
		}
		return strconv.ParseUint(string(f[0]), 10, 64)
	}
	return 0, nil
}

// cpuTimes are the jiffies of all CPUs from the "cpu" line of /proc/stat.
type cpuTimes struct {
	// busy is every state but idle and iowait, steal included.
	busy, total uint64
	// steal is time the hypervisor ran something else while this
	// machine's CPUs had work: CPU the machine lost, not used.
	steal uint64
	cpus  int
}

// sub returns the machine's use between o and t in percent of one core
// (at most 100 × CPUs): busy, and the part of it that was stolen.
func (t cpuTimes) sub(o cpuTimes) (busy, steal float64, ok bool) {
	if t.total <= o.total || o.total == 0 {
		return 0, 0, false
	}
	// total jiffies advance by CPUs × ticks per second of wall time.
	scale := 100 * float64(t.cpus) / float64(t.total-o.total)
	return scale * float64(t.busy-o.busy), scale * float64(t.steal-o.steal), true
}

// hostSample reads the machine's CPU times.
func hostSample() (cpuTimes, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuTimes{}, err
	}
	return parseProcStat(b)
}

func parseProcStat(b []byte) (cpuTimes, error) {
	var t cpuTimes
	found := false
	for line := range bytes.Lines(b) {
		f := bytes.Fields(line)
		if len(f) == 0 {
			continue
		}
		switch name := string(f[0]); {
		case name == "cpu":
			found = true
			// user nice system idle iowait irq softirq steal guest guest_nice;
			// guest time is already in user.
			for i := 1; i < len(f) && i <= 8; i++ {
				v, err := strconv.ParseUint(string(f[i]), 10, 64)
				if err != nil {
					return cpuTimes{}, fmt.Errorf("loadgen: malformed /proc/stat")
				}
				t.total += v
				if i != 4 && i != 5 { // idle, iowait
					t.busy += v
				}
				if i == 8 {
					t.steal = v
				}
			}
		case len(name) > 3 && name[:3] == "cpu":
			t.cpus++
		}
	}
	if !found {
		return cpuTimes{}, fmt.Errorf("loadgen: no cpu line in /proc/stat")
	}
	return t, nil
}

// HostStats is the whole machine's CPU use during the run.
type HostStats struct {
	CPUs int
	// BusyCPU is the busy time of all CPUs per second of wall time, in
	// percent of one core (at most 100 × CPUs).
	BusyCPU float64
	// StealCPU is the part of BusyCPU the hypervisor gave to other
	// machines: a run with much of it measured a machine that had less
	// than its cores.
	StealCPU float64
}

// procWatcher samples processes every second between start and stop.
type procWatcher struct {
	mu    sync.Mutex
	procs []*watched
	wg    sync.WaitGroup

	host0    cpuTimes
	hostErr  error
	hostStop HostStats
}

// host returns the machine's CPU use since watchProcs.
func (w *procWatcher) host() HostStats {
	if w.hostErr != nil || w.host0.cpus == 0 {
		return HostStats{}
	}
	now, err := hostSample()
	if err != nil {
		return HostStats{CPUs: w.host0.cpus}
	}
	busy, steal, ok := now.sub(w.host0)
	if !ok {
		return HostStats{CPUs: w.host0.cpus}
	}
	return HostStats{CPUs: w.host0.cpus, BusyCPU: busy, StealCPU: steal}
}

type watched struct {
	name         string
	pid          int
	t0           time.Time
	ticks0       uint64
	last         time.Time
	ticksLast    uint64
	maxRSS       uint64
	err          error
	haveBaseline bool
}

// watchProcs starts sampling; pid 0 is this process.
func watchProcs(ctx context.Context, named []NamedPID) *procWatcher {
	w := &procWatcher{}
	w.host0, w.hostErr = hostSample()
	for _, n := range named {
		p := &watched{name: n.Name, pid: n.PID}
		w.sample(p, time.Now())
		w.procs = append(w.procs, p)
	}
	if len(w.procs) == 0 {
		return w
	}
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-t.C:
				w.mu.Lock()
				for _, p := range w.procs {
					w.sample(p, now)
				}
				w.mu.Unlock()
			}
		}
	}()
	return w
}

func (w *procWatcher) sample(p *watched, now time.Time) {
	if p.err != nil {
		return
	}
	ticks, rss, err := procSample(p.pid)
	if err != nil {
		p.err = err
		return
	}
	if !p.haveBaseline {
		p.t0, p.ticks0, p.haveBaseline = now, ticks, true
	}
	p.last, p.ticksLast = now, ticks
	p.maxRSS = max(p.maxRSS, rss)
}

// snapshot returns the totals so far.
func (w *procWatcher) snapshot() []ProcStats {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]ProcStats, 0, len(w.procs))
	for _, p := range w.procs {
		out = append(out, p.stats())
	}
	return out
}

// stop takes a last sample and returns the totals.
func (w *procWatcher) stop(cancel context.CancelFunc) []ProcStats {
	cancel()
	w.wg.Wait()
	now := time.Now()
	w.mu.Lock()
	for _, p := range w.procs {
		w.sample(p, now)
	}
	w.mu.Unlock()
	w.hostStop = w.host()
	return w.snapshot()
}

func (p *watched) stats() ProcStats {
	s := ProcStats{Name: p.name, PID: p.pid, MaxRSSMiB: float64(p.maxRSS) / 1024}
	if p.pid == 0 {
		s.PID = os.Getpid()
	}
	if p.haveBaseline {
		s.CPUSeconds = float64(p.ticksLast-p.ticks0) / clockTicks
		if el := p.last.Sub(p.t0).Seconds(); el > 0 {
			s.AvgCPU = 100 * s.CPUSeconds / el
		}
	}
	if p.err != nil {
		s.Err = p.err.Error()
	}
	return s
}

// procState returns the state letter of /proc/<pid>/stat (R, S, T, ...),
// the field after the command, counted from its last ')'.
func procState(pid int) (byte, error) {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 || i+2 >= len(stat) {
		return 0, fmt.Errorf("loadgen: /proc/%d/stat: no state", pid)
	}
	return stat[i+2], nil
}
