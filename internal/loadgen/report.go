package loadgen

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Report is the outcome of a run.
type Report struct {
	RunID    string
	Command  string
	Client   string
	Started  time.Time
	Requests int // scheduled: Rate × Duration

	TargetRate int
	Duration   time.Duration
	Workers    int
	Users      int
	Paths      []PathWeight

	// Sent is the number of requests written; Accepted those answered 2xx.
	Sent, Accepted int64
	// AcceptedEvents counts the accepted requests that carry an event (all
	// but the GETs): those looked for in ClickHouse.
	AcceptedEvents int64
	// PerPath breaks the requests down by Paths entry.
	PerPath []PathStats
	// StatusCounts counts HTTP answers by status.
	StatusCounts map[int]int64
	// TransportErrors counts requests without an HTTP answer (refused,
	// reset, timed out); ErrorSamples shows the first distinct ones.
	TransportErrors int64
	ErrorSamples    []string

	// SendElapsed is the wall time of the sending phase, until the last
	// answer. AchievedRate is requests sent per second over the span of
	// send times; AcceptedRate likewise for 2xx.
	SendElapsed                time.Duration
	AchievedRate, AcceptedRate float64

	// Latency of accepted requests, from the write of the request to the
	// end of the answer.
	Latency Percentiles
	// CorrectedLatency is measured from the time the request was due on the
	// constant-rate schedule instead of when it was written: it adds the
	// time requests waited for a free worker (no coordinated omission).
	CorrectedLatency Percentiles
	// ScheduleLag is how late requests left compared with the constant-rate
	// schedule: large values mean the generator (or its workers) could not
	// keep up, and the offered rate was lower than the target.
	ScheduleLag Percentiles

	// LagMeasured is false when no ClickHouse address was given; LagNote
	// says why.
	LagMeasured bool
	LagNote     string
	// Paused names the processes stopped while sending (Config.Paused):
	// the lag is then the catch-up after the pause.
	Paused []string
	// Lag is end-to-end: the poll that first returned the row minus the
	// send time written in the body (lg_sent_ms). PipelineLag is the same
	// poll time minus the server's received_at_ms. Both have the poll
	// interval (plus the poll query time) as resolution.
	Lag, PipelineLag Percentiles
	PollInterval     time.Duration
	Polls            int
	PollQueryAvg     time.Duration
	PollQueryMax     time.Duration
	// Visible counts accepted events the poller saw; DrainElapsed is how
	// long, after sending, the last ones took to appear.
	Visible      int64
	DrainElapsed time.Duration

	// Verified reports that the FINAL count ran: StoredRows is
	// count() FROM events FINAL for the run; Lost counts accepted events
	// missing, Duplicated extra copies of accepted events, Unexpected rows
	// of requests that were not acknowledged (timeouts, 503: allowed).
	Verified                     bool
	StoredRows                   int64
	Lost, Duplicated, Unexpected int64
	LostSample                   []int

	// Procs holds CPU and RSS during the sending phase: the generator
	// ("loadgen"), the server (Config.ServerPID) and Config.ExtraPIDs.
	Procs []ProcStats
	// Host is the whole machine's CPU use over the same phase; what the
	// processes above do not account for was used by others.
	Host HostStats

	// Targets are the goals checked by Failures (zero fields unchecked).
	Targets Targets
}

// PathStats are the HTTP figures of one Paths entry.
type PathStats struct {
	Path string
	// Sent requests; Accepted those answered 2xx.
	Sent, Accepted int64
	// Rate is requests sent per second over the run's span of send times.
	Rate float64
	// Latency of the accepted requests.
	Latency         Percentiles
	StatusCounts    map[int]int64
	TransportErrors int64
}

// errorsString renders the answers that were not 2xx, by status, and the
// transport errors; "none" when there were none.
func (p PathStats) errorsString() string {
	var parts []string
	codes := make([]int, 0, len(p.StatusCounts))
	for c := range p.StatusCounts {
		codes = append(codes, c)
	}
	slices.Sort(codes)
	for _, c := range codes {
		if c < 200 || c >= 300 {
			parts = append(parts, fmt.Sprintf("%d: %d", c, p.StatusCounts[c]))
		}
	}
	if p.TransportErrors > 0 {
		parts = append(parts, fmt.Sprintf("transport: %d", p.TransportErrors))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// PerPathMarkdown renders PerPath as a Markdown table: requests/s, latency
// percentiles of accepted requests and errors by status, one row a path.
func (r Report) PerPathMarkdown() string {
	if len(r.PerPath) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("| Path | Requests/s | Sent / 2xx | p50 | p95 | p99 | max | Errors by status |\n|---|---|---|---|---|---|---|---|\n")
	for _, p := range r.PerPath {
		name := p.Path
		if isRead(name) {
			name = "GET " + name
		} else {
			name = "POST " + name
		}
		lat := func(d time.Duration) string {
			if p.Latency.N == 0 {
				return "-"
			}
			return fmtDur(d)
		}
		fmt.Fprintf(&b, "| %s | %.0f | %d / %d | %s | %s | %s | %s | %s |\n", name, p.Rate, p.Sent, p.Accepted,
			lat(p.Latency.P50), lat(p.Latency.P95), lat(p.Latency.P99), lat(p.Latency.Max), p.errorsString())
	}
	return b.String()
}

// Targets are pass/fail goals for a run.
type Targets struct {
	// MinRate is the accepted events per second to sustain (the run fails
	// below 99% of it).
	MinRate float64
	// MaxP99Latency bounds the p99 ingest latency of accepted requests.
	MaxP99Latency time.Duration
	// MaxP99Lag bounds the p99 end-to-end lag.
	MaxP99Lag time.Duration
}

// Failures lists what went wrong: requests not accepted, lost or
// duplicated events, and missed targets. Empty means the run passed.
func (r Report) Failures() []string {
	var f []string
	if r.Sent == 0 {
		f = append(f, "nothing sent")
	}
	if r.Accepted < r.Sent {
		f = append(f, fmt.Sprintf("%d of %d requests not accepted", r.Sent-r.Accepted, r.Sent))
	}
	if int64(r.Requests) > r.Sent {
		f = append(f, fmt.Sprintf("%d of %d scheduled requests not sent", int64(r.Requests)-r.Sent, r.Requests))
	}
	if r.LagMeasured {
		switch {
		case !r.Verified:
			f = append(f, "loss and duplicates not verified")
		case r.Lost > 0 || r.Duplicated > 0:
			f = append(f, fmt.Sprintf("%d accepted events lost, %d duplicated", r.Lost, r.Duplicated))
		}
	}
	t := r.Targets
	if t.MinRate > 0 && r.AcceptedRate < 0.99*t.MinRate {
		f = append(f, fmt.Sprintf("accepted %.0f events/s, target %.0f", r.AcceptedRate, t.MinRate))
	}
	if t.MaxP99Latency > 0 && r.Latency.P99 >= t.MaxP99Latency {
		f = append(f, fmt.Sprintf("p99 ingest latency %s, target < %s", fmtDur(r.Latency.P99), fmtDur(t.MaxP99Latency)))
	}
	if t.MaxP99Lag > 0 && len(r.Paused) == 0 {
		if !r.LagMeasured {
			f = append(f, "end-to-end lag target set but lag not measured")
		} else if r.Lag.P99 >= t.MaxP99Lag {
			f = append(f, fmt.Sprintf("p99 end-to-end lag %s, target < %s", fmtDur(r.Lag.P99), fmtDur(t.MaxP99Lag)))
		}
	}
	return f
}

// OK reports a run without Failures.
func (r Report) OK() bool { return len(r.Failures()) == 0 }

// Markdown renders the report as a two-column Markdown table for
// docs/performance.md, the command line included.
func (r Report) Markdown() string {
	var b strings.Builder
	row := func(k, v string) { fmt.Fprintf(&b, "| %s | %s |\n", k, strings.ReplaceAll(v, "|", `\|`)) }
	b.WriteString("| Metric | Value |\n|---|---|\n")
	row("Command", "`"+r.Command+"`")
	row("Run", fmt.Sprintf("`%s`, started %s", r.RunID, r.Started.UTC().Format(time.RFC3339)))
	var paths []string
	for _, p := range r.Paths {
		paths = append(paths, fmt.Sprintf("%s %d", p.Path, p.Weight))
	}
	row("Offered load", fmt.Sprintf("%d req/s for %s (%d requests), %d workers (%s client), %d users; paths %s",
		r.TargetRate, r.Duration, r.Requests, r.Workers, r.Client, r.Users, strings.Join(paths, ", ")))
	pct := 0.0
	if r.Sent > 0 {
		pct = 100 * float64(r.Accepted) / float64(r.Sent)
	}
	sent := fmt.Sprintf("%d / %d (%.2f%%)", r.Sent, r.Accepted, pct)
	if int64(r.Requests) > r.Sent {
		sent += fmt.Sprintf("; %d of %d scheduled requests not sent (generator fell behind by more than the overrun)", int64(r.Requests)-r.Sent, r.Requests)
	}
	row("Sent / accepted (2xx)", sent)
	row("Status counts", r.statusString())
	errs := fmt.Sprint(r.TransportErrors)
	if len(r.ErrorSamples) > 0 {
		errs += ": " + strings.Join(r.ErrorSamples, "; ")
	}
	row("Transport errors", errs)
	row("Achieved rate", fmt.Sprintf("%.0f req/s sent, %.0f req/s accepted (sending phase %s)",
		r.AchievedRate, r.AcceptedRate, r.SendElapsed.Round(time.Millisecond)))
	row("Ingest latency (accepted)", r.Latency.String())
	row("Latency from schedule (incl. wait for a worker)", r.CorrectedLatency.String())
	row("Schedule lag (generator)", r.ScheduleLag.String())
	if len(r.Paused) > 0 {
		row("Paused while sending", strings.Join(r.Paused, ", ")+" (SIGSTOP, continued for the drain): ingest measured on its own; the lag below is the catch-up, not the pipeline's, and its target is not checked")
	}
	if r.LagMeasured {
		row("End-to-end lag (send → visible in ClickHouse)", fmt.Sprintf("%s (resolution: %s poll interval + %s avg poll query, %d polls)",
			r.Lag, r.PollInterval, fmtDur(r.PollQueryAvg), r.Polls))
		row("Pipeline lag (received_at_ms → visible)", r.PipelineLag.String())
		row("Visible after sending", fmt.Sprintf("%d of %d accepted events, drain %s", r.Visible, r.AcceptedEvents, r.DrainElapsed.Round(time.Millisecond)))
		if r.Verified {
			v := fmt.Sprintf("%d lost / %d duplicated (FINAL: %d rows of the run; %d rows of unacknowledged requests)",
				r.Lost, r.Duplicated, r.StoredRows, r.Unexpected)
			if len(r.LostSample) > 0 {
				v += fmt.Sprintf("; lost seq e.g. %v", r.LostSample)
			}
			row("Lost / duplicated", v)
		} else {
			row("Lost / duplicated", "not verified")
		}
	} else {
		note := r.LagNote
		if note == "" {
			note = "not measured"
		}
		row("End-to-end lag", note)
		row("Lost / duplicated", note)
	}
	for _, p := range r.Procs {
		v := fmt.Sprintf("avg %.0f%% CPU (%.1f CPU-s), max RSS %.0f MiB", p.AvgCPU, p.CPUSeconds, p.MaxRSSMiB)
		if p.Err != "" {
			v += " (" + p.Err + ")"
		}
		row(fmt.Sprintf("CPU / RSS: %s (pid %d)", p.Name, p.PID), v)
	}
	if r.Host.CPUs > 0 {
		var sum float64
		for _, p := range r.Procs {
			sum += p.AvgCPU
		}
		row("Machine CPU", fmt.Sprintf("%.0f%% busy of %d%% (%d cores), %.0f%% of it stolen by the hypervisor; %.0f%% outside the processes above",
			r.Host.BusyCPU, 100*r.Host.CPUs, r.Host.CPUs, r.Host.StealCPU, max(0, r.Host.BusyCPU-sum)))
	}
	if t := r.Targets; t != (Targets{}) {
		var goals []string
		if t.MinRate > 0 {
			goals = append(goals, fmt.Sprintf("≥ %.0f events/s accepted", t.MinRate))
		}
		if t.MaxP99Latency > 0 {
			goals = append(goals, "p99 ingest latency < "+fmtDur(t.MaxP99Latency))
		}
		if t.MaxP99Lag > 0 {
			goals = append(goals, "p99 end-to-end lag < "+fmtDur(t.MaxP99Lag))
		}
		row("Targets", strings.Join(goals, ", ")+", zero loss")
	}
	if f := r.Failures(); len(f) > 0 {
		row("Result", "FAIL: "+strings.Join(f, "; "))
	} else {
		row("Result", "PASS")
	}
	if pp := r.PerPathMarkdown(); pp != "" {
		b.WriteString("\nPer path (latency of 2xx answers, from the write of the request to the end of the answer):\n\n")
		b.WriteString(pp)
	}
	return b.String()
}

func (r Report) statusString() string {
	if len(r.StatusCounts) == 0 {
		return "none"
	}
	var codes []int
	for c := range r.StatusCounts {
		codes = append(codes, c)
	}
	slices.Sort(codes)
	var parts []string
	for _, c := range codes {
		parts = append(parts, fmt.Sprintf("%d: %d", c, r.StatusCounts[c]))
	}
	return strings.Join(parts, ", ")
}
