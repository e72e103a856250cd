package scorer_test

import (
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"
	"github.com/moat-dev/moat/internal/geoip"
	"github.com/moat-dev/moat/schemas"
	"github.com/moat-dev/moat/scorer"
)

// privacyGeo builds a tiny ASN mmdb (a residential, a VPN operator's, a
// Tor operator's and a datacenter network) and a Tor exit list with one
// residential address.
func privacyGeo(t *testing.T) *geoip.DB {
	t.Helper()
	tree, err := mmdbwriter.New(mmdbwriter.Options{DatabaseType: "moat-test", IPVersion: 6, RecordSize: 24, IncludeReservedNetworks: true})
	if err != nil {
		t.Fatal(err)
	}
	for cidr, r := range map[string]struct {
		asn uint32
		org string
	}{
		"203.0.113.0/24":    {64500, "Example Residential BV"},
		"198.51.100.0/25":   {216025, "Mullvad VPN AB"},
		"198.51.100.128/25": {396507, "Emerald Onion"},
		"192.0.2.0/24":      {24940, "Hetzner Online GmbH"},
	} {
		_, n, _ := net.ParseCIDR(cidr)
		if err := tree.Insert(n, mmdbtype.Map{
			"autonomous_system_number":       mmdbtype.Uint32(r.asn),
			"autonomous_system_organization": mmdbtype.String(r.org),
		}); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	p := filepath.Join(dir, "asn.mmdb")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tree.WriteTo(f); err != nil {
		t.Fatal(err)
	}
	f.Close()
	db, err := geoip.Open("", "", p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	exits, err := geoip.ParseTorExits(strings.NewReader("# torbulkexitlist\n203.0.113.99\n"))
	if err != nil {
		t.Fatal(err)
	}
	db.SetTorExits(exits)
	return db
}

// TestIPPrivacySignals: proxy_ip fires for a VPN operator's network, tor
// for an address on the exit list or a Tor operator's network, each with
// its documented weights (docs/signals.md), and neither for a residential
// or a datacenter network; the decision's ip carries the flags.
func TestIPPrivacySignals(t *testing.T) {
	d := newDeciderWith(t, scorer.Enrichment{Geo: privacyGeo(t)}, nil)
	type weights map[string]float64 // score:signal → contribution
	tests := []struct {
		name, ip         string
		proxy, tor, dc   bool
		signals, without []string
		contributions    weights
	}{
		{"residential", "203.0.113.7", false, false, false, nil, []string{"proxy_ip", "tor", "datacenter_ip"}, nil},
		{"vpn operator", "198.51.100.1", true, false, false, []string{"proxy_ip"}, []string{"tor", "datacenter_ip"},
			weights{"account_takeover:proxy_ip": 0.8, "account_abuse:proxy_ip": 1, "bot:proxy_ip": 0.5}},
		{"tor exit list", "203.0.113.99", false, true, false, []string{"tor"}, []string{"proxy_ip", "datacenter_ip"},
			weights{"account_takeover:tor": 1.5, "account_abuse:tor": 2, "bot:tor": 1}},
		{"tor operator", "198.51.100.200", false, true, false, []string{"tor"}, []string{"proxy_ip", "datacenter_ip"}, nil},
		{"datacenter", "192.0.2.10", false, false, true, []string{"datacenter_ip"}, []string{"proxy_ip", "tor"}, nil},
		{"unknown", "100.64.0.1", false, false, false, nil, []string{"proxy_ip", "tor", "datacenter_ip"}, nil},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev := schemas.Event{
				V: 1, ID: "ev-" + tt.name, AppID: "app", Kind: schemas.KindRisk, Type: "$login", Status: "$succeeded",
				User: schemas.User{ID: "u1"},
				Context: schemas.Context{IP: tt.ip, Headers: map[string]string{
					"user-agent":      "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
					"accept":          "text/html",
					"accept-language": "en",
				}},
				ReceivedAt: time.Date(2026, 11, 22, 0, 0, i, 0, time.UTC),
			}
			dec, _ := d.Decide(&ev, &scorer.UserState{})
			if dec.IP == nil || dec.IP.Proxy != tt.proxy || dec.IP.Tor != tt.tor || dec.IP.Datacenter != tt.dc {
				t.Fatalf("ip %+v, want proxy %v tor %v datacenter %v", dec.IP, tt.proxy, tt.tor, tt.dc)
			}
			for _, s := range tt.signals {
				if !slices.Contains(dec.Signals, s) {
					t.Errorf("%s did not fire: %v", s, dec.Signals)
				}
			}
			for _, s := range tt.without {
				if slices.Contains(dec.Signals, s) {
					t.Errorf("%s fired: %v", s, dec.Signals)
				}
			}
			for name, want := range tt.contributions {
				i := slices.IndexFunc(dec.Contributions, func(c schemas.Contribution) bool { return c.Name == name && c.Kind == "signal" })
				if i < 0 || dec.Contributions[i].Value != want {
					t.Errorf("contribution %s: want %v in %+v", name, want, dec.Contributions)
				}
			}
		})
	}
}
