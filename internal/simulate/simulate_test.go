package simulate

import (
	"context"
	"strings"
	"testing"

	"github.com/moat-dev/moat/scorer"
)

// TestEndToEnd runs a small simulation through the real Decider on the
// synthetic geo data: Moat must be at least as good as the baseline for
// every attacker type, and must catch naive attackers. A scorer returning
// constant scores would catch nothing (ties are never split) and fail.
func TestEndToEnd(t *testing.T) {
	cfg := smallConfig()
	cfg.Users, cfg.AttacksPerType = 300, 150
	rep, err := Run(context.Background(), cfg, scorer.Enrichment{Geo: synthetic(t)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	sums := map[string]Summary{}
	for _, r := range rep.Results {
		sums[r.Scorer] = Summarize(r)
	}
	moat, base := sums[ScorerMoat], sums[ScorerFreeman]
	if moat.LegitN < 1000 || moat.FPR5 > 0.05 || moat.FPR1 > 0.01 {
		t.Fatalf("legitimate logins: %d, challenged at the thresholds %v and %v", moat.LegitN, moat.FPR1, moat.FPR5)
	}
	for i, row := range moat.Rows {
		b := base.Rows[i]
		t.Logf("%-20s moat caught at 1%% %.3f, at 5%% %.3f, AUC %.4f | baseline %.3f %.3f %.4f", row.Label, row.Catch1, row.Catch5, row.AUC, b.Catch1, b.Catch5, b.AUC)
		if row.N != cfg.AttacksPerType || row.Catch5 < b.Catch5 || row.AUC < b.AUC {
			t.Errorf("%s: Moat below the baseline: %+v vs %+v", row.Label, row, b)
		}
	}
	if naive := moat.Rows[0]; naive.Label != Naive || naive.Catch5 < 0.95 || naive.AUC < 0.98 {
		t.Errorf("naive attackers: %+v", naive)
	}
	if bot := moat.Rows[4]; bot.Label != Bot || bot.Policy < 0.95 {
		t.Errorf("bots not stopped by the default policy: %+v", bot)
	}
	if legit := moat.LegitChallenge + moat.LegitDeny; legit > 0.01 {
		t.Errorf("the default policy stops %.3f of legitimate logins", legit)
	}
	md := rep.Markdown()
	for _, want := range []string{"### Targets", "| naive | 150 |", "Freeman et al. baseline", "`new_device`"} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q", want)
		}
	}
}

// TestRunDeterministic: the same configuration gives the same report,
// byte for byte.
func TestRunDeterministic(t *testing.T) {
	cfg := smallConfig()
	cfg.Users, cfg.Days, cfg.AttacksPerType = 80, 20, 30
	var out [2]string
	for i := range out {
		rep, err := Run(context.Background(), cfg, scorer.Enrichment{Geo: synthetic(t)}, nil)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = rep.Markdown()
	}
	if out[0] != out[1] {
		t.Fatal("two runs with the same seed reported differently")
	}
}

func TestSplice(t *testing.T) {
	doc := "# Title\n\nintro\n\n" + BeginMarker + "\nold\n" + EndMarker + "\n\nanalysis\n"
	got := Splice(doc, "new\n")
	if got != "# Title\n\nintro\n\n"+BeginMarker+"\nnew\n"+EndMarker+"\n\nanalysis\n" {
		t.Fatalf("splice: %q", got)
	}
	if fresh := Splice("", "r\n"); !strings.Contains(fresh, BeginMarker+"\nr\n"+EndMarker) {
		t.Fatalf("fresh file: %q", fresh)
	}
}
