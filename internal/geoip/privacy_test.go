package geoip

import (
	"encoding/csv"
	"errors"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/maxmind/mmdbwriter/mmdbtype"
)

// bulkList is the Tor Project's torbulkexitlist format, with comments.
const bulkList = `# Tor exits, from check.torproject.org/torbulkexitlist
185.220.101.1
  185.220.101.2   # trailing comment

2001:db8:70::1
::ffff:198.51.100.77
`

// exitAddresses is the Tor Project's exit-addresses format.
const exitAddresses = `ExitNode 0011BD2485AD45D984EC4159C88FC066E5E3300E
Published 2026-11-21 20:46:56
LastStatus 2026-11-22 06:00:00
ExitAddress 162.247.74.201 2026-11-22 06:17:26
ExitNode 0111BA9B604669E636FFD5B503F382A4B7AD6E80
Published 2026-11-21 23:05:01
LastStatus 2026-11-22 05:00:00
ExitAddress 176.10.99.200 2026-11-22 05:21:39
`

func TestParseTorExits(t *testing.T) {
	tests := []struct {
		name, in string
		in4, out []string
		n        int
	}{
		{"bulk", bulkList, []string{"185.220.101.1", "185.220.101.2", "2001:db8:70::1", "198.51.100.77", "::ffff:185.220.101.1"},
			[]string{"185.220.101.3", "2001:db8:70::2", "192.0.2.1"}, 4},
		{"exit-addresses", exitAddresses, []string{"162.247.74.201", "176.10.99.200"}, []string{"162.247.74.202"}, 2},
		{"cidr", "23.129.64.130/31\n23.129.64.136/29\n::ffff:192.0.2.0/120\n203.0.113.5/32\n", []string{"23.129.64.131", "23.129.64.143", "192.0.2.200", "203.0.113.5"},
			[]string{"23.129.64.129", "23.129.64.132", "23.129.64.144", "203.0.113.6"}, 4},
		{"empty", "# nothing yet\n\n", nil, []string{"185.220.101.1"}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := ParseTorExits(strings.NewReader(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			if l.Len() != tt.n {
				t.Errorf("Len %d, want %d", l.Len(), tt.n)
			}
			for _, a := range tt.in4 {
				if !l.Contains(netip.MustParseAddr(a)) {
					t.Errorf("%s not on the list", a)
				}
			}
			for _, a := range tt.out {
				if l.Contains(netip.MustParseAddr(a)) {
					t.Errorf("%s on the list", a)
				}
			}
		})
	}
	for _, bad := range []string{
		"<!DOCTYPE html>\n<html><body>503 Service Unavailable</body></html>\n",
		"185.220.101.1\n185.220.101.999\n",
		"ExitAddress\n",
		"185.220.101.1 185.220.101.2\n",
		"::ffff:0:0/80\n",
		"10.0.0.0/33\n",
	} {
		if _, err := ParseTorExits(strings.NewReader(bad)); err == nil {
			t.Errorf("accepted %q", bad)
		} else if !strings.Contains(err.Error(), "line ") {
			t.Errorf("error %q does not name the line", err)
		}
	}
	var none *TorExits
	if none.Contains(netip.MustParseAddr("185.220.101.1")) || none.Len() != 0 {
		t.Error("nil list contains something")
	}
}

func TestLoadTorExits(t *testing.T) {
	p := filepath.Join(t.TempDir(), "torbulkexitlist")
	if err := os.WriteFile(p, []byte(bulkList), 0o644); err != nil {
		t.Fatal(err)
	}
	l, err := LoadTorExits(p)
	if err != nil || l.Len() != 4 {
		t.Fatalf("LoadTorExits: %v, %d", err, l.Len())
	}
	if _, err := LoadTorExits(filepath.Join(t.TempDir(), "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

// privacyDB is testDB's layout plus a VPN operator's, a Tor operator's and
// a datacenter's network, and a Tor exit list with one residential address.
func privacyDB(t testing.TB) *DB {
	dir := t.TempDir()
	v4 := writeDB(t, dir, "city4.mmdb", 4, map[string]mmdbtype.Map{
		"203.0.113.0/24": flatCityRec("NL", "North Holland", "Amsterdam", 52.37, 4.89),
	})
	asn := writeDB(t, dir, "asn.mmdb", 6, map[string]mmdbtype.Map{
		"203.0.113.0/24":    asnRec(64500, "Example Residential BV"),
		"198.51.100.0/25":   asnRec(216025, "Mullvad VPN AB"),
		"198.51.100.128/25": asnRec(396507, "Emerald Onion"),
		"192.0.2.0/24":      asnRec(24940, "Hetzner Online GmbH"),
		"2001:db8::/32":     asnRec(64501, "Example Mobile"),
	})
	db, err := Open(v4, "", asn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	exits, err := ParseTorExits(strings.NewReader("203.0.113.99\n2001:db8::99\n"))
	if err != nil {
		t.Fatal(err)
	}
	db.SetTorExits(exits)
	return db
}

func TestLookupPrivacy(t *testing.T) {
	db := privacyDB(t)
	cases := []struct {
		ip                     string
		proxy, tor, datacenter bool
	}{
		{"203.0.113.7", false, false, false}, // residential
		{"203.0.113.99", false, true, false}, // residential address on the exit list
		{"2001:db8::99", false, true, false},
		{"2001:db8::98", false, false, false},
		{"198.51.100.1", true, false, false},   // VPN operator's ASN
		{"198.51.100.200", false, true, false}, // Tor operator's ASN
		{"192.0.2.1", false, false, true},      // datacenter, not a proxy
		{"100.64.0.1", false, false, false},    // nowhere
	}
	for range 2 { // second pass is served from the decode cache
		for _, c := range cases {
			got := db.Lookup(netip.MustParseAddr(c.ip))
			if got.Proxy != c.proxy || got.Tor != c.tor || got.Datacenter != c.datacenter {
				t.Errorf("Lookup(%s) = %+v, want proxy %v tor %v datacenter %v", c.ip, got, c.proxy, c.tor, c.datacenter)
			}
		}
	}
	// The exit list does not change what the databases found.
	if got := db.Lookup(netip.MustParseAddr("203.0.113.99")); got.CountryCode != "NL" || got.ASN != 64500 || !got.Found {
		t.Errorf("exit on a residential network: %+v", got)
	}

	db.AddProxyASNs(64500)
	if !db.Lookup(netip.MustParseAddr("203.0.113.7")).Proxy || !db.IsProxy(64500) {
		t.Error("AddProxyASNs not applied")
	}
	if IsProxyASN(64500) {
		t.Error("AddProxyASNs leaked into the package list")
	}

	db.SetTorExits(nil)
	if db.Lookup(netip.MustParseAddr("203.0.113.99")).Tor || db.TorExits() != nil {
		t.Error("exit list still used after SetTorExits(nil)")
	}
}

// A Tor exit list works without any database.
func TestTorExitsOnly(t *testing.T) {
	db, err := Open("", "", "")
	if err != nil {
		t.Fatal(err)
	}
	exits, _ := ParseTorExits(strings.NewReader(bulkList))
	db.SetTorExits(exits)
	got := db.Lookup(netip.MustParseAddr("185.220.101.2"))
	if !got.Tor || got.Proxy || got.Found || got.ASN != 0 {
		t.Errorf("exit list only: %+v", got)
	}
	if db.Lookup(netip.MustParseAddr("8.8.8.8")).Tor {
		t.Error("8.8.8.8 is Tor")
	}
	var none *DB
	if none.Lookup(netip.MustParseAddr("185.220.101.2")).Tor || none.TorExits() != nil {
		t.Error("nil DB knows Tor")
	}
}

func TestLookupPrivacyNoAllocs(t *testing.T) {
	db := privacyDB(t)
	exits, _ := ParseTorExits(strings.NewReader("203.0.113.99\n23.129.64.136/29\n"))
	db.SetTorExits(exits)
	addrs := []netip.Addr{netip.MustParseAddr("203.0.113.99"), netip.MustParseAddr("198.51.100.1"), netip.MustParseAddr("23.129.64.140"), netip.MustParseAddr("2001:db8::99")}
	for _, a := range addrs {
		db.Lookup(a)
	}
	if n := testing.AllocsPerRun(200, func() {
		for _, a := range addrs {
			db.Lookup(a)
		}
	}); n != 0 {
		t.Errorf("Lookup allocates %v times per run", n)
	}
}

func TestCuratedLists(t *testing.T) {
	for asn := range proxyASNs {
		if IsDatacenterASN(asn) || IsTorASN(asn) {
			t.Errorf("AS%d is on the proxy list and another one", asn)
		}
	}
	for asn := range torASNs {
		if IsDatacenterASN(asn) {
			t.Errorf("AS%d is on the Tor and datacenter lists", asn)
		}
	}
	for _, asn := range []uint32{216025, 39351, 62371, 136787, 209854, 397540} {
		if !IsProxyASN(asn) {
			t.Errorf("AS%d not on the proxy list", asn)
		}
	}
	// Eyeball networks, clouds, CDNs and hosts that VPNs rent from are not
	// proxies; Cloudflare (WARP) and Akamai (iCloud Private Relay) neither.
	for _, asn := range []uint32{0, 3320, 7922, 13335, 20940, 16509, 9009, 212238, 64500} {
		if IsProxyASN(asn) || IsTorASN(asn) {
			t.Errorf("AS%d unexpectedly on a privacy list", asn)
		}
	}
	if !IsTorASN(396507) || len(TorASNs()) != len(torASNs) || len(ProxyASNs()) != len(proxyASNs) {
		t.Error("Tor list or copies wrong")
	}
	m := ProxyASNs()
	m[64500] = "x"
	if IsProxyASN(64500) {
		t.Error("ProxyASNs returned the package map")
	}
}

// TestFetchedCuratedNames checks that every curated ASN (datacenter,
// VPN/proxy, Tor) still has the recorded owner name in the fetched ASN CSV,
// so a data refresh that moves an ASN to another owner is noticed, and that
// the built asn.mmdb flags an address of each VPN/proxy and Tor ASN.
func TestFetchedCuratedNames(t *testing.T) {
	_, _, asnMMDB := dataPaths(t)
	dir := filepath.Join(filepath.Dir(asnMMDB), "package")
	owners := map[uint32]map[string]bool{}
	sample := map[uint32]netip.Addr{} // an address of each privacy ASN
	for _, name := range []string{"asn-ipv4.csv", "asn-ipv6.csv"} {
		f, err := os.Open(filepath.Join(dir, name))
		if err != nil {
			t.Skipf("ASN CSV not present: %v", err)
		}
		r := csv.NewReader(f)
		r.FieldsPerRecord = 4
		r.ReuseRecord = true
		for {
			rec, err := r.Read()
			if err == io.EOF {
				break
			}
			if err != nil {
				f.Close()
				t.Fatalf("%s: %v", name, err)
			}
			n, err := strconv.ParseUint(rec[2], 10, 32)
			if err != nil {
				continue
			}
			if _, ok := datacenterASNs[uint32(n)]; !ok && !IsProxyASN(uint32(n)) && !IsTorASN(uint32(n)) {
				continue
			}
			if owners[uint32(n)] == nil {
				owners[uint32(n)] = map[string]bool{}
			}
			owners[uint32(n)][rec[3]] = true
			if _, ok := sample[uint32(n)]; !ok && (IsProxyASN(uint32(n)) || IsTorASN(uint32(n))) {
				if a, err := netip.ParseAddr(rec[0]); err == nil {
					sample[uint32(n)] = a
				}
			}
		}
		f.Close()
	}
	for what, list := range map[string]map[uint32]string{"datacenter": datacenterASNs, "proxy": proxyASNs, "tor": torASNs} {
		for asn, name := range list {
			if !owners[asn][name] {
				t.Errorf("%s list: AS%d %q not in the ASN data (owners there: %v)", what, asn, name, owners[asn])
			}
		}
	}
	db, err := Open("", "", asnMMDB)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for asn, a := range sample {
		got := db.Lookup(a)
		if got.ASN != asn || got.Proxy != IsProxyASN(asn) || got.Tor != IsTorASN(asn) {
			t.Errorf("%s (AS%d in the CSV) → %+v", a, asn, got)
		}
	}
	if len(sample) != len(proxyASNs)+len(torASNs) {
		t.Errorf("found addresses of %d privacy ASNs, want %d", len(sample), len(proxyASNs)+len(torASNs))
	}
}
