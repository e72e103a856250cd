package bearer

import (
	"math"
	"sync"
	"time"
)

// Limiter is a token bucket per key (a bearer token's id, an IP address):
// each key may make Burst calls at once and then Rate calls per Per. It
// keeps its buckets in memory, so each api instance limits on its own: N
// instances behind a load balancer allow up to N times the rate.
//
// Buckets that are full again are forgotten once more than maxKeys keys
// are held (at most one sweep a second, so a flood of new keys cannot make
// every call pay for a sweep): keys that keep calling are kept, the rest
// go.
type Limiter struct {
	rate  float64 // tokens per second
	burst float64
	now   func() time.Time

	mu        sync.Mutex
	buckets   map[string]*bucket
	maxKeys   int
	lastSweep time.Time
}

type bucket struct {
	tokens float64
	at     time.Time
}

// NewLimiter allows rate calls per per, with bursts of burst (rate when
// burst < 1). A rate below 1 turns limiting off (Allow always allows). now
// is the clock (time.Now when nil).
func NewLimiter(rate int, per time.Duration, burst int, now func() time.Time) *Limiter {
	if now == nil {
		now = time.Now
	}
	if burst < 1 {
		burst = rate
	}
	l := &Limiter{burst: float64(burst), now: now, buckets: map[string]*bucket{}, maxKeys: 100_000}
	if rate >= 1 && per > 0 {
		l.rate = float64(rate) / per.Seconds()
	}
	return l
}

// Allow takes one call from key's bucket. When the bucket is empty it
// reports false and how long until the next call is allowed.
func (l *Limiter) Allow(key string) (bool, time.Duration) {
	if l == nil || l.rate == 0 {
		return true, 0
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.buckets[key]
	if !ok {
		if len(l.buckets) >= l.maxKeys && now.Sub(l.lastSweep) >= time.Second {
			l.sweep(now)
			l.lastSweep = now
		}
		b = &bucket{tokens: l.burst, at: now}
		l.buckets[key] = b
	}
	b.refill(now, l.rate, l.burst)
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	wait := time.Duration((1 - b.tokens) / l.rate * float64(time.Second))
	return false, wait
}

func (b *bucket) refill(now time.Time, rate, burst float64) {
	if d := now.Sub(b.at); d > 0 {
		b.tokens = math.Min(burst, b.tokens+d.Seconds()*rate)
		b.at = now
	}
}

// sweep forgets the buckets that are full again (they behave exactly like
// new ones).
func (l *Limiter) sweep(now time.Time) {
	for k, b := range l.buckets {
		b.refill(now, l.rate, l.burst)
		if b.tokens >= l.burst {
			delete(l.buckets, k)
		}
	}
}

// RetryAfterSeconds rounds a wait up to whole seconds, at least 1, as the
// Retry-After header wants.
func RetryAfterSeconds(wait time.Duration) int {
	s := int(math.Ceil(wait.Seconds()))
	if s < 1 {
		s = 1
	}
	return s
}
