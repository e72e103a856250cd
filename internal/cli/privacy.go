package cli

import (
	"context"
	"log/slog"
	"time"

	"github.com/moat-dev/moat/internal/kafka"
	"github.com/moat-dev/moat/internal/privacy"
	"golang.org/x/sync/errgroup"
)

// newPrivacyRegistry connects a follower of the registry of forgotten
// users, hashing identifiers under the device key (run it).
func newPrivacyRegistry(kcfg kafka.Config, key []byte, log *slog.Logger) (*privacy.Registry, error) {
	h, err := privacy.NewHasher(key)
	if err != nil {
		return nil, err
	}
	return privacy.NewRegistry(kcfg, h, log)
}

// afterPrivacy returns work delayed until the running registry reg has
// read every deletion committed so far, so that the scorer and the
// projector never score or insert data of a user forgotten before they
// started (a replay of the log forgets them again).
func afterPrivacy(reg *privacy.Registry, log *slog.Logger, work func(context.Context) error) func(context.Context) error {
	return func(ctx context.Context) error {
		err := startupRetry(ctx, log, "read the privacy registry", func() error {
			sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			return reg.Sync(sctx)
		})
		if err != nil {
			return err
		}
		log.Info("privacy registry loaded", "forgotten", reg.Len())
		return work(ctx)
	}
}

// followPrivacy runs the registry reg next to work, which starts once reg
// has caught up.
func followPrivacy(reg *privacy.Registry, log *slog.Logger, work func(context.Context) error) func(context.Context) error {
	return func(ctx context.Context) error {
		g, gctx := errgroup.WithContext(ctx)
		g.Go(func() error { return reg.Run(gctx) })
		g.Go(func() error { return afterPrivacy(reg, log, work)(gctx) })
		return g.Wait()
	}
}
