package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/cenkalti/backoff/v4"
	"github.com/labstack/echo/v4"
	"github.com/moat-dev/moat/api"
	"github.com/moat-dev/moat/ingest"
	"github.com/moat-dev/moat/internal/apps"
	"github.com/moat-dev/moat/internal/chstore"
	"github.com/moat-dev/moat/internal/httpapi"
	"github.com/moat-dev/moat/internal/kafka"
	"github.com/moat-dev/moat/internal/lists"
	"github.com/moat-dev/moat/internal/metrics"
	"github.com/moat-dev/moat/internal/privacy"
	"github.com/moat-dev/moat/projector"
	"github.com/moat-dev/moat/schemas"
	"github.com/moat-dev/moat/scorer"
	"github.com/moat-dev/moat/scorer/fingerprint"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/errgroup"
)

// shutdownGrace bounds the drain of in-flight requests on SIGTERM.
const shutdownGrace = 30 * time.Second

// DefaultAppID is the id of the app used when no apps file is given.
const DefaultAppID = "default"

// loadApps reads the apps file, or builds the single default app from
// secret when no file is given.
func loadApps(file, secret string) (*apps.Registry, error) {
	if file != "" {
		return apps.Load(file)
	}
	if secret == "" {
		return nil, errors.New("no apps: give --apps-file, or MOAT_API_SECRET for a single default app")
	}
	return apps.New([]apps.App{{ID: DefaultAppID, Name: "Default app", Secret: secret}})
}

// probe is one readiness check.
type probe struct {
	name  string
	check func(ctx context.Context) error
}

// healthRoutes adds /healthz (the process serves) and /readyz (every
// dependency answers). They carry no tenant data and are not authenticated,
// so that orchestrators can probe them.
func healthRoutes(e *echo.Echo, probes ...probe) {
	e.GET("/healthz", func(c echo.Context) error {
		return c.JSON(http.StatusOK, map[string]string{"status": "ok"})
	})
	e.GET("/readyz", func(c echo.Context) error {
		ctx, cancel := context.WithTimeout(c.Request().Context(), 2*time.Second)
		defer cancel()
		failed := map[string]string{}
		for _, p := range probes {
			if err := p.check(ctx); err != nil {
				failed[p.name] = err.Error()
			}
		}
		if len(failed) > 0 {
			return c.JSON(http.StatusServiceUnavailable, map[string]any{"status": "unavailable", "failed": failed})
		}
		return c.JSON(http.StatusOK, map[string]string{"status": "ready"})
	})
}

// serveHTTP serves h on ln until ctx ends, then stops accepting and lets
// in-flight requests finish (bounded by shutdownGrace).
func serveHTTP(ctx context.Context, ln net.Listener, h http.Handler, log *slog.Logger) error {
	srv := httpapi.Server(ln.Addr().String(), h)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("http server: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("http shutdown did not finish in time", "err", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("http server: %w", err)
	}
	return nil
}

// startupRetry retries a start-up step while a dependency is not up yet
// (a role may start before, or while, the broker or ClickHouse restarts),
// until ctx ends or a minute passes.
func startupRetry(ctx context.Context, log *slog.Logger, what string, op func() error) error {
	b := backoff.WithContext(backoff.NewExponentialBackOff(backoff.WithMaxElapsedTime(time.Minute), backoff.WithMaxInterval(5*time.Second)), ctx)
	return backoff.RetryNotify(op, b, func(err error, next time.Duration) {
		log.Warn("start-up step failed; retrying", "step", what, "retry_in", next, "err", err)
	})
}

func openClickHouse(ctx context.Context, f clickhouseFlags, log *slog.Logger) (driver.Conn, error) {
	var conn driver.Conn
	err := startupRetry(ctx, log, "connect to clickhouse", func() (err error) {
		conn, err = chstore.Open(ctx, chstore.Options{Addr: f.addr, Database: "", Username: f.user, Password: f.password, Logger: log})
		return err
	})
	return conn, err
}

func ensureTopics(ctx context.Context, kcfg kafka.Config, log *slog.Logger) error {
	cl, err := kgo.NewClient(kafka.ClientOpts(kcfg, log, "moat-admin")...)
	if err != nil {
		return fmt.Errorf("kafka admin client: %w", err)
	}
	defer cl.Close()
	return startupRetry(ctx, log, "create topics", func() error {
		tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		return kafka.EnsureTopics(tctx, cl, kcfg, schemas.AllTopics()...)
	})
}

// newProducer creates the topics if needed and connects a producer.
func newProducer(ctx context.Context, kcfg kafka.Config, inf ingestFlags, m *metrics.Metrics, log *slog.Logger) (*ingest.Producer, error) {
	if err := ensureTopics(ctx, kcfg, log); err != nil {
		return nil, err
	}
	return ingest.NewProducer(inf.config(kcfg, m), log)
}

func listen(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	return ln, nil
}

func ingestCommand() (*flag.FlagSet, func(context.Context) error) {
	fs := flag.NewFlagSet("ingest", flag.ContinueOnError)
	var (
		lf  logFlags
		kf  kafkaFlags
		hf  httpFlags
		inf ingestFlags
	)
	lf.register(fs)
	kf.register(fs)
	hf.register(fs, "127.0.0.1:8080")
	inf.register(fs)
	return fs, func(ctx context.Context) error {
		log, err := lf.logger()
		if err != nil {
			return err
		}
		reg, err := loadApps(hf.appsFile, os.Getenv("MOAT_API_SECRET"))
		if err != nil {
			return err
		}
		kcfg := kf.config()
		m := metrics.New()
		prod, err := newProducer(ctx, kcfg, inf, m, log)
		if err != nil {
			return err
		}
		defer prod.Close()
		replies, err := ingest.NewReplies(ctx, kcfg, log)
		if err != nil {
			return err
		}
		e := httpapi.New(httpapi.Config{BodyLimit: hf.bodyLimit, Metrics: m}, log)
		healthRoutes(e, probe{"kafka", prod.Ping})
		e.Use(httpapi.Authenticate(reg))
		ingest.NewHandler(prod, replies, log).Routes(e.Group(""))
		ln, err := listen(hf.addr)
		if err != nil {
			return err
		}
		g, gctx := errgroup.WithContext(ctx)
		g.Go(func() error { return replies.Run(gctx) })
		g.Go(func() error { return serveHTTP(gctx, ln, e, log) })
		log.Info("ingest ready", "http_addr", ln.Addr().String(), "instance", replies.Instance())
		return g.Wait()
	}
}

func scorerCommand() (*flag.FlagSet, func(context.Context) error) {
	fs := flag.NewFlagSet("scorer", flag.ContinueOnError)
	var (
		lf       logFlags
		kf       kafkaFlags
		sf       scorerFlags
		ef       enrichmentFlags
		mf       metricsFlags
		ssf      sessionFlags
		appsFile string
	)
	lf.register(fs)
	kf.register(fs)
	sf.register(fs)
	ef.register(fs)
	mf.register(fs)
	ssf.register(fs)
	fs.StringVar(&appsFile, "apps-file", "", "apps file with the apps' risk policies (optional: without it every app uses Castle's bands)")
	return fs, func(ctx context.Context) error {
		log, err := lf.logger()
		if err != nil {
			return err
		}
		key, err := sf.key()
		if err != nil {
			return err
		}
		var reg *apps.Registry
		if appsFile != "" {
			if reg, err = apps.Load(appsFile); err != nil {
				return err
			}
		}
		pol, err := policies(reg)
		if err != nil {
			return err
		}
		enr, err := ef.open(log)
		if err != nil {
			return err
		}
		d, err := newDecider(key, enr, pol)
		if err != nil {
			return err
		}
		kcfg := kf.config()
		if err := ensureTopics(ctx, kcfg, log); err != nil {
			return err
		}
		// Policies' list conditions look values up in a follower of the
		// lists topic (a global table: the lists as of scoring time).
		listsF, err := lists.NewFollower(kcfg, log)
		if err != nil {
			return err
		}
		d.SetLists(listsF.Index())
		d.SetSessionTimeout(ssf.timeout)
		// Users deleted through the privacy API are skipped: the scorer
		// starts once it has read every deletion (docs/privacy.md).
		privacyReg, err := newPrivacyRegistry(kcfg, key, log)
		if err != nil {
			return err
		}
		m := metrics.New()
		scfg := sf.config(kcfg, m)
		scfg.Erasures = privacyReg
		cu, err := newCrossUser(kcfg, &sf, d, m, log)
		if err != nil {
			return err
		}
		w, err := scorer.New(scfg, d, log)
		if err != nil {
			return err
		}
		log.Info("scorer ready")
		return mf.run(ctx, m, log, followLists(listsF, log, followPrivacy(privacyReg, log, cu.around(log, w.Run))))
	}
}

func projectorCommand() (*flag.FlagSet, func(context.Context) error) {
	fs := flag.NewFlagSet("projector", flag.ContinueOnError)
	var (
		lf  logFlags
		kf  kafkaFlags
		cf  clickhouseFlags
		pf  projectorFlags
		mf  metricsFlags
		sf  scorerFlags
		mig bool
	)
	lf.register(fs)
	kf.register(fs)
	cf.register(fs, "127.0.0.1:9000")
	cf.registerCluster(fs)
	pf.register(fs)
	mf.register(fs)
	// The device key hashes identifiers in the privacy registry.
	sf.registerKey(fs)
	fs.BoolVar(&mig, "migrate", true, "apply pending ClickHouse migrations at start-up")
	return fs, func(ctx context.Context) error {
		log, err := lf.logger()
		if err != nil {
			return err
		}
		conn, err := openClickHouse(ctx, cf, log)
		if err != nil {
			return err
		}
		defer conn.Close()
		if mig {
			if err := cf.migrate(ctx, conn, log); err != nil {
				return err
			}
		}
		kcfg := kf.config()
		if err := ensureTopics(ctx, kcfg, log); err != nil {
			return err
		}
		key, err := sf.key()
		if err != nil {
			return err
		}
		// Rows of users deleted through the privacy API are never
		// inserted: the projector starts once it has read every deletion.
		privacyReg, err := newPrivacyRegistry(kcfg, key, log)
		if err != nil {
			return err
		}
		m := metrics.New()
		pcfg := pf.config(kcfg, cf.database, m)
		pcfg.Erasures = privacyReg
		pcfg.Cluster = cf.cluster
		w, err := projector.New(pcfg, conn, log)
		if err != nil {
			return err
		}
		log.Info("projector ready")
		return mf.run(ctx, m, log, followPrivacy(privacyReg, log, w.Run))
	}
}

func migrateCommand() (*flag.FlagSet, func(context.Context) error) {
	fs := flag.NewFlagSet("migrate", flag.ContinueOnError)
	var (
		lf logFlags
		cf clickhouseFlags
	)
	lf.register(fs)
	cf.register(fs, "127.0.0.1:9000")
	cf.registerCluster(fs)
	alias(fs, "cluster", "clickhouse-cluster")
	return fs, func(ctx context.Context) error {
		log, err := lf.logger()
		if err != nil {
			return err
		}
		conn, err := openClickHouse(ctx, cf, log)
		if err != nil {
			return err
		}
		defer conn.Close()
		if err := cf.migrate(ctx, conn, log); err != nil {
			return err
		}
		applied, err := chstore.Applied(ctx, conn, cf.database)
		if err != nil {
			return err
		}
		log.Info("migrations applied", "database", cf.database, "cluster", cf.cluster, "versions", applied)
		return nil
	}
}

func brokerCommand() (*flag.FlagSet, func(context.Context) error) {
	fs := flag.NewFlagSet("broker", flag.ContinueOnError)
	var (
		lf      logFlags
		dataDir string
		port    int
		sync    bool
	)
	lf.register(fs)
	fs.StringVar(&dataDir, "data-dir", "./.moat/kafka", "where the broker persists its log")
	fs.IntVar(&port, "kafka-port", 19092, "port the broker listens on (127.0.0.1)")
	fs.BoolVar(&sync, "kafka-sync", false, "fsync every batch before acknowledging it, so acknowledged records also survive a crash of the machine (a killed broker loses nothing either way)")
	return fs, func(ctx context.Context) error {
		log, err := lf.logger()
		if err != nil {
			return err
		}
		c, err := startBroker(dataDir, port, sync)
		if err != nil {
			return err
		}
		log.Info("broker ready", "addrs", c.ListenAddrs(), "data_dir", dataDir)
		<-ctx.Done()
		c.Close()
		return nil
	}
}

// startBroker starts kfake persisted under dir. kfake writes every batch to
// its segment file before acknowledging it, so a killed broker process loses
// nothing it acknowledged: the kernel's page cache outlives the process
// (internal/chaos kills the broker with SIGKILL under load to prove it).
// Like real Kafka's default (log.flush.interval.messages unlimited), it does
// not fsync; with sync every batch is also fsynced before the
// acknowledgement, so acknowledged records survive a crash of the machine,
// at a cost in latency: kfake fsyncs on its single request loop.
func startBroker(dir string, port int, sync bool) (*kfake.Cluster, error) {
	opts := []kfake.Opt{kfake.Ports(port), kfake.DataDir(dir), kfake.ClusterID("moat-dev")}
	if sync {
		opts = append(opts, kfake.SyncWrites())
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return nil, fmt.Errorf("start embedded kafka: %w", err)
	}
	return c, nil
}

// SignalContext returns a context cancelled by SIGINT or SIGTERM.
func SignalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

func apiCommand() (*flag.FlagSet, func(context.Context) error) {
	fs := flag.NewFlagSet("api", flag.ContinueOnError)
	var (
		lf  logFlags
		kf  kafkaFlags
		cf  clickhouseFlags
		hf  httpFlags
		sf  scorerFlags
		inf ingestFlags
		ekf endpointsFlags
		euf endUserFlags
		ssf sessionFlags
	)
	lf.register(fs)
	kf.register(fs)
	cf.register(fs, "127.0.0.1:9000")
	hf.register(fs, "127.0.0.1:8081")
	sf.registerKey(fs)
	inf.register(fs)
	ekf.register(fs)
	euf.register(fs)
	ssf.register(fs)
	return fs, func(ctx context.Context) error {
		log, err := lf.logger()
		if err != nil {
			return err
		}
		reg, err := loadApps(hf.appsFile, os.Getenv("MOAT_API_SECRET"))
		if err != nil {
			return err
		}
		key, err := sf.key()
		if err != nil {
			return err
		}
		hasher, err := fingerprint.New(key)
		if err != nil {
			return err
		}
		endpointsCipher, err := ekf.cipher()
		if err != nil {
			return err
		}
		if endpointsCipher == nil {
			return errNoEndpointsKey
		}
		conn, err := openClickHouse(ctx, cf, log)
		if err != nil {
			return err
		}
		defer conn.Close()
		// Commands (approve, report, impersonation) are appended to the
		// log like events.
		m := metrics.New()
		prod, err := newProducer(ctx, kf.config(), inf, m, log)
		if err != nil {
			return err
		}
		defer prod.Close()
		// Webhook endpoints are records on their own compacted topic.
		endpointReg, err := newEndpointRegistry(kf.config(), endpointsCipher, false, inf.produceTimeout, log)
		if err != nil {
			return err
		}
		defer endpointReg.close()
		// Lists are records on their own compacted topic, served from an
		// in-memory copy of it.
		listsRT, err := newLists(kf.config(), inf.produceTimeout, log)
		if err != nil {
			return err
		}
		defer listsRT.close()
		// Privacy deletions are records on their own compacted topic;
		// every read hides the users it names.
		privacyReg, err := newPrivacyRegistry(kf.config(), key, log)
		if err != nil {
			return err
		}
		privacyW, err := privacy.NewWriter(kf.config(), privacyReg.Hasher(), inf.produceTimeout, log)
		if err != nil {
			return err
		}
		defer privacyW.Close()
		// End-user commands wait for the scorer's decision, as risk calls
		// do, through the replies topic.
		replies, err := ingest.NewReplies(ctx, kf.config(), log)
		if err != nil {
			return err
		}
		endUser, pending, err := newEndUser(endUserDeps{kafka: kf.config(), conn: conn, database: cf.database, apps: reg, hasher: hasher,
			deviceKey: key, out: prod, replies: replies, erasures: privacyReg, log: log}, euf, ssf)
		if err != nil {
			return err
		}
		defer pending.Close()
		e := httpapi.New(httpapi.Config{BodyLimit: hf.bodyLimit, Metrics: m}, log)
		healthRoutes(e, probe{"clickhouse", conn.Ping}, probe{"kafka", prod.Ping}, probe{"endpoints", endpointReg.table.Sync}, probe{"privacy", privacyReg.Sync})
		e.Use(httpapi.Authenticate(reg, httpapi.WithBearer(api.BearerPrefix, endUser.Authenticate)))
		endUser.Routes(e.Group(""))
		api.NewHandler(api.NewStore(conn, cf.database), hasher, prod, log).WithEndpoints(endpointReg.mgr).WithPrivacy(privacyReg, privacyW).Routes(e.Group(""))
		api.NewListsHandler(listsRT.service, log).Routes(e.Group(""))
		ln, err := listen(hf.addr)
		if err != nil {
			return err
		}
		log.Info("api ready", "http_addr", ln.Addr().String())
		g, gctx := errgroup.WithContext(ctx)
		g.Go(func() error { return endpointReg.table.Run(gctx) })
		g.Go(func() error { return listsRT.follower.Run(gctx) })
		g.Go(func() error { return privacyReg.Run(gctx) })
		g.Go(func() error { return replies.Run(gctx) })
		g.Go(func() error { return serveHTTP(gctx, ln, e, log) })
		return g.Wait()
	}
}
