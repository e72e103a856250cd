package webhooker

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/moat-dev/moat/internal/kafka"
	"github.com/moat-dev/moat/schemas"
)

// DefaultSchedule is the wait before each retry: 12 attempts over about a
// day (23h42m plus jitter). See the package documentation for the table.
var DefaultSchedule = []time.Duration{
	30 * time.Second,
	2 * time.Minute,
	10 * time.Minute,
	30 * time.Minute,
	time.Hour,
	2 * time.Hour,
	2 * time.Hour,
	2 * time.Hour,
	2 * time.Hour,
	2 * time.Hour,
	12 * time.Hour,
}

// Defaults of Config.
const (
	DefaultJitter                    = 0.1
	DefaultConnectTimeout            = 3 * time.Second
	DefaultRequestTimeout            = 10 * time.Second
	DefaultMaxResponseBytes          = 64 << 10
	DefaultMaxConcurrencyPerEndpoint = 16
	DefaultMaxPending                = 10000
	DefaultBreakerThreshold          = 5
	DefaultBreakerCooldown           = 30 * time.Second
	DefaultCommitInterval            = 500 * time.Millisecond
	DefaultLogFlushInterval          = time.Second
	DefaultShutdownGrace             = 5 * time.Second
	DefaultUserAgent                 = "Moat-Webhooks/1"
)

// maxTiers bounds the number of retry tiers (each is a topic, a consumer
// group and a reader).
const maxTiers = 16

// Config configures a Worker. Start from DefaultConfig.
type Config struct {
	// Kafka says where the brokers are and how the retry and dead-letter
	// topics are created (partitions, retention). Retention must exceed the
	// longest tier delay by a wide margin.
	Kafka kafka.Config
	// Schedule is the wait before each retry; a delivery gets
	// len(Schedule)+1 attempts. Each distinct delay is a retry tier (a
	// topic): keep the set small. Changing a delay creates a new tier
	// topic; records left on the old one are not read any more, so drain
	// (or replay) before changing the schedule.
	Schedule []time.Duration
	// Jitter spreads retries: each retry is due after its tier delay plus
	// a random 0..Jitter fraction of it. In [0, 0.5].
	Jitter float64
	// ConnectTimeout bounds the TCP (and TLS) connect of one attempt and
	// RequestTimeout the whole attempt, response headers and (capped)
	// body included.
	ConnectTimeout time.Duration
	RequestTimeout time.Duration
	// MaxResponseBytes of a response body are read (then discarded); the
	// connection is dropped when the body is longer.
	MaxResponseBytes int64
	// MaxConcurrencyPerEndpoint bounds the requests in flight to one
	// endpoint. A delivery that waits longer than RequestTimeout for a slot
	// is deferred to the retry path.
	MaxConcurrencyPerEndpoint int
	// MaxPending bounds the records each consumer (the incidents consumer
	// and every tier) holds without having settled them: the memory bound,
	// and how far fetching may run ahead of the oldest uncommitted record.
	MaxPending int
	// BreakerThreshold consecutive retryable failures make an endpoint
	// sick for BreakerCooldown: deliveries to it then go straight to the
	// retry path without a request, except one probe per cooldown.
	BreakerThreshold int
	BreakerCooldown  time.Duration
	// CommitInterval is how often settled offsets are committed.
	CommitInterval time.Duration
	// LogFlushInterval is how often the delivery log is flushed.
	LogFlushInterval time.Duration
	// ShutdownGrace is how long Run lets attempts in flight finish after
	// its context ends. Attempts still running then are abandoned: their
	// records are not committed and are delivered again after a restart.
	ShutdownGrace time.Duration
	// UserAgent of the requests.
	UserAgent string
}

// DefaultConfig returns the production defaults.
func DefaultConfig() Config {
	return Config{
		Kafka:                     kafka.DefaultConfig(),
		Schedule:                  slices.Clone(DefaultSchedule),
		Jitter:                    DefaultJitter,
		ConnectTimeout:            DefaultConnectTimeout,
		RequestTimeout:            DefaultRequestTimeout,
		MaxResponseBytes:          DefaultMaxResponseBytes,
		MaxConcurrencyPerEndpoint: DefaultMaxConcurrencyPerEndpoint,
		MaxPending:                DefaultMaxPending,
		BreakerThreshold:          DefaultBreakerThreshold,
		BreakerCooldown:           DefaultBreakerCooldown,
		CommitInterval:            DefaultCommitInterval,
		LogFlushInterval:          DefaultLogFlushInterval,
		ShutdownGrace:             DefaultShutdownGrace,
		UserAgent:                 DefaultUserAgent,
	}
}

// Validate checks the configuration.
func (c Config) Validate() error {
	if err := c.Kafka.Validate(); err != nil {
		return fmt.Errorf("webhooker: %w", err)
	}
	if len(c.Schedule) == 0 {
		return errors.New("webhooker: schedule must have at least one delay")
	}
	for i, d := range c.Schedule {
		if d < time.Millisecond {
			return fmt.Errorf("webhooker: schedule delay %d (%s) must be at least 1ms", i, d)
		}
	}
	if n := len(c.tiers()); n > maxTiers {
		return fmt.Errorf("webhooker: schedule has %d distinct delays, at most %d allowed", n, maxTiers)
	}
	switch {
	case c.Jitter < 0 || c.Jitter > 0.5:
		return errors.New("webhooker: jitter must be in [0, 0.5]")
	case c.ConnectTimeout <= 0 || c.RequestTimeout <= 0:
		return errors.New("webhooker: connect and request timeouts must be positive")
	case c.ConnectTimeout > c.RequestTimeout:
		return errors.New("webhooker: connect timeout must not exceed the request timeout")
	case c.MaxResponseBytes < 0:
		return errors.New("webhooker: max response bytes must not be negative")
	case c.MaxConcurrencyPerEndpoint < 1:
		return errors.New("webhooker: max concurrency per endpoint must be at least 1")
	case c.MaxPending < 1:
		return errors.New("webhooker: max pending must be at least 1")
	case c.BreakerThreshold < 1 || c.BreakerCooldown <= 0:
		return errors.New("webhooker: breaker threshold must be at least 1 and cooldown positive")
	case c.CommitInterval <= 0 || c.LogFlushInterval <= 0:
		return errors.New("webhooker: commit and log flush intervals must be positive")
	case c.ShutdownGrace < 0:
		return errors.New("webhooker: shutdown grace must not be negative")
	}
	return nil
}

// MaxAttempts is the number of attempts a delivery gets before it is
// dead-lettered.
func (c Config) MaxAttempts() int { return len(c.Schedule) + 1 }

// tiers returns the distinct delays of the schedule, ascending.
func (c Config) tiers() []time.Duration {
	t := slices.Clone(c.Schedule)
	slices.Sort(t)
	return slices.Compact(t)
}

// Topics returns the topics the worker produces to and consumes from
// besides TopicIncidents: one retry topic per tier and the dead-letter
// topics. Run creates the missing ones.
func (c Config) Topics() []string {
	out := []string{schemas.TopicWebhookDeadLetter, schemas.TopicDeadLetter}
	for _, d := range c.tiers() {
		out = append(out, schemas.TopicWebhookRetry(d))
	}
	return out
}

// tierFor returns the tier a retry goes to after attempt number attempts
// (1-based) failed: the smallest tier not shorter than the scheduled delay
// and the receiver's Retry-After, capped at the longest tier.
func (c Config) tierFor(attempts int, retryAfter time.Duration) time.Duration {
	want := c.Schedule[min(max(attempts, 1), len(c.Schedule))-1]
	want = max(want, retryAfter)
	tiers := c.tiers()
	for _, t := range tiers {
		if t >= want {
			return t
		}
	}
	return tiers[len(tiers)-1]
}
