package cli

import (
	"encoding/json"
	"fmt"
	"log/slog"

	"github.com/moat-dev/moat/internal/apps"
	"github.com/moat-dev/moat/internal/botlist"
	"github.com/moat-dev/moat/internal/emailcheck"
	"github.com/moat-dev/moat/internal/geoip"
	"github.com/moat-dev/moat/internal/useragent"
	"github.com/moat-dev/moat/scorer"
	"github.com/moat-dev/moat/scorer/fingerprint"
	"github.com/moat-dev/moat/scorer/risk"
)

// enrichment opens the data files that are configured.
func (e *enrichmentFlags) open(log *slog.Logger) (scorer.Enrichment, error) {
	var out scorer.Enrichment
	if e.cityV4 != "" || e.cityV6 != "" || e.asn != "" {
		db, err := geoip.Open(e.cityV4, e.cityV6, e.asn)
		if err != nil {
			return out, fmt.Errorf("open geoip data: %w", err)
		}
		out.Geo = db
	} else {
		log.Warn("no geoip data configured: location, ISP and datacenter signals are off (run scripts/fetch-data.sh)")
	}
	bots, err := botlist.LoadOrBuiltin(e.crawlers)
	if err != nil {
		return out, fmt.Errorf("load crawler list: %w", err)
	}
	out.Bots = bots
	var domains []string
	if e.disposable != "" {
		if domains, err = emailcheck.LoadDisposable(e.disposable); err != nil {
			return out, fmt.Errorf("load disposable email domains: %w", err)
		}
	}
	out.Email = emailcheck.New(domains)
	return out, nil
}

// policies compiles the apps' risk policies.
func policies(reg *apps.Registry) (map[string]*risk.Policy, error) {
	out := map[string]*risk.Policy{}
	if reg == nil {
		return out, nil
	}
	for _, a := range reg.All() {
		if len(a.Policy) == 0 {
			continue
		}
		b, err := json.Marshal(a.Policy)
		if err != nil {
			return nil, fmt.Errorf("app %s: policy: %w", a.ID, err)
		}
		var p risk.Policy
		if err := json.Unmarshal(b, &p); err != nil {
			return nil, fmt.Errorf("app %s: policy: %w", a.ID, err)
		}
		if p.ID == "" {
			p.ID = a.ID + "-policy"
		}
		if p.Name == "" {
			p.Name = a.Name + " policy"
		}
		if err := p.Validate(); err != nil {
			return nil, fmt.Errorf("app %s: policy: %w", a.ID, err)
		}
		out[a.ID] = risk.NewPolicy(p.ID, p.Name, p.Default, p.Rules...)
	}
	return out, nil
}

func newDecider(key []byte, enr scorer.Enrichment, pol map[string]*risk.Policy) (*scorer.Decider, error) {
	ua, err := useragent.New(0)
	if err != nil {
		return nil, err
	}
	fp, err := fingerprint.New(key)
	if err != nil {
		return nil, err
	}
	return scorer.NewDecider(ua, fp, enr, pol), nil
}
