package cli

import (
	"context"
	"log/slog"
	"time"

	"github.com/moat-dev/moat/internal/kafka"
	"github.com/moat-dev/moat/internal/metrics"
	"github.com/moat-dev/moat/scorer"
	"golang.org/x/sync/errgroup"
)

// crossUser is the scorer role's cross-user stage: the aggregator, which
// folds the scorers' observations into the shared table, and this
// process's follower of that table, which the decider counts against.
type crossUser struct {
	table *scorer.SharedTable
	agg   *scorer.Aggregator
}

// newCrossUser connects the stage and turns the decider's cross-user
// signals on; it returns nil when --cross-user-signals is off.
func newCrossUser(kcfg kafka.Config, s *scorerFlags, d *scorer.Decider, m *metrics.Metrics, log *slog.Logger) (*crossUser, error) {
	if !s.crossUser {
		return nil, nil
	}
	table, err := scorer.NewSharedTable(kcfg, log)
	if err != nil {
		return nil, err
	}
	agg, err := scorer.NewAggregator(scorer.AggregatorConfig{Kafka: kcfg, TransactionalID: s.transactionalID + "-aggregator",
		MaxPollRecords: s.maxPoll, KeysPerPartition: s.sharedKeys, Metrics: m}, log)
	if err != nil {
		table.Close()
		return nil, err
	}
	d.SetShared(table)
	return &crossUser{table: table, agg: agg}, nil
}

// around runs the aggregator and the table next to work, which starts once
// the table holds what was committed to it so far. A nil stage runs work
// alone.
func (c *crossUser) around(log *slog.Logger, work func(context.Context) error) func(context.Context) error {
	if c == nil {
		return work
	}
	return func(ctx context.Context) error {
		g, gctx := errgroup.WithContext(ctx)
		g.Go(func() error { return c.table.Run(gctx) })
		g.Go(func() error { return c.agg.Run(gctx) })
		g.Go(func() error {
			err := startupRetry(gctx, log, "read the shared table", func() error {
				sctx, cancel := context.WithTimeout(gctx, 30*time.Second)
				defer cancel()
				return c.table.Sync(sctx)
			})
			if err != nil {
				return err
			}
			log.Info("shared table loaded", "keys", c.table.Len())
			return work(gctx)
		})
		return g.Wait()
	}
}
