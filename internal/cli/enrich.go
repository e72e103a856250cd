package cli

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"time"

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
		log.Warn("no geoip data configured: location, ISP, datacenter and proxy signals are off (run scripts/fetch-data.sh)")
	}
	if e.torExits != "" {
		exits, err := loadTorExits(e.torExits, time.Now(), log)
		if err != nil {
			return out, err
		}
		if out.Geo == nil {
			// The exit list works without the IP databases.
			if out.Geo, err = geoip.Open("", "", ""); err != nil {
				return out, err
			}
		}
		out.Geo.SetTorExits(exits)
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

// torExitsMaxAge is how old a Tor exit list may get before the scorer
// warns at start: exits come and go within hours, and a list of last week
// misses a good part of them.
const torExitsMaxAge = 7 * 24 * time.Hour

// loadTorExits reads the --tor-exits-file list and says how big and how old
// it is.
func loadTorExits(path string, now time.Time, log *slog.Logger) (*geoip.TorExits, error) {
	exits, err := geoip.LoadTorExits(path)
	if err != nil {
		return nil, fmt.Errorf("load tor exit list: %w", err)
	}
	var mod time.Time
	if fi, err := os.Stat(path); err == nil {
		mod = fi.ModTime()
	}
	switch {
	case exits.Len() == 0:
		log.Warn("the tor exit list is empty: tor fires only for the Tor-operator ASNs", "path", path)
	case !mod.IsZero() && now.Sub(mod) > torExitsMaxAge:
		log.Warn("the tor exit list is old: refresh it (docs/data.md)", "path", path, "entries", exits.Len(), "modified", mod.UTC().Format(time.RFC3339))
	default:
		log.Info("tor exit list loaded", "path", path, "entries", exits.Len(), "modified", mod.UTC().Format(time.RFC3339))
	}
	return exits, nil
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
