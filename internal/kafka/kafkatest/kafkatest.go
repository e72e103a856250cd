// Package kafkatest starts the embedded broker for tests: a kfake cluster
// reached over TCP, with every topic Moat creates.
package kafkatest

import (
	"context"
	"testing"
	"time"

	"github.com/moat-dev/moat/internal/kafka"
	"github.com/moat-dev/moat/schemas"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Cluster starts a one-broker kfake cluster with schemas.AllTopics() of
// partitions partitions each, and returns it, the configuration that
// reaches it and a plain client; all are closed when the test ends.
func Cluster(t testing.TB, partitions int32) (*kfake.Cluster, kafka.Config, *kgo.Client) {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	cfg := kafka.DefaultConfig()
	cfg.Brokers = c.ListenAddrs()
	cfg.Partitions = partitions
	cl, err := kgo.NewClient(kgo.SeedBrokers(cfg.Brokers...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := kafka.EnsureTopics(ctx, cl, cfg, schemas.AllTopics()...); err != nil {
		t.Fatal(err)
	}
	return c, cfg, cl
}
