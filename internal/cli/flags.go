package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/moat-dev/moat/ingest"
	"github.com/moat-dev/moat/internal/chstore"
	"github.com/moat-dev/moat/internal/kafka"
	"github.com/moat-dev/moat/internal/metrics"
	"github.com/moat-dev/moat/projector"
	"github.com/moat-dev/moat/schemas"
	"github.com/moat-dev/moat/scorer"
	"golang.org/x/sync/errgroup"
)

// EnvName is the environment variable that sets a flag: MOAT_ plus the
// flag name upper-cased with '-' as '_' (--kafka-brokers is
// MOAT_KAFKA_BROKERS). A flag given on the command line wins.
func EnvName(flagName string) string {
	return "MOAT_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// parse applies MOAT_* variables, then the command line. An alias flag
// has no variable of its own: the flag it stands for has.
func parse(fs *flag.FlagSet, args []string) error {
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if isAlias(f) {
			return
		}
		if v, ok := os.LookupEnv(EnvName(f.Name)); ok {
			if err := f.Value.Set(v); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", EnvName(f.Name), err))
			}
		}
	})
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	return fs.Parse(args)
}

// aliasValue is a second, command-line-only name of another flag.
type aliasValue struct{ flag.Value }

// alias registers name as another name of the flag of, already
// registered, on the command line only.
func alias(fs *flag.FlagSet, name, of string) {
	fs.Var(aliasValue{fs.Lookup(of).Value}, name, "same as --"+of)
}

func isAlias(f *flag.Flag) bool {
	_, ok := f.Value.(aliasValue)
	return ok
}

// listFlag is a comma-separated list.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }
func (l *listFlag) Set(s string) error {
	*l = nil
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*l = append(*l, p)
		}
	}
	return nil
}

// logFlags configures logging and the diagnostics every role shares.
type logFlags struct {
	level  string
	format string
	debug  string
}

func (l *logFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&l.level, "log-level", "info", "log level: debug, info, warn or error")
	fs.StringVar(&l.format, "log-format", "json", "log format: json or text")
	fs.StringVar(&l.debug, "debug-addr", "", "serve Go's pprof profiles on this address, for operators on loopback (empty: off)")
}

func (l *logFlags) logger() (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(l.level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	var log *slog.Logger
	switch l.format {
	case "json":
		log = slog.New(slog.NewJSONHandler(os.Stderr, opts))
	case "text":
		log = slog.New(slog.NewTextHandler(os.Stderr, opts))
	default:
		return nil, fmt.Errorf("--log-format: want json or text, got %q", l.format)
	}
	if l.debug != "" {
		go servePprof(l.debug, log)
	}
	return log, nil
}

// kafkaFlags configures the brokers and topics.
type kafkaFlags struct {
	brokers listFlag
	cfg     kafka.Config
}

func (k *kafkaFlags) register(fs *flag.FlagSet) {
	k.cfg = kafka.DefaultConfig()
	k.brokers = k.cfg.Brokers
	fs.Var(&k.brokers, "kafka-brokers", "comma-separated Kafka seed brokers (host:port)")
	k.registerTopics(fs)
}

func (k *kafkaFlags) registerTopics(fs *flag.FlagSet) {
	k.cfg = kafka.DefaultConfig()
	fs.Var((*int32Value)(&k.cfg.Partitions), "kafka-partitions", "partitions of topics Moat creates (bounds scorer and projector parallelism)")
	fs.DurationVar(&k.cfg.Retention, "kafka-retention", k.cfg.Retention, "retention of topics Moat creates")
	fs.Var((*int16Value)(&k.cfg.ReplicationFactor), "kafka-replication", "replication factor of topics Moat creates (-1: broker default)")
	fs.Func("kafka-compression", "compression of the batches Moat produces: none, lz4, snappy or zstd (default lz4; none for moat dev)", func(s string) error {
		if !kafka.ValidCompression(s) {
			return fmt.Errorf("want none, lz4, snappy or zstd, got %q", s)
		}
		k.cfg.Compression = s
		return nil
	})
}

type int32Value int32

func (v *int32Value) String() string { return strconv.FormatInt(int64(*v), 10) }
func (v *int32Value) Set(s string) error {
	n, err := strconv.ParseInt(s, 10, 32)
	*v = int32Value(n)
	return err
}

type int16Value int16

func (v *int16Value) String() string { return strconv.FormatInt(int64(*v), 10) }
func (v *int16Value) Set(s string) error {
	n, err := strconv.ParseInt(s, 10, 16)
	*v = int16Value(n)
	return err
}

func (k *kafkaFlags) config() kafka.Config {
	c := k.cfg
	c.Brokers = k.brokers
	return c
}

// clickhouseFlags configures the ClickHouse connection.
type clickhouseFlags struct {
	addr     string
	database string
	user     string
	password string
	// cluster is the ClickHouse cluster of the cluster form of the schema
	// ("" for a single server); only the commands that migrate have it.
	cluster string
}

func (c *clickhouseFlags) register(fs *flag.FlagSet, addrDefault string) {
	fs.StringVar(&c.addr, "clickhouse-addr", addrDefault, "ClickHouse native protocol address (host:port)")
	fs.StringVar(&c.database, "clickhouse-database", "moat", "ClickHouse database")
	fs.StringVar(&c.user, "clickhouse-user", "default", "ClickHouse user")
	fs.StringVar(&c.password, "clickhouse-password", "", "ClickHouse password")
}

// registerCluster adds --clickhouse-cluster, for the commands that apply
// migrations.
func (c *clickhouseFlags) registerCluster(fs *flag.FlagSet) {
	fs.Var(clusterValue{&c.cluster}, "clickhouse-cluster", "ClickHouse cluster (a remote_servers name) whose servers hold the schema in its cluster form: tables replicated ON CLUSTER behind Distributed tables (docs/operations.md); empty: a single server")
}

// clusterValue is a ClickHouse cluster name ("" for none).
type clusterValue struct{ p *string }

func (v clusterValue) String() string {
	if v.p == nil {
		return ""
	}
	return *v.p
}

func (v clusterValue) Set(s string) error {
	if s != "" {
		if err := schemas.ValidClusterName(s); err != nil {
			return err
		}
	}
	*v.p = s
	return nil
}

// migrate applies the pending migrations, in the cluster form when a
// cluster is given.
func (c *clickhouseFlags) migrate(ctx context.Context, conn driver.Conn, log *slog.Logger) error {
	return chstore.MigrateCluster(ctx, conn, c.database, c.cluster, log)
}

// httpFlags configures an HTTP listener.
type httpFlags struct {
	addr      string
	bodyLimit int64
	appsFile  string
}

func (h *httpFlags) register(fs *flag.FlagSet, addrDefault string) {
	fs.StringVar(&h.addr, "http-addr", addrDefault, "HTTP listen address")
	fs.Int64Var(&h.bodyLimit, "body-limit", 1<<20, "largest request body in bytes (413 above it)")
	fs.StringVar(&h.appsFile, "apps-file", "", "apps file (YAML or JSON): ids, names and API secrets")
}

// projectorFlags configures batching.
type projectorFlags struct {
	batchSize     int
	flushInterval time.Duration
	insertTimeout time.Duration
}

func (p *projectorFlags) register(fs *flag.FlagSet) {
	fs.IntVar(&p.batchSize, "projector-batch-size", 10_000, "rows per ClickHouse insert at most (and rows held in memory while catching up)")
	fs.DurationVar(&p.flushInterval, "projector-flush-interval", 500*time.Millisecond, "flush buffered rows at least this often")
	fs.DurationVar(&p.insertTimeout, "projector-insert-timeout", 30*time.Second, "timeout of one ClickHouse insert attempt")
}

// ingestFlags configures the producer.
type ingestFlags struct {
	produceTimeout time.Duration
	linger         time.Duration
}

func (i *ingestFlags) register(fs *flag.FlagSet) {
	fs.DurationVar(&i.produceTimeout, "produce-timeout", 5*time.Second, "how long a call waits for Kafka's acknowledgement before 503")
	fs.DurationVar(&i.linger, "produce-linger", 2*time.Millisecond, "how long the producer waits to batch concurrent calls")
}

// scorerFlags configures the scorer.
type scorerFlags struct {
	transactionalID string
	maxPoll         int
	batchWait       time.Duration
	deviceKey       string
	deviceKeyFile   string
	crossUser       bool
	sharedKeys      int
}

func (s *scorerFlags) register(fs *flag.FlagSet) {
	host, _ := os.Hostname()
	fs.StringVar(&s.transactionalID, "scorer-transactional-id", "moat-scorer-"+host, "Kafka transactional id, unique per scorer instance and stable across its restarts")
	fs.IntVar(&s.maxPoll, "scorer-max-poll", 2_000, "events per scorer transaction at most (bounds the decisions held in memory while catching up)")
	fs.DurationVar(&s.batchWait, "scorer-batch-wait", 10*time.Millisecond, "how long a scorer transaction stays open for more events (fewer transactions, less CPU); they are decided and risk calls answered as they come, only the commit waits")
	fs.BoolVar(&s.crossUser, "cross-user-signals", true, "run the aggregator and score the cross-user signals (high_activity_ip/device, multiple_accounts_per_device, cross-user credential_stuffing)")
	fs.IntVar(&s.sharedKeys, "shared-keys-per-partition", 1<<14, "IPs, devices and mailboxes the cross-user state keeps per partition (least recently seen evicted)")
	s.registerKey(fs)
}

// metricsFlags configure the metrics listener of the roles without an
// HTTP API (scorer, projector, webhooker).
type metricsFlags struct {
	addr string
}

func (f *metricsFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.addr, "metrics-addr", "127.0.0.1:9090", "serve /metrics and /healthz here (empty: off)")
}

// run runs work while serving metrics; the first to fail stops both.
func (f *metricsFlags) run(ctx context.Context, m *metrics.Metrics, log *slog.Logger, work func(context.Context) error) error {
	if f.addr == "" {
		return work(ctx)
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return work(gctx) })
	g.Go(func() error {
		if err := m.Serve(gctx.Done(), f.addr); err != nil && gctx.Err() == nil {
			return fmt.Errorf("metrics listener: %w", err)
		}
		return nil
	})
	log.Info("metrics served", "addr", f.addr)
	return g.Wait()
}

func (p *projectorFlags) config(k kafka.Config, database string, m *metrics.Metrics) projector.Config {
	return projector.Config{Kafka: k, Database: database, BatchSize: p.batchSize, FlushInterval: p.flushInterval, InsertTimeout: p.insertTimeout, Metrics: m}
}

func (i *ingestFlags) config(k kafka.Config, m *metrics.Metrics) ingest.Config {
	return ingest.Config{Kafka: k, ProduceTimeout: i.produceTimeout, Linger: i.linger, Metrics: m}
}

func (s *scorerFlags) config(k kafka.Config, m *metrics.Metrics) scorer.Config {
	return scorer.Config{Kafka: k, TransactionalID: s.transactionalID, MaxPollRecords: s.maxPoll, BatchWait: s.batchWait, Metrics: m}
}

// enrichmentFlags locate the offline data files scripts/fetch-data.sh
// fetches (its paths.env sets exactly these variables).
type enrichmentFlags struct {
	cityV4, cityV6, asn, crawlers, disposable, torExits string
}

func (e *enrichmentFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&e.cityV4, "geoip-city-v4", "", "IPv4 city mmdb (ip-location-db dbip-city or a commercial DB-IP/MaxMind city file); empty: no geolocation")
	fs.StringVar(&e.cityV6, "geoip-city-v6", "", "IPv6 city mmdb")
	fs.StringVar(&e.asn, "geoip-asn", "", "ASN mmdb (built by scripts/fetch-data.sh, or GeoLite2-ASN layout); empty: no ASN data")
	fs.StringVar(&e.crawlers, "crawler-user-agents", "", "crawler-user-agents JSON list; empty: a built-in list of common bots")
	fs.StringVar(&e.disposable, "disposable-email-domains", "", "disposable email domains (JSON array or one per line); empty: a built-in list")
	fs.StringVar(&e.torExits, "tor-exits-file", "", "Tor exit list you download (the Tor Project's torbulkexitlist: one IP a line, # comments), read at start; empty: tor only for the few Tor-operator ASNs")
}

func (s *scorerFlags) registerKey(fs *flag.FlagSet) {
	fs.StringVar(&s.deviceKey, "device-key", "", "secret key (at least 32 bytes) for device fingerprints and tokens; never change it")
	fs.StringVar(&s.deviceKeyFile, "device-key-file", "", "file holding the device key (instead of --device-key)")
}

func (s *scorerFlags) key() ([]byte, error) {
	switch {
	case s.deviceKey != "" && s.deviceKeyFile != "":
		return nil, errors.New("give --device-key or --device-key-file, not both")
	case s.deviceKey != "":
		return []byte(s.deviceKey), nil
	case s.deviceKeyFile != "":
		b, err := os.ReadFile(s.deviceKeyFile)
		if err != nil {
			return nil, fmt.Errorf("read device key: %w", err)
		}
		return []byte(strings.TrimSpace(string(b))), nil
	}
	return nil, errors.New("a device key is required: --device-key, --device-key-file or MOAT_DEVICE_KEY")
}
