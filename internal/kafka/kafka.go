// Package kafka holds the franz-go plumbing the roles share: client
// options, topic creation, a slog bridge, a transactional producer of
// record batches (TxnProducer) and a follower of compacted topics that
// callers can wait on (Follower).
package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/moat-dev/moat/schemas"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Config says where the brokers are and how topics are created.
type Config struct {
	// Brokers are the seed brokers (host:port).
	Brokers []string
	// Partitions bounds the parallelism of every consuming role: at most
	// one scorer or projector instance per partition does work.
	Partitions int32
	// ReplicationFactor of created topics; -1 uses the broker default.
	ReplicationFactor int16
	// Retention of created topics (retention.ms). The log is the source of
	// truth: views and scorer state are rebuilt from it, so keep it long.
	Retention time.Duration
	// Compression of produced batches: none, lz4, snappy or zstd.
	Compression string
}

// DefaultConfig returns the defaults for a single-box deployment.
func DefaultConfig() Config {
	return Config{Brokers: []string{"127.0.0.1:9092"}, Partitions: 6, ReplicationFactor: -1, Retention: 7 * 24 * time.Hour, Compression: "lz4"}
}

// ValidCompression reports whether name is a Compression Moat knows.
func ValidCompression(name string) bool {
	switch name {
	case "none", "lz4", "snappy", "zstd":
		return true
	}
	return false
}

func (c Config) codec() kgo.CompressionCodec {
	switch c.Compression {
	case "none":
		return kgo.NoCompression()
	case "snappy":
		return kgo.SnappyCompression()
	case "zstd":
		return kgo.ZstdCompression()
	}
	return kgo.Lz4Compression()
}

// Validate checks the configuration.
func (c Config) Validate() error {
	switch {
	case len(c.Brokers) == 0:
		return errors.New("kafka: no brokers")
	case c.Partitions < 1:
		return errors.New("kafka: partitions must be at least 1")
	case c.Compression != "" && !ValidCompression(c.Compression):
		return fmt.Errorf("kafka: unknown compression %q", c.Compression)
	case c.Retention < time.Hour && c.Retention != -1:
		return errors.New("kafka: retention must be at least 1h (or -1 for unlimited)")
	}
	return nil
}

// ClientOpts are the options every franz-go client of Moat starts from.
func ClientOpts(c Config, log *slog.Logger, clientID string) []kgo.Opt {
	return []kgo.Opt{
		kgo.SeedBrokers(c.Brokers...),
		kgo.ClientID(clientID),
		kgo.WithLogger(Logger(log)),
		kgo.RetryTimeout(30 * time.Second),
		kgo.ProducerBatchCompression(c.codec()),
	}
}

// GroupOpts are the consumer-group options of the scorer and projector. A
// short session timeout bounds how long a crashed member's partitions wait
// before the group hands them to a live one.
func GroupOpts() []kgo.Opt {
	return []kgo.Opt{
		kgo.SessionTimeout(10 * time.Second),
		kgo.HeartbeatInterval(time.Second),
		kgo.RebalanceTimeout(30 * time.Second),
	}
}

// EnsureTopics creates the topics that do not exist yet, with the configured
// partitions and retention (unless a topic's Configs override them).
// Existing topics are left as they are.
func EnsureTopics(ctx context.Context, cl *kgo.Client, c Config, topics ...schemas.TopicSpec) error {
	adm := kadm.NewClient(cl)
	retention := strconv.FormatInt(c.Retention.Milliseconds(), 10)
	if c.Retention < 0 {
		retention = "-1"
	}
	for _, t := range topics {
		configs := map[string]*string{"retention.ms": &retention}
		for k, v := range t.Configs {
			configs[k] = &v
		}
		resp, err := adm.CreateTopics(ctx, c.Partitions, c.ReplicationFactor, configs, t.Name)
		if err != nil {
			return fmt.Errorf("kafka: create topic %s: %w", t.Name, err)
		}
		for _, r := range resp.Sorted() {
			if r.Err != nil && !errors.Is(r.Err, kerr.TopicAlreadyExists) {
				return fmt.Errorf("kafka: create topic %s: %w", r.Topic, r.Err)
			}
		}
	}
	return nil
}

// Logger bridges franz-go's logger to slog at warn level and above
// (franz-go's info level is chatty on every rebalance).
func Logger(l *slog.Logger) kgo.Logger { return slogLogger{l: l.With("component", "kafka")} }

type slogLogger struct{ l *slog.Logger }

func (s slogLogger) Level() kgo.LogLevel { return kgo.LogLevelWarn }

func (s slogLogger) Log(level kgo.LogLevel, msg string, keyvals ...any) {
	lvl := slog.LevelDebug
	switch level {
	case kgo.LogLevelError:
		lvl = slog.LevelError
	case kgo.LogLevelWarn:
		lvl = slog.LevelWarn
	case kgo.LogLevelInfo:
		lvl = slog.LevelInfo
	}
	s.l.Log(context.Background(), lvl, msg, keyvals...)
}
