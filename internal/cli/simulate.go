package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/moat-dev/moat/internal/simulate"
)

// simulateCommand runs the quality harness: labelled legitimate and attack
// traffic through the real scorer and a Freeman et al. baseline, reported
// per attacker type (docs/risk-quality.md).
func simulateCommand() (*flag.FlagSet, func(context.Context) error) {
	flags := flag.NewFlagSet("simulate", flag.ContinueOnError)
	cfg := simulate.DefaultConfig()
	var (
		enr   enrichmentFlags
		out   string
		quiet bool
	)
	flags.IntVar(&cfg.Users, "users", cfg.Users, "legitimate accounts to simulate")
	flags.IntVar(&cfg.Days, "days", cfg.Days, "days simulated: history, then the evaluation period")
	flags.IntVar(&cfg.EvalDays, "eval-days", cfg.EvalDays, "last days of the period that are evaluated (attacks happen then)")
	flags.IntVar(&cfg.AttacksPerType, "attacks-per-type", cfg.AttacksPerType, "scored attack logins per attacker type (naive, vpn, targeted, credential_stuffing, bot)")
	flags.IntVar(&cfg.MinHistory, "min-history", cfg.MinHistory, "fewest history logins an attacked user has")
	flags.Uint64Var(&cfg.Seed, "seed", cfg.Seed, "random seed: the same seed and data give the same report")
	flags.IntVar(&cfg.GeoSamples, "geo-samples", cfg.GeoSamples, "random IPv4 addresses looked up to map the geo data's networks")
	flags.BoolVar(&cfg.ClientIDs, "client-ids", cfg.ClientIDs, "browsers send a Castle client id (legacy __cid cookie), which the fingerprint then uses")
	flags.Float64Var(&cfg.FreemanAlpha, "baseline-alpha", cfg.FreemanAlpha, "smoothing strength of the Freeman baseline")
	flags.StringVar(&out, "out", "", "also write the report into this Markdown file, between its generated-report markers (e.g. docs/risk-quality.md)")
	flags.BoolVar(&quiet, "quiet", false, "no progress on stderr")
	enr.register(flags)
	return flags, func(ctx context.Context) error {
		log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
		data := "`" + dataName(enr.cityV4) + "` and `" + dataName(enr.asn) + "`"
		if enr.cityV4 == "" || enr.asn == "" {
			dir, err := os.MkdirTemp("", "moat-simulate-")
			if err != nil {
				return err
			}
			defer os.RemoveAll(dir)
			if enr.cityV4, enr.asn, err = simulate.WriteSyntheticGeo(dir); err != nil {
				return err
			}
			enr.cityV6 = ""
			log.Warn("no IPv4 city and ASN data configured (--geoip-city-v4, --geoip-asn; run make data): using synthetic geo data")
			data = "synthetic (`simulate.WriteSyntheticGeo`), no real geo data configured"
		}
		e, err := enr.open(log)
		if err != nil {
			return err
		}
		defer e.Geo.Close()
		var progress io.Writer = os.Stderr
		if quiet {
			progress = nil
		}
		rep, err := simulate.Run(ctx, cfg, e, progress)
		if err != nil {
			return err
		}
		rep.Command = "moat " + strings.Join(os.Args[1:], " ")
		rep.Data = data
		md := rep.Markdown()
		fmt.Println(md)
		if out != "" {
			doc, err := os.ReadFile(out)
			if err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
			if err := os.WriteFile(out, []byte(simulate.Splice(string(doc), md)), 0o644); err != nil {
				return fmt.Errorf("write report: %w", err)
			}
		}
		return nil
	}
}

// dataName names a data file by its last path elements (the package and
// version directories of scripts/fetch-data.sh), without the home path.
func dataName(path string) string {
	parts := strings.Split(filepath.ToSlash(path), "/")
	if len(parts) > 3 {
		parts = parts[len(parts)-3:]
	}
	return strings.Join(parts, "/")
}
