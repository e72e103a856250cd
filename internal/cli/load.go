package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/moat-dev/moat/internal/loadgen"
)

// loadCommand drives Castle-style traffic at a running Moat and reports
// throughput, latency percentiles, end-to-end lag to ClickHouse, loss and
// the CPU and memory of the processes under test.
func loadCommand() (*flag.FlagSet, func(context.Context) error) {
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	var (
		cfg                         loadgen.Config
		secretFile, paths, pids, md string
		pause                       string
		minRate                     float64
		maxLatency, maxLag          time.Duration
	)
	fs.StringVar(&cfg.BaseURL, "url", "http://127.0.0.1:8080", "Moat's HTTP address")
	fs.StringVar(&cfg.Secret, "secret", "", "API secret of the app to load (or --secret-file)")
	fs.StringVar(&secretFile, "secret-file", "", "file holding the API secret (e.g. .moat/api-secret)")
	fs.IntVar(&cfg.Rate, "rate", 1000, "requests per second (open model: sent on schedule, whatever the answers)")
	fs.DurationVar(&cfg.Duration, "duration", 10*time.Second, "how long to send")
	fs.IntVar(&cfg.Workers, "workers", 0, "concurrent connections (0: chosen from the rate)")
	fs.IntVar(&cfg.Users, "users", 0, "simulated end users (0: default)")
	fs.Uint64Var(&cfg.Seed, "seed", 0, "seed of the simulated users' devices, places and bodies: runs with the same seed and --users send as the same users from the same devices (0: random)")
	fs.StringVar(&paths, "paths", "track=80,log=20", "weighted mix of calls: track, log, identify, risk, filter (POSTed events) and devices (GET /v1/users/{id}/devices)")
	fs.StringVar(&cfg.ClickHouseAddr, "clickhouse-addr", "", "ClickHouse to measure end-to-end lag and loss in (empty: not measured)")
	fs.StringVar(&cfg.Database, "clickhouse-database", "moat", "ClickHouse database")
	fs.StringVar(&cfg.AppID, "app", "default", "app id of the secret (for the ClickHouse queries)")
	fs.StringVar(&pids, "pids", "", "processes to measure CPU and RSS of: name=pid,name=pid")
	fs.StringVar(&pause, "pause", "", "processes to stop (SIGSTOP) while sending and continue for the drain, e.g. the scorer and projector to measure ingest on its own: name=pid,name=pid")
	fs.Float64Var(&minRate, "target-rate", 0, "fail unless this many events/s are accepted (0: the offered rate)")
	fs.DurationVar(&maxLatency, "target-p99-latency", 50*time.Millisecond, "fail when p99 ingest latency exceeds this")
	fs.DurationVar(&maxLag, "target-p99-lag", 2*time.Second, "fail when p99 end-to-end lag exceeds this")
	fs.StringVar(&md, "markdown", "", "also write the report (Markdown) to this file")
	fs.DurationVar(&cfg.DrainTimeout, "drain-timeout", loadgen.DefaultDrainTimeout, "how long to wait after sending for the accepted events to be visible in ClickHouse (raise it when --pause leaves a backlog)")
	return fs, func(ctx context.Context) error {
		if secretFile != "" {
			b, err := os.ReadFile(secretFile)
			if err != nil {
				return fmt.Errorf("read secret: %w", err)
			}
			cfg.Secret = strings.TrimSpace(string(b))
		}
		var err error
		if cfg.Paths, err = loadgen.ParsePaths(paths); err != nil {
			return err
		}
		if cfg.ExtraPIDs, err = parsePIDs("--pids", pids); err != nil {
			return err
		}
		if cfg.Paused, err = parsePIDs("--pause", pause); err != nil {
			return err
		}
		if minRate == 0 {
			minRate = float64(cfg.Rate)
		}
		cfg.Targets = loadgen.Targets{MinRate: minRate, MaxP99Latency: maxLatency, MaxP99Lag: maxLag}
		cfg.Command = "moat " + strings.Join(os.Args[1:], " ")
		rep, err := loadgen.Run(ctx, cfg, os.Stderr)
		out := rep.Markdown()
		fmt.Println(out)
		if md != "" {
			if werr := os.WriteFile(md, []byte(out), 0o644); werr != nil {
				return werr
			}
		}
		if err != nil {
			return err
		}
		if !rep.OK() {
			return errors.New("targets missed: " + strings.Join(rep.Failures(), "; "))
		}
		return nil
	}
}

// parsePIDs parses "name=pid,name=pid".
func parsePIDs(flagName, s string) ([]loadgen.NamedPID, error) {
	var out []loadgen.NamedPID
	for _, e := range strings.Split(s, ",") {
		if e == "" {
			continue
		}
		n, p, ok := strings.Cut(e, "=")
		pid, err := strconv.Atoi(p)
		if !ok || err != nil || pid <= 0 {
			return nil, fmt.Errorf("%s: want name=pid, got %q", flagName, e)
		}
		out = append(out, loadgen.NamedPID{Name: n, PID: pid})
	}
	return out, nil
}
