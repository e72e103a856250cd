package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/moat-dev/moat/internal/apps"
	"github.com/moat-dev/moat/internal/endpoints"
	"github.com/moat-dev/moat/internal/kafka"
	"github.com/moat-dev/moat/internal/metrics"
	"github.com/moat-dev/moat/webhooker"
	"golang.org/x/sync/errgroup"
)

// endpointsFlags locate the key that seals the signing secrets of webhook
// endpoints managed through the API (internal/endpoints).
type endpointsFlags struct {
	key, keyFile string
}

func (f *endpointsFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.key, "endpoints-key", "", "hex-encoded 32-byte key (AES-256-GCM) sealing the signing secrets of webhook endpoints created through the API; the same on every api and webhooker, never changed")
	fs.StringVar(&f.keyFile, "endpoints-key-file", "", "file holding the hex endpoints key (instead of --endpoints-key)")
}

// errNoEndpointsKey says how to configure the endpoints key.
var errNoEndpointsKey = errors.New("an endpoints key is required: --endpoints-key, --endpoints-key-file or MOAT_ENDPOINTS_KEY (64 hex characters; generate one with `openssl rand -hex 32`)")

// cipher returns the cipher of the configured key, nil when none is given.
func (f *endpointsFlags) cipher() (*endpoints.Cipher, error) {
	var hexKey string
	switch {
	case f.key != "" && f.keyFile != "":
		return nil, errors.New("give --endpoints-key or --endpoints-key-file, not both")
	case f.key != "":
		hexKey = f.key
	case f.keyFile != "":
		b, err := os.ReadFile(f.keyFile)
		if err != nil {
			return nil, fmt.Errorf("read endpoints key: %w", err)
		}
		hexKey = string(b)
	default:
		return nil, nil
	}
	key, err := endpoints.ParseKey(hexKey)
	if err != nil {
		return nil, fmt.Errorf("endpoints key: %w", err)
	}
	return endpoints.NewCipher(key)
}

// persistedCipher returns the cipher of the configured key or, when none
// is given, of the key kept in dataDir/endpoints.key (created on first
// use), as `moat dev` keeps its device key.
func (f *endpointsFlags) persistedCipher(dataDir string) (*endpoints.Cipher, error) {
	c, err := f.cipher()
	if err != nil || c != nil {
		return c, err
	}
	hexKey, err := persistedSecret(filepath.Join(dataDir, "endpoints.key"), endpoints.KeySize)
	if err != nil {
		return nil, err
	}
	key, err := endpoints.ParseKey(string(hexKey))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dataDir, "endpoints.key"), err)
	}
	return endpoints.NewCipher(key)
}

// endpointRegistry is the registry of API-managed webhook endpoints as a
// role uses it: the table (run it with the role) and, for the API, the
// manager behind the endpoint routes.
type endpointRegistry struct {
	table *endpoints.Table
	mgr   *endpoints.Manager
}

// newEndpointRegistry connects the table and the manager. The table gets
// the cipher only when decrypt is true (the webhooker signs with the
// secrets; the API never needs them in plaintext).
func newEndpointRegistry(kcfg kafka.Config, c *endpoints.Cipher, decrypt bool, produceTimeout time.Duration, log *slog.Logger) (*endpointRegistry, error) {
	tc := c
	if !decrypt {
		tc = nil
	}
	table, err := endpoints.NewTable(kcfg, tc, log)
	if err != nil {
		return nil, err
	}
	mgr, err := endpoints.NewManager(endpoints.ManagerConfig{Kafka: kcfg, ProduceTimeout: produceTimeout}, table, c, log)
	if err != nil {
		table.Close()
		return nil, err
	}
	return &endpointRegistry{table: table, mgr: mgr}, nil
}

func (r *endpointRegistry) close() {
	r.mgr.Close()
	r.table.Close()
}

// newWebhooker builds a webhooker whose delivery attempts are logged to
// ClickHouse (conn may be nil: attempts are then not logged) and that
// delivers to the API-managed endpoints of src too (nil: apps file only).
func newWebhooker(kcfg kafka.Config, reg *apps.Registry, src webhooker.EndpointSource, conn driver.Conn, database string, m *metrics.Metrics, log *slog.Logger) (*webhooker.Worker, error) {
	cfg := webhooker.DefaultConfig()
	cfg.Kafka = kcfg
	var dl webhooker.DeliveryLog = webhooker.NopLog{}
	if conn != nil {
		dl = webhooker.NewClickHouseLog(conn, database)
	}
	opts := []webhooker.Option{webhooker.WithMetrics(m)} // consumer lag
	if src != nil {
		opts = append(opts, webhooker.WithEndpoints(src))
	}
	w, err := webhooker.New(cfg, reg, dl, log, opts...)
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
		ekf      endpointsFlags
		appsFile string
	)
	lf.register(fs)
	kf.register(fs)
	cf.register(fs, "127.0.0.1:9000")
	cf.registerCluster(fs)
	mf.register(fs)
	ekf.register(fs)
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
			if err := cf.migrate(ctx, conn, log); err != nil {
				return err
			}
		}
		cipher, err := ekf.cipher()
		if err != nil {
			return err
		}
		if cipher == nil {
			log.Warn("no endpoints key: webhook endpoints created through the API cannot be signed and their deliveries are dead-lettered", "hint", errNoEndpointsKey.Error())
		}
		kcfg := kf.config()
		if err := ensureTopics(ctx, kcfg, log); err != nil {
			return err
		}
		table, err := endpoints.NewTable(kcfg, cipher, log)
		if err != nil {
			return err
		}
		defer table.Close()
		m := metrics.New()
		w, err := newWebhooker(kcfg, reg, table, conn, cf.database, m, log)
		if err != nil {
			return err
		}
		log.Info("webhooker ready")
		return mf.run(ctx, m, log, func(ctx context.Context) error {
			g, gctx := errgroup.WithContext(ctx)
			g.Go(func() error { return table.Run(gctx) })
			g.Go(func() error { return w.Run(gctx) })
			return g.Wait()
		})
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
