package cli

import (
	"context"
	"log/slog"
	"time"

	"github.com/moat-dev/moat/internal/kafka"
	"github.com/moat-dev/moat/internal/lists"
	"golang.org/x/sync/errgroup"
)

// listsRuntime is the api role's side of the Lists API: a follower of the
// lists topic (run it), the transactional writer and the service.
type listsRuntime struct {
	follower *lists.Follower
	writer   *lists.Writer
	service  *lists.Service
}

// newLists connects the Lists API's follower and writer; commands wait at
// most produceTimeout for Kafka.
func newLists(kcfg kafka.Config, produceTimeout time.Duration, log *slog.Logger) (*listsRuntime, error) {
	f, err := lists.NewFollower(kcfg, log)
	if err != nil {
		return nil, err
	}
	w, err := lists.NewWriter(kcfg, produceTimeout, log)
	if err != nil {
		return nil, err
	}
	return &listsRuntime{follower: f, writer: w, service: lists.NewService(f, w, produceTimeout, log)}, nil
}

func (r *listsRuntime) close() { r.writer.Close() }

// syncLists waits until the follower (running) has read every list change
// committed so far, retrying while the broker is not up yet.
func syncLists(ctx context.Context, f *lists.Follower, log *slog.Logger) error {
	return startupRetry(ctx, log, "read the lists topic", func() error {
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		return f.Sync(sctx)
	})
}

// afterLists returns work delayed until the running follower f has read
// the lists committed so far, so that the scorer's first decisions already
// see them.
func afterLists(f *lists.Follower, log *slog.Logger, work func(context.Context) error) func(context.Context) error {
	return func(ctx context.Context) error {
		if err := syncLists(ctx, f, log); err != nil {
			return err
		}
		log.Info("lists loaded")
		return work(ctx)
	}
}

// followLists runs the follower f next to work, which starts once f has
// read the lists committed so far.
func followLists(f *lists.Follower, log *slog.Logger, work func(context.Context) error) func(context.Context) error {
	return func(ctx context.Context) error {
		g, gctx := errgroup.WithContext(ctx)
		g.Go(func() error { return f.Run(gctx) })
		g.Go(func() error { return afterLists(f, log, work)(gctx) })
		return g.Wait()
	}
}
