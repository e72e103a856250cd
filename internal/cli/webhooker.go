package cli

// TEMPORARY until the webhooker package lands.
import (
	"context"
	"flag"
	"log/slog"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/moat-dev/moat/internal/apps"
	"github.com/moat-dev/moat/internal/kafka"
)

type runner interface{ Run(ctx context.Context) error }
type nopRunner struct{}

func (nopRunner) Run(ctx context.Context) error { <-ctx.Done(); return nil }

func newWebhooker(kcfg kafka.Config, reg *apps.Registry, conn driver.Conn, db string, allowPrivate bool, log *slog.Logger) (runner, error) {
	return nopRunner{}, nil
}

func webhookerCommand() (*flag.FlagSet, func(context.Context) error) {
	fs := flag.NewFlagSet("webhooker", flag.ContinueOnError)
	return fs, func(ctx context.Context) error { return nil }
}
