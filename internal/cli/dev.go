package cli

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"time"

	"github.com/moat-dev/moat/api"
	"github.com/moat-dev/moat/ingest"
	"github.com/moat-dev/moat/internal/apps"
	"github.com/moat-dev/moat/internal/chserver"
	"github.com/moat-dev/moat/internal/chstore"
	"github.com/moat-dev/moat/internal/httpapi"
	"github.com/moat-dev/moat/internal/metrics"
	"github.com/moat-dev/moat/internal/privacy"
	"github.com/moat-dev/moat/projector"
	"github.com/moat-dev/moat/scorer"
	"github.com/moat-dev/moat/scorer/fingerprint"
	"golang.org/x/sync/errgroup"
)

// devCommand runs every role in one process: an embedded Kafka (kfake,
// persisted in the data dir), a local ClickHouse server (started from the
// installed binary with a config generated in the data dir) unless
// --clickhouse-addr names one, and ingest, scorer, projector, webhooker and
// api sharing one HTTP listener.
// devGCPercent is moat dev's GOGC unless the environment sets one.
const devGCPercent = 200

func devCommand() (*flag.FlagSet, func(context.Context) error) {
	fs := flag.NewFlagSet("dev", flag.ContinueOnError)
	var (
		lf        logFlags
		kf        kafkaFlags
		cf        clickhouseFlags
		hf        httpFlags
		pf        projectorFlags
		inf       ingestFlags
		sf        scorerFlags
		ef        enrichmentFlags
		ekf       endpointsFlags
		euf       endUserFlags
		ssf       sessionFlags
		dataDir   string
		kafkaPort int
		chPort    int
		chNice    int
		kafkaSync bool
	)
	lf.register(fs)
	fs.BoolVar(&kafkaSync, "kafka-sync", false, "fsync every batch the embedded Kafka acknowledges, so acknowledged events also survive a crash of the machine (a killed process loses nothing either way)")
	kf.registerTopics(fs)
	kf.cfg.Compression = "none" // the embedded broker is on loopback: compressing only costs CPU
	cf.register(fs, "")
	hf.register(fs, "127.0.0.1:8080")
	pf.register(fs)
	inf.register(fs)
	sf.register(fs)
	ef.register(fs)
	ekf.register(fs)
	euf.register(fs)
	ssf.register(fs)
	fs.StringVar(&dataDir, "data-dir", "./.moat", "where the embedded Kafka, ClickHouse and generated secrets live")
	fs.IntVar(&kafkaPort, "kafka-port", 19092, "port of the embedded Kafka (127.0.0.1); 0 picks a free one")
	fs.IntVar(&chPort, "clickhouse-port", 19000, "native port of the local ClickHouse started when --clickhouse-addr is empty; 0 picks a free one")
	fs.IntVar(&chNice, "clickhouse-nice", 19, "CPU niceness (0-19) of the local ClickHouse's threads: on a machine it shares with moat, its inserts and merges yield the CPU to the request path; 0 runs it at moat's own priority")
	return fs, func(ctx context.Context) error {
		log, err := lf.logger()
		if err != nil {
			return err
		}
		if chNice < 0 || chNice > 19 {
			return fmt.Errorf("--clickhouse-nice %d: want 0 to 19", chNice)
		}
		if os.Getenv("GOGC") == "" {
			// Every role and the embedded broker share one heap here, and
			// most of it is the broker's log: collecting at twice the live
			// heap instead of once halves the GC work for the same data.
			debug.SetGCPercent(devGCPercent)
		}
		d := &devStack{log: log, dataDir: dataDir}
		defer d.close()
		return d.run(ctx, devOptions{kf: kf, cf: cf, hf: hf, pf: pf, inf: inf, sf: sf, ef: ef, ekf: ekf, euf: euf, ssf: ssf, kafkaPort: kafkaPort, chPort: chPort, chNice: chNice, kafkaSync: kafkaSync})
	}
}

type devOptions struct {
	kf        kafkaFlags
	cf        clickhouseFlags
	hf        httpFlags
	pf        projectorFlags
	inf       ingestFlags
	sf        scorerFlags
	ef        enrichmentFlags
	ekf       endpointsFlags
	euf       endUserFlags
	ssf       sessionFlags
	kafkaPort int
	chPort    int
	chNice    int
	kafkaSync bool
}

// devStack owns the embedded dependencies so they stop in order.
type devStack struct {
	log     *slog.Logger
	dataDir string
	closers []func()
}

func (d *devStack) close() {
	for i := len(d.closers) - 1; i >= 0; i-- {
		d.closers[i]()
	}
}

func (d *devStack) run(ctx context.Context, o devOptions) error {
	log := d.log
	if err := os.MkdirAll(d.dataDir, 0o700); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	secret, err := devSecret(d.dataDir)
	if err != nil {
		return err
	}
	var reg *apps.Registry
	if o.hf.appsFile != "" {
		reg, err = apps.Load(o.hf.appsFile)
	} else {
		reg, err = apps.New([]apps.App{{ID: DefaultAppID, Name: "Default app", Secret: secret, Test: true, AllowPrivateEndpoints: true}})
	}
	if err != nil {
		return err
	}
	key, err := o.sf.key()
	if err != nil {
		key, err = persistedSecret(filepath.Join(d.dataDir, "device.key"), 32)
		if err != nil {
			return err
		}
	}
	pol, err := policies(reg)
	if err != nil {
		return err
	}
	enr, err := o.ef.open(log)
	if err != nil {
		return err
	}
	decider, err := newDecider(key, enr, pol)
	if err != nil {
		return err
	}
	hasher, err := fingerprint.New(key)
	if err != nil {
		return err
	}
	// The endpoints key is kept in the data dir like the device key.
	endpointsCipher, err := o.ekf.persistedCipher(d.dataDir)
	if err != nil {
		return err
	}

	broker, err := startBroker(filepath.Join(d.dataDir, "kafka"), o.kafkaPort, o.kafkaSync)
	if err != nil {
		return err
	}
	d.closers = append(d.closers, broker.Close)
	kcfg := o.kf.config()
	kcfg.Brokers = broker.ListenAddrs()
	if err := ensureTopics(ctx, kcfg, log); err != nil {
		return err
	}

	if o.cf.addr == "" {
		srv, err := chserver.Start(ctx, chserver.Config{Dir: filepath.Join(d.dataDir, "clickhouse"), TCPPort: o.chPort, Nice: o.chNice, Logger: log})
		if err != nil {
			return fmt.Errorf("start clickhouse: %w", err)
		}
		d.closers = append(d.closers, func() {
			sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := srv.Stop(sctx); err != nil {
				log.Warn("stop clickhouse", "err", err)
			}
		})
		o.cf.addr = srv.Addr()
	}
	conn, err := openClickHouse(ctx, o.cf, log)
	if err != nil {
		return err
	}
	d.closers = append(d.closers, func() { conn.Close() })
	if err := chstore.Migrate(ctx, conn, o.cf.database, log); err != nil {
		return err
	}

	m := metrics.New()
	prod, err := ingest.NewProducer(o.inf.config(kcfg, m), log)
	if err != nil {
		return err
	}
	d.closers = append(d.closers, prod.Close)
	// One follower of the lists topic serves the Lists API and the
	// scorer's list conditions.
	listsRT, err := newLists(kcfg, o.inf.produceTimeout, log)
	if err != nil {
		return err
	}
	d.closers = append(d.closers, listsRT.close)
	decider.SetLists(listsRT.follower.Index())
	decider.SetSessionTimeout(o.ssf.timeout)
	// One registry of forgotten users serves the privacy API, the
	// scorer and the projector.
	privacyReg, err := newPrivacyRegistry(kcfg, key, log)
	if err != nil {
		return err
	}
	privacyW, err := privacy.NewWriter(kcfg, privacyReg.Hasher(), o.inf.produceTimeout, log)
	if err != nil {
		return err
	}
	d.closers = append(d.closers, privacyW.Close)
	scfg := o.sf.config(kcfg, m)
	scfg.Erasures = privacyReg
	cu, err := newCrossUser(kcfg, &o.sf, decider, m, log)
	if err != nil {
		return err
	}
	sc, err := scorer.New(scfg, decider, log)
	if err != nil {
		return err
	}
	pcfg := o.pf.config(kcfg, o.cf.database, m)
	pcfg.Erasures = privacyReg
	pj, err := projector.New(pcfg, conn, log)
	if err != nil {
		return err
	}
	// One endpoint registry serves the API's endpoint routes and the
	// webhooker.
	endpointReg, err := newEndpointRegistry(kcfg, endpointsCipher, true, o.inf.produceTimeout, log)
	if err != nil {
		return err
	}
	d.closers = append(d.closers, endpointReg.close)
	wh, err := newWebhooker(kcfg, reg, endpointReg.table, conn, o.cf.database, m, log)
	if err != nil {
		return err
	}

	replies, err := ingest.NewReplies(ctx, kcfg, log)
	if err != nil {
		return err
	}
	endUser, pending, err := newEndUser(endUserDeps{kafka: kcfg, conn: conn, database: o.cf.database, apps: reg, hasher: hasher,
		deviceKey: key, out: prod, replies: replies, erasures: privacyReg, log: log}, o.euf, o.ssf)
	if err != nil {
		return err
	}
	d.closers = append(d.closers, pending.Close)
	e := httpapi.New(httpapi.Config{BodyLimit: o.hf.bodyLimit, Metrics: m}, log)
	healthRoutes(e, probe{"kafka", prod.Ping}, probe{"clickhouse", conn.Ping})
	e.Use(httpapi.Authenticate(reg, httpapi.WithBearer(api.BearerPrefix, endUser.Authenticate)))
	authed := e.Group("")
	endUser.Routes(authed)
	ingest.NewHandler(prod, replies, log).Routes(authed)
	api.NewHandler(api.NewStore(conn, o.cf.database), hasher, prod, log).WithEndpoints(endpointReg.mgr).WithPrivacy(privacyReg, privacyW).Routes(authed)
	api.NewListsHandler(listsRT.service, log).Routes(authed)

	ln, err := listen(o.hf.addr)
	if err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return replies.Run(gctx) })
	g.Go(func() error { return listsRT.follower.Run(gctx) })
	g.Go(func() error { return privacyReg.Run(gctx) })
	g.Go(func() error {
		return afterLists(listsRT.follower, log, afterPrivacy(privacyReg, log, cu.around(log, sc.Run)))(gctx)
	})
	g.Go(func() error { return afterPrivacy(privacyReg, log, pj.Run)(gctx) })
	g.Go(func() error { return endpointReg.table.Run(gctx) })
	g.Go(func() error { return wh.Run(gctx) })
	g.Go(func() error { return serveHTTP(gctx, ln, e, log) })

	addr := ln.Addr().String()
	log.Info("moat ready", "http_addr", addr, "kafka", kcfg.Brokers, "clickhouse", o.cf.addr, "database", o.cf.database, "data_dir", d.dataDir)
	if o.hf.appsFile == "" {
		fmt.Fprintf(os.Stderr, "\nMoat is ready on http://%s\n  app: %s   API secret: %s\n  try: curl -u :%s -H 'Content-Type: application/json' http://%s/v1/track -d '{\"event\":\"$login.succeeded\",\"user_id\":\"u1\",\"context\":{\"ip\":\"8.8.8.8\",\"headers\":{\"User-Agent\":\"curl/8\"}}}'\n\n",
			addr, DefaultAppID, secret, secret, addr)
	}
	err = g.Wait()
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	log.Info("moat stopped")
	return err
}

// devSecret returns the default app's secret: MOAT_API_SECRET, else the one
// kept in the data dir, else a new random one that is then kept there.
func devSecret(dataDir string) (string, error) {
	if s := os.Getenv("MOAT_API_SECRET"); s != "" {
		return s, nil
	}
	b, err := persistedSecret(filepath.Join(dataDir, "api-secret"), 16)
	if err != nil {
		return "", err
	}
	return string(b), nil
}

// persistedSecret reads a hex secret from path or creates one of n random
// bytes (file mode 0600).
func persistedSecret(path string, n int) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		return []byte(strings.TrimSpace(string(b))), nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	raw := make([]byte, n)
	if _, err := rand.Read(raw); err != nil {
		return nil, fmt.Errorf("generate secret: %w", err)
	}
	s := hex.EncodeToString(raw)
	if err := os.WriteFile(path, []byte(s+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("write %s: %w", path, err)
	}
	return []byte(s), nil
}
