package simulate

import (
	"math"
	"testing"
)

func TestAUC(t *testing.T) {
	cases := []struct {
		name     string
		neg, pos []float64
		want     float64
	}{
		{"separated", []float64{0.1, 0.2}, []float64{0.3, 0.4}, 1},
		{"reversed", []float64{0.3, 0.4}, []float64{0.1, 0.2}, 0},
		{"constant scores", []float64{0.5, 0.5, 0.5}, []float64{0.5, 0.5}, 0.5},
		// pairs won: 0.3 beats 0.1 (1), 0.5 beats 0.1, 0.35, 0.4 (3),
		// 0.9 beats all four (4): 8 of 12
		{"mixed", []float64{0.1, 0.4, 0.35, 0.8}, []float64{0.3, 0.5, 0.9}, 8.0 / 12},
		// 0.5 beats 0.2 and ties 0.5 (1.5), 0.7 beats both (2): 3.5 of 4
		{"tie", []float64{0.2, 0.5}, []float64{0.5, 0.7}, 3.5 / 4},
		// one positive among three equal negatives and one above: ties
		// count half: (0.5+0.5+0.5+0)/4
		{"ties with negatives", []float64{1, 1, 1, 2}, []float64{1}, 1.5 / 4},
	}
	for _, c := range cases {
		if got := AUC(c.neg, c.pos); math.Abs(got-c.want) > 1e-12 {
			t.Errorf("%s: AUC %v, want %v", c.name, got, c.want)
		}
	}
	if !math.IsNaN(AUC(nil, []float64{1})) || !math.IsNaN(AUC([]float64{1}, nil)) {
		t.Error("AUC of an empty side is not NaN")
	}
}

func TestThresholdAt(t *testing.T) {
	neg := make([]float64, 100)
	for i := range neg {
		neg[i] = float64(i + 1) // 1..100
	}
	if th := ThresholdAt(neg, 0.05); th != 95 || Above(neg, th) != 0.05 {
		t.Fatalf("5%%: threshold %v flags %v", th, Above(neg, th))
	}
	if th := ThresholdAt(neg, 0.01); th != 99 || Above(neg, th) != 0.01 {
		t.Fatalf("1%%: threshold %v flags %v", th, Above(neg, th))
	}
	if th := ThresholdAt(neg, 0.005); th != 100 || Above(neg, th) != 0 {
		t.Fatalf("below one negative: threshold %v", th)
	}
	// ties are never split: no threshold flags part of a tie, so the rate
	// stays at or below the target
	tied := []float64{0, 0, 0, 0, 0, 0, 0, 0, 5, 5}
	if th := ThresholdAt(tied, 0.15); th != 5 || Above(tied, th) != 0 {
		t.Fatalf("tie at the cut: threshold %v flags %v", th, Above(tied, th))
	}
	if th := ThresholdAt(tied, 0.2); th != 0 || Above(tied, th) != 0.2 {
		t.Fatalf("tie below the cut: threshold %v flags %v", th, Above(tied, th))
	}
	if !math.IsInf(ThresholdAt(neg, 1), -1) || !math.IsInf(ThresholdAt(nil, 0.05), 1) {
		t.Fatal("edge thresholds")
	}
	if got := Above([]float64{1, 2, 3, 4}, 2.5); got != 0.5 {
		t.Fatalf("Above %v", got)
	}
}

func TestFreemanModel(t *testing.T) {
	m := NewFreeman(1)
	home := FreemanFeatures{"90.1.2.3", "3215", "FR", "ua-chrome", "Chrome", "Mac OS X", "desktop", "fr"}
	other := FreemanFeatures{"41.1.2.3", "36873", "NG", "ua-firefox", "Firefox", "Windows", "desktop", "en"}
	if m.Score(1, home) != 0 {
		t.Fatal("a user without history scored non-zero")
	}
	for i := 0; i < 10; i++ {
		m.Learn(1, home)
		m.Learn(2, other)
	}
	h, a := m.Score(1, home), m.Score(1, other)
	if !(h < 0 && a > 0) {
		t.Fatalf("habitual %v, foreign %v", h, a)
	}
	// one new value: the ratio is p_pop / (α·p_pop / (n+α)) = (n+α)/α
	x := home
	x[fIP] = "90.1.2.4"
	want := h - math.Log(m.popP(fIP, home[fIP])/((10+m.popP(fIP, home[fIP]))/11)) + math.Log(11)
	if got := m.Score(1, x); math.Abs(got-want) > 1e-9 {
		t.Fatalf("new IP: %v, want %v", got, want)
	}
}
