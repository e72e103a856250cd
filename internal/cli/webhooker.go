package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/moat-dev/moat/internal/apps"
	"github.com/moat-dev/moat/internal/chstore"
	"github.com/moat-dev/moat/internal/kafka"
	"github.com/moat-dev/moat/internal/metrics"
	"github.com/moat-dev/moat/webhooker"
)

// newWebhooker builds a webhooker whose delivery attempts are logged to
// ClickHouse (conn may be nil: attempts are then not logged).
func newWebhooker(kcfg kafka.Config, reg *apps.Registry, conn driver.Conn, database string, m *metrics.Metrics, log *slog.Logger) (*webhooker.Worker, error) {
	cfg := webhooker.DefaultConfig()
	cfg.Kafka = kcfg
	var dl webhooker.DeliveryLog = webhooker.NopLog{}
	if conn != nil {
		dl = webhooker.NewClickHouseLog(conn, database)
	}
	w, err := webhooker.New(cfg, reg, dl, log)
	if err != nil {
		return nil, err
	}
	m.WatchWebhooks(func() metrics.WebhookStats {
		s := w.Stats()
		return metrics.WebhookStats{Delivered: s.Delivered, Retried: s.Retried, Deferred: s.Deferred, DeadLettered: s.DeadLettered, BadRecords: s.BadRecords}
	})
	return w, nil
}

func webhookerCommand() (*flag.FlagSet, func(context.Context) error) {
	fs := flag.NewFlagSet("webhooker", flag.ContinueOnError)
	var (
		lf       logFlags
		kf       kafkaFlags
		cf       clickhouseFlags
		mf       metricsFlags
		appsFile string
	)
	lf.register(fs)
	kf.register(fs)
	cf.register(fs, "127.0.0.1:9000")
	mf.register(fs)
	fs.StringVar(&appsFile, "apps-file", "", "apps file (YAML or JSON) with the apps' webhook endpoints")
	return fs, func(ctx context.Context) error {
		log, err := lf.logger()
		if err != nil {
			return err
		}
		reg, err := loadApps(appsFile, os.Getenv("MOAT_API_SECRET"))
		if err != nil {
			return err
		}
		var conn driver.Conn
		if cf.addr != "" {
			conn, err = openClickHouse(ctx, cf, log)
			if err != nil {
				return err
			}
			defer conn.Close()
			if err := chstore.Migrate(ctx, conn, cf.database, log); err != nil {
				return err
			}
		}
		m := metrics.New()
		w, err := newWebhooker(kf.config(), reg, conn, cf.database, m, log)
		if err != nil {
			return err
		}
		log.Info("webhooker ready")
		return mf.run(ctx, m, log, w.Run)
	}
}

// webhooksCommand is `moat webhooks replay`: send dead-lettered deliveries
// again (same delivery ids, fresh schedule).
func webhooksCommand() (*flag.FlagSet, func(context.Context) error) {
	fs := flag.NewFlagSet("webhooks", flag.ContinueOnError)
	var (
		lf    logFlags
		kf    kafkaFlags
		opts  webhooker.ReplayOptions
		since time.Duration
	)
	lf.register(fs)
	kf.register(fs)
	fs.DurationVar(&since, "since", 0, "replay only dead letters younger than this (0: all retained)")
	fs.StringVar(&opts.AppID, "app", "", "replay only this app's dead letters")
	fs.StringVar(&opts.EndpointID, "endpoint", "", "replay only this endpoint's dead letters")
	fs.StringVar(&opts.DeliveryID, "delivery", "", "replay only this delivery")
	fs.BoolVar(&opts.DryRun, "dry-run", false, "count the matching dead letters, send nothing")
	return fs, func(ctx context.Context) error {
		if fs.NArg() != 1 || fs.Arg(0) != "replay" {
			return errors.New("usage: moat webhooks [flags] replay")
		}
		log, err := lf.logger()
		if err != nil {
			return err
		}
		opts.Logger = log
		if since > 0 {
			opts.Since = time.Now().Add(-since)
		}
		n, err := webhooker.Replay(ctx, kf.config().Brokers, opts)
		if err != nil {
			return err
		}
		verb := "replayed"
		if opts.DryRun {
			verb = "would replay"
		}
		fmt.Fprintf(os.Stderr, "%s %d dead-lettered deliveries\n", verb, n)
		return nil
	}
}
