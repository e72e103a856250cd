package simulate

import (
	"fmt"
	"math"
	"sort"
	"strings"
)

// Report is the outcome of a run.
type Report struct {
	Config Config
	// Command is the command line that produced the report, and Data a
	// description of the geo data (both set by the caller).
	Command, Data string
	World         WorldStats
	Traffic       TrafficStats
	Results       []Result
}

// WorldStats describe the networks found in the geo data.
type WorldStats struct {
	Nets, Countries, DatacenterNets, DatacenterCountries int
}

func worldStats(w *World) WorldStats {
	return WorldStats{Nets: len(w.Nets), Countries: len(w.Countries), DatacenterNets: len(w.dcAll), DatacenterCountries: len(w.dcCountry)}
}

// Row is one attacker type's outcome for one scorer.
type Row struct {
	Label          Label
	N              int
	Catch1, Catch5 float64 // share scored above the 1% and 5% thresholds
	AUC            float64
	// Policy is the share challenged or denied by Moat's default policy
	// (NaN for the baseline, which has no policy).
	Policy float64
}

// Summary is one scorer's outcome.
type Summary struct {
	Scorer string
	LegitN int
	// Thr1 and Thr5 are the thresholds (score > Thr) that challenge at
	// most 1% and 5% of the legitimate logins; FPR1 and FPR5 what they
	// actually challenge.
	Thr1, Thr5, FPR1, FPR5 float64
	// LegitChallenge and LegitDeny are the shares of legitimate logins the
	// default policy challenges and denies (NaN without a policy).
	LegitChallenge, LegitDeny float64
	Rows                      []Row
}

// Summarize computes the metrics of a result.
func Summarize(r Result) Summary {
	s := Summary{Scorer: r.Scorer, LegitN: len(r.Legit), LegitChallenge: math.NaN(), LegitDeny: math.NaN()}
	s.Thr1, s.Thr5 = ThresholdAt(r.Legit, 0.01), ThresholdAt(r.Legit, 0.05)
	s.FPR1, s.FPR5 = Above(r.Legit, s.Thr1), Above(r.Legit, s.Thr5)
	if c := r.Actions[Legitimate]; c != nil {
		n := float64(c[0] + c[1] + c[2])
		s.LegitChallenge, s.LegitDeny = float64(c[1])/n, float64(c[2])/n
	}
	for _, l := range AttackLabels {
		a := r.Attacks[l]
		row := Row{Label: l, N: len(a), Catch1: Above(a, s.Thr1), Catch5: Above(a, s.Thr5), AUC: AUC(r.Legit, a), Policy: math.NaN()}
		if c := r.Actions[l]; c != nil {
			row.Policy = float64(c[1]+c[2]) / float64(c[0]+c[1]+c[2])
		}
		s.Rows = append(s.Rows, row)
	}
	return s
}

// Check is one target of the issue and whether the run meets it.
type Check struct {
	Target string
	Met    bool
	Detail string
}

// Checks evaluates the targets: Moat (as the scorer runs it) at or above
// the baseline for every attacker type (share caught at 1% and at 5%, and
// AUC), and at least 99% of naive and VPN and 90% of targeted attackers
// caught at a 5% legitimate challenge rate.
func (r *Report) Checks() []Check {
	var moat, base *Summary
	for _, res := range r.Results {
		s := Summarize(res)
		switch res.Scorer {
		case ScorerMoat:
			moat = &s
		case ScorerFreeman:
			base = &s
		}
	}
	if moat == nil || base == nil {
		return nil
	}
	var out []Check
	for i, row := range moat.Rows {
		b := base.Rows[i]
		out = append(out, Check{
			Target: fmt.Sprintf("Moat ≥ baseline (caught at 1%% and 5%%, AUC), %s", row.Label),
			Met:    row.Catch1 >= b.Catch1 && row.Catch5 >= b.Catch5 && row.AUC >= b.AUC,
			Detail: fmt.Sprintf("caught at 1%%: %s vs %s; at 5%%: %s vs %s; AUC %.5f vs %.5f",
				pct(row.Catch1), pct(b.Catch1), pct(row.Catch5), pct(b.Catch5), row.AUC, b.AUC),
		})
	}
	want := map[Label]float64{Naive: 0.99, VPN: 0.99, Targeted: 0.90}
	for _, row := range moat.Rows {
		if t, ok := want[row.Label]; ok {
			out = append(out, Check{
				Target: fmt.Sprintf("≥ %s of %s attackers caught at ≤ 5%% legitimate challenges", pct(t), row.Label),
				Met:    row.Catch5 >= t,
				Detail: fmt.Sprintf("%s (legitimate challenged: %s)", pct(row.Catch5), pct(moat.FPR5)),
			})
		}
	}
	return out
}

// writeSignals renders the share of each label's logins each signal fired
// on (the signals that fired at all, by name).
func writeSignals(b *strings.Builder, res Result, s Summary) {
	seen := map[string]bool{}
	var names []string
	labels := append([]Label{Legitimate}, AttackLabels...)
	for _, l := range labels {
		for name := range res.Signals[l] {
			if !seen[name] {
				seen[name] = true
				names = append(names, name)
			}
		}
	}
	if len(names) == 0 {
		return
	}
	sort.Strings(names)
	b.WriteString("\nSignals fired, as a share of each kind of login:\n\n| signal |")
	for _, l := range labels {
		fmt.Fprintf(b, " %s |", l)
	}
	b.WriteString("\n|---|" + strings.Repeat("---:|", len(labels)) + "\n")
	for _, name := range names {
		fmt.Fprintf(b, "| `%s` |", name)
		for _, l := range labels {
			n := s.LegitN
			if l != Legitimate {
				n = len(res.Attacks[l])
			}
			fmt.Fprintf(b, " %s |", pct(float64(res.Signals[l][name])/float64(max(1, n))))
		}
		b.WriteString("\n")
	}
}

func pct(x float64) string {
	if math.IsNaN(x) {
		return "–"
	}
	return fmt.Sprintf("%.1f%%", 100*x)
}

func num(x float64) string {
	switch {
	case math.IsInf(x, 1):
		return "+∞"
	case math.IsInf(x, -1):
		return "−∞"
	}
	return fmt.Sprintf("%.4g", x)
}

var scorerTitles = map[string]string{
	ScorerMoat:        "Moat, as the scorer runs it (`LearnPopulation: false`)",
	ScorerMoatLearned: "Moat with a learned population (`LearnPopulation: true`)",
	ScorerFreeman:     "Freeman et al. baseline",
}

// Markdown renders the report. It contains no timings, so the same run
// renders the same bytes.
func (r *Report) Markdown() string {
	var b strings.Builder
	c := r.Config
	fmt.Fprintf(&b, "Command (seed %d):\n\n```sh\n%s\n```\n\n", c.Seed, r.Command)
	fmt.Fprintf(&b, "| parameter | value |\n|---|---|\n")
	fmt.Fprintf(&b, "| users | %d |\n| days (history + evaluation) | %d + %d |\n| attacks per type | %d |\n", c.Users, c.Days-c.EvalDays, c.EvalDays, c.AttacksPerType)
	fmt.Fprintf(&b, "| victims need at least | %d history login(s) |\n| client ids sent | %v |\n| baseline α | %g |\n", c.MinHistory, c.ClientIDs, c.FreemanAlpha)
	fmt.Fprintf(&b, "| geo data | %s |\n", r.Data)
	fmt.Fprintf(&b, "| networks found | %d /24s in %d countries (%d datacenter /24s in %d countries), from %d sampled addresses |\n",
		r.World.Nets, r.World.Countries, r.World.DatacenterNets, r.World.DatacenterCountries, c.GeoSamples)
	t := r.Traffic
	fmt.Fprintf(&b, "| legitimate traffic | %d successful and %d failed logins; %d while travelling, %d through a VPN; %d device changes |\n",
		t.Logins, t.Failed, t.TravelLogins, t.VPNLogins, t.DeviceChanges)
	fmt.Fprintf(&b, "| possible victims | %d users |\n", t.Victims)
	if t.VPNFallback > 0 {
		fmt.Fprintf(&b, "| VPN attacks with no datacenter network in the victim's country (exit elsewhere) | %d |\n", t.VPNFallback)
	}
	for _, res := range r.Results {
		s := Summarize(res)
		title := scorerTitles[s.Scorer]
		if title == "" {
			title = s.Scorer
		}
		fmt.Fprintf(&b, "\n### %s\n\n", title)
		fmt.Fprintf(&b, "%d legitimate logins evaluated. Thresholds on their scores: 1%% → score > %s (challenges %s of them), 5%% → score > %s (challenges %s).",
			s.LegitN, num(s.Thr1), pct(s.FPR1), num(s.Thr5), pct(s.FPR5))
		if !math.IsNaN(s.LegitChallenge) {
			fmt.Fprintf(&b, " The default policy (challenge at risk ≥ 0.6, deny at ≥ 0.9) challenges %s and denies %s of them.", pct(s.LegitChallenge), pct(s.LegitDeny))
		}
		b.WriteString("\n\n| attacker | attacks | caught at 1% | caught at 5% | ROC AUC |")
		policy := !math.IsNaN(s.LegitChallenge)
		if policy {
			b.WriteString(" challenged or denied by the default policy |")
		}
		b.WriteString("\n|---|---:|---:|---:|---:|")
		if policy {
			b.WriteString("---:|")
		}
		b.WriteString("\n")
		for _, row := range s.Rows {
			fmt.Fprintf(&b, "| %s | %d | %s | %s | %.4f |", row.Label, row.N, pct(row.Catch1), pct(row.Catch5), row.AUC)
			if policy {
				fmt.Fprintf(&b, " %s |", pct(row.Policy))
			}
			b.WriteString("\n")
		}
		if res.Scorer == ScorerMoat {
			writeSignals(&b, res, s)
		}
	}
	if checks := r.Checks(); len(checks) > 0 {
		b.WriteString("\n### Targets\n\n| target | met | measured (Moat vs baseline) |\n|---|---|---|\n")
		for _, ch := range checks {
			met := "no"
			if ch.Met {
				met = "yes"
			}
			fmt.Fprintf(&b, "| %s | %s | %s |\n", ch.Target, met, ch.Detail)
		}
	}
	return b.String()
}

// Markers delimit the generated part of the report file: Splice replaces
// what is between them and keeps the hand-written text around them.
const (
	BeginMarker = "<!-- BEGIN GENERATED REPORT: moat simulate; do not edit by hand -->"
	EndMarker   = "<!-- END GENERATED REPORT -->"
)

// Splice puts block between the markers of doc. A doc without the
// markers (or an empty one) becomes a minimal file holding the block.
func Splice(doc, block string) string {
	i, j := strings.Index(doc, BeginMarker), strings.Index(doc, EndMarker)
	if i < 0 || j < i {
		return "# Risk quality\n\nThe report of `moat simulate` (see internal/simulate).\n\n" + BeginMarker + "\n" + block + EndMarker + "\n"
	}
	return doc[:i+len(BeginMarker)] + "\n" + block + doc[j:]
}
