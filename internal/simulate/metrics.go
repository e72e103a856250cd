package simulate

import (
	"math"
	"sort"
)

// AUC is the area under the ROC curve of a score that should rank
// positives (attacks) above negatives (legitimate logins): the
// Mann-Whitney U statistic divided by len(neg)·len(pos), which is
// P(pos > neg) + ½·P(pos = neg) over all pairs. Ties get average ranks.
// It is NaN when either side is empty.
func AUC(neg, pos []float64) float64 {
	if len(neg) == 0 || len(pos) == 0 {
		return math.NaN()
	}
	type item struct {
		v   float64
		pos bool
	}
	all := make([]item, 0, len(neg)+len(pos))
	for _, v := range neg {
		all = append(all, item{v, false})
	}
	for _, v := range pos {
		all = append(all, item{v, true})
	}
	sort.Slice(all, func(i, j int) bool { return all[i].v < all[j].v })
	var rankSum float64 // ranks of the positives, 1-based, ties averaged
	for i := 0; i < len(all); {
		j := i
		for j < len(all) && all[j].v == all[i].v {
			j++
		}
		avg := float64(i+1+j) / 2 // mean of ranks i+1..j
		for k := i; k < j; k++ {
			if all[k].pos {
				rankSum += avg
			}
		}
		i = j
	}
	np, nn := float64(len(pos)), float64(len(neg))
	u := rankSum - np*(np+1)/2
	return u / (np * nn)
}

// ThresholdAt returns the threshold t such that flagging the scores above
// t (score > t) flags at most rate·len(neg) of the negatives, with t as
// low as possible. Ties at t are not flagged, so the achieved rate may be
// below rate but never above it. With no negatives it is +Inf.
func ThresholdAt(neg []float64, rate float64) float64 {
	if len(neg) == 0 {
		return math.Inf(1)
	}
	s := append([]float64(nil), neg...)
	sort.Sort(sort.Reverse(sort.Float64Slice(s)))
	k := int(math.Floor(rate*float64(len(s)) + 1e-9))
	if k >= len(s) {
		return math.Inf(-1)
	}
	return s[k]
}

// Above is the share of scores above t.
func Above(scores []float64, t float64) float64 {
	if len(scores) == 0 {
		return math.NaN()
	}
	n := 0
	for _, v := range scores {
		if v > t {
			n++
		}
	}
	return float64(n) / float64(len(scores))
}
