package loadgen

import (
	"fmt"
	"math"
	"slices"
	"time"
)

// Percentiles summarizes a set of durations.
type Percentiles struct {
	N                  int
	P50, P95, P99, Max time.Duration
	Mean               time.Duration
}

// Percentile returns the p-th percentile (0 < p <= 100) of sorted by the
// nearest-rank method: the smallest value such that at least p% of the values
// are less than or equal to it. sorted must be in ascending order; an empty
// slice gives 0.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	if p <= 0 {
		return sorted[0]
	}
	rank := int(math.Ceil(p / 100 * float64(n)))
	if rank < 1 {
		rank = 1
	}
	if rank > n {
		rank = n
	}
	return sorted[rank-1]
}

// Summarize sorts ds in place and returns its percentiles.
func Summarize(ds []time.Duration) Percentiles {
	if len(ds) == 0 {
		return Percentiles{}
	}
	slices.Sort(ds)
	var sum float64
	for _, d := range ds {
		sum += float64(d)
	}
	return Percentiles{
		N:    len(ds),
		P50:  Percentile(ds, 50),
		P95:  Percentile(ds, 95),
		P99:  Percentile(ds, 99),
		Max:  ds[len(ds)-1],
		Mean: time.Duration(sum / float64(len(ds))),
	}
}

// String renders "p50 1.2 ms · p95 … · p99 … · max …".
func (p Percentiles) String() string {
	if p.N == 0 {
		return "no samples"
	}
	return fmt.Sprintf("p50 %s · p95 %s · p99 %s · max %s", fmtDur(p.P50), fmtDur(p.P95), fmtDur(p.P99), fmtDur(p.Max))
}

// fmtDur prints milliseconds with a precision that suits the magnitude.
func fmtDur(d time.Duration) string {
	ms := float64(d) / float64(time.Millisecond)
	switch {
	case ms < 10:
		return fmt.Sprintf("%.2f ms", ms)
	case ms < 1000:
		return fmt.Sprintf("%.1f ms", ms)
	default:
		return fmt.Sprintf("%.2f s", ms/1000)
	}
}
