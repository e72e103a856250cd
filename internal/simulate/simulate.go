// Package simulate is Moat's quality harness (`moat simulate`). It
// generates labelled login traffic — legitimate users with habitual
// devices, places and hours, some of them travelling, and the attacker
// types of the risk-based-authentication literature (naive, VPN, targeted,
// credential stuffing, bots) — runs it through the real scorer
// (scorer.Decider with the product's enrichment) and through a plain
// Freeman et al. baseline, and reports per attacker type the share caught
// at fixed legitimate challenge rates and the ROC AUC.
//
// Everything is a pure function of the Config (its seed included) and the
// geo data: the same inputs give the same report.
package simulate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/moat-dev/moat/internal/useragent"
	"github.com/moat-dev/moat/scorer"
	"github.com/moat-dev/moat/scorer/fingerprint"
	"github.com/moat-dev/moat/scorer/risk"
)

// Config sizes a simulation.
type Config struct {
	// Users is the number of legitimate accounts.
	Users int
	// Days is the simulated period; the last EvalDays are evaluated, the
	// days before are the users' history.
	Days, EvalDays int
	// AttacksPerType is the number of scored attack logins per attacker
	// type.
	AttacksPerType int
	// MinHistory is the fewest history logins a victim has.
	MinHistory int
	// Seed makes the run reproducible.
	Seed uint64
	// GeoSamples is the number of random IPv4 addresses looked up to map
	// the networks of the geo data.
	GeoSamples int
	// ClientIDs: browsers send a Castle client id (the __cid cookie of
	// Castle's legacy browser SDK), which Moat's fingerprint then uses
	// instead of the user-agent attributes.
	ClientIDs bool
	// FreemanAlpha is the baseline's smoothing strength α.
	FreemanAlpha float64
}

// DefaultConfig runs in about a minute on two cores.
func DefaultConfig() Config {
	return Config{Users: 5000, Days: 90, EvalDays: 30, AttacksPerType: 2000, MinHistory: 1, Seed: 1, GeoSamples: 1 << 19, FreemanAlpha: 1}
}

func (c Config) validate() error {
	switch {
	case c.Users < 1:
		return errors.New("simulate: users must be at least 1")
	case c.EvalDays < 1 || c.Days <= c.EvalDays:
		return errors.New("simulate: need 1 <= eval-days < days")
	case c.AttacksPerType < 1:
		return errors.New("simulate: attacks-per-type must be at least 1")
	case c.MinHistory < 1:
		return errors.New("simulate: min-history must be at least 1")
	case c.GeoSamples < 1:
		return errors.New("simulate: geo-samples must be at least 1")
	case c.FreemanAlpha <= 0:
		return errors.New("simulate: the baseline's alpha must be positive")
	}
	return nil
}

// start is the first simulated instant (fixed: no wall clock).
func (c Config) start() time.Time { return time.Date(2026, 1, 5, 0, 0, 0, 0, time.UTC) }

// deviceKey is the fingerprint key of the simulated deployment.
var deviceKey = []byte("moat-simulate-device-key-0123456789abcdef")

// Scorers names the scorers a run compares, in report order.
const (
	ScorerMoat        = "moat"
	ScorerMoatLearned = "moat-learned-population"
	ScorerFreeman     = "freeman-baseline"
)

// Run generates the traffic of cfg on the networks of enr.Geo, scores it
// with Moat's Decider (as the scorer runs it, and with a learned
// population) and with the Freeman baseline, and returns the report.
// Progress goes to progress (nil: none).
func Run(ctx context.Context, cfg Config, enr scorer.Enrichment, progress io.Writer) (*Report, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if enr.Geo == nil {
		return nil, errors.New("simulate: geo data is required (see WriteSyntheticGeo for a synthetic stand-in)")
	}
	p := newProgress(progress)
	p.say("mapping the geo data (%d sampled addresses)", cfg.GeoSamples)
	w, err := DiscoverWorld(enr.Geo, cfg.GeoSamples, cfg.Seed)
	if err != nil {
		return nil, err
	}
	p.say("generating %d users over %d days and %d attacks per type", cfg.Users, cfg.Days, cfg.AttacksPerType)
	tr, err := Generate(cfg, w)
	if err != nil {
		return nil, err
	}
	ua, err := useragent.New(0)
	if err != nil {
		return nil, fmt.Errorf("simulate: %w", err)
	}
	fp, err := fingerprint.New(deviceKey)
	if err != nil {
		return nil, fmt.Errorf("simulate: %w", err)
	}
	learned := risk.DefaultConfig()
	learned.LearnPopulation = true
	// Moat counts the cross-user signals as the scorer role does, against
	// state shared by all users; here one process sees every event, so a
	// SharedState holds what the aggregator's table would (without its
	// staleness).
	moat := scorer.NewDecider(ua, fp, enr, nil)
	moat.SetShared(risk.NewSharedState(0))
	moatLearned := scorer.NewDeciderWithConfig(ua, fp, enr, nil, learned)
	moatLearned.SetShared(risk.NewSharedState(0))
	runs := []struct {
		name string
		s    scorerUnderTest
	}{
		{ScorerMoat, newMoatRun(moat, tr)},
		{ScorerMoatLearned, newMoatRun(moatLearned, tr)},
		{ScorerFreeman, newFreemanRun(NewFreeman(cfg.FreemanAlpha), enr, ua)},
	}
	rep := &Report{Config: cfg, World: worldStats(w), Traffic: tr.Stats}
	p.total = len(runs) * (len(tr.Logins) + len(tr.Attacks))
	for _, r := range runs {
		res, err := evaluate(ctx, r.name, r.s, tr, p)
		if err != nil {
			return nil, err
		}
		rep.Results = append(rep.Results, res)
	}
	p.done()
	return rep, nil
}
