// Package geoip resolves an IP address to a location (country, region, city,
// coordinates) and a network (ASN, organisation, datacenter flag) from local
// MaxMind-format databases, and to its privacy flags (VPN/proxy operator
// network, Tor exit) from curated ASN lists and an optional Tor exit list.
// Nothing is fetched at run time: the files come from scripts/fetch-data.sh
// or from the operator (see docs/data.md).
//
// City files: the ip-location-db "dbip-city" layout (flat country_code,
// state1, city, latitude, longitude) and the MaxMind GeoIP2/GeoLite2-City
// layout (country.iso_code, subdivisions[0].names.en, city.names.en,
// location.*) are both understood. ASN files: the GeoLite2-ASN layout
// (autonomous_system_number, autonomous_system_organization), which is what
// internal/datagen/asnmmdb writes.
//
// Lookup is safe for concurrent use and does not allocate once the address
// is in the per-DB address cache (or its records' data in the decode
// caches: then it allocates the address's cache entry only).
package geoip

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"regexp"
	"sync/atomic"

	"github.com/oschwald/maxminddb-golang/v2"
)

// Info is what is known about one address. Fields are zero when unknown.
type Info struct {
	CountryCode string // ISO 3166-1 alpha-2, upper case, e.g. "US"
	Region      string // first-level subdivision, e.g. "California"
	City        string
	Lat, Lon    float64
	ASN         uint32
	ISP         string // organisation owning the ASN
	Datacenter  bool   // ASN is on the curated hosting/cloud list
	// HostingHint is a weaker signal: the organisation's name says hosting,
	// cloud, servers, data center, VPS, colocation or dedicated (about 1,400
	// of the 84,000 IPv4 ASN/organisation pairs). It has false positives
	// (small ISPs called "... Host") and is true whenever Datacenter is.
	HostingHint bool
	// Proxy: the ASN is registered to a commercial VPN or proxy operator
	// (the curated list in privacy.go, plus DB.AddProxyASNs). VPNs on
	// rented hosting are not seen here (Datacenter often is).
	Proxy bool
	// Tor: the address is on the Tor exit list (DB.SetTorExits), or its ASN
	// belongs to a non-profit that runs only Tor exits. Without an exit
	// list only the latter, a small share of Tor's exits, is known.
	Tor   bool
	Found bool // the city or ASN database had a record for the address
}

// DB holds the open databases. The zero value is not usable; use Open.
type DB struct {
	cityV4, cityV6, asn *maxminddb.Reader
	dc, proxy           map[uint32]struct{}
	tor                 *TorExits

	cityCache [cacheSize]atomic.Pointer[cityEntry]
	asnCache  [cacheSize]atomic.Pointer[asnEntry]
	// addrCache holds the Info of recently looked-up addresses: users come
	// back from the same address, and a hit skips walking two search
	// trees (the cost of a lookup: dozens of dependent reads spread over
	// the mapped files) and the Tor exit list.
	addrCache [addrCacheSize]atomic.Pointer[addrEntry]
}

// addrCacheSize is the number of slots of the direct-mapped address cache.
const addrCacheSize = 1 << 14

type addrEntry struct {
	addr netip.Addr
	info Info
}

// cacheSize is the number of slots in each direct-mapped decode cache, keyed
// by the record's offset in the data section. Many networks share one record
// (a city, an organisation), so a few thousand slots cover most traffic.
const cacheSize = 1 << 13

type cityEntry struct {
	db   *maxminddb.Reader
	off  uintptr
	data cityData
}

type asnEntry struct {
	off     uintptr
	asn     uint32
	org     string
	hosting bool
}

type cityData struct {
	CountryCode string
	Region      string
	City        string
	Lat, Lon    float64
}

// flatCity is the ip-location-db layout (dbip-city-mmdb, geolite2-city-mmdb).
type flatCity struct {
	CountryCode string  `maxminddb:"country_code"`
	State1      string  `maxminddb:"state1"`
	City        string  `maxminddb:"city"`
	Latitude    float64 `maxminddb:"latitude"`
	Longitude   float64 `maxminddb:"longitude"`
}

// nestedCity is the MaxMind GeoIP2/GeoLite2 and DB-IP commercial layout.
type nestedCity struct {
	Country struct {
		ISOCode string `maxminddb:"iso_code"`
	} `maxminddb:"country"`
	Subdivisions []struct {
		Names struct {
			En string `maxminddb:"en"`
		} `maxminddb:"names"`
	} `maxminddb:"subdivisions"`
	City struct {
		Names struct {
			En string `maxminddb:"en"`
		} `maxminddb:"names"`
	} `maxminddb:"city"`
	Location struct {
		Latitude  float64 `maxminddb:"latitude"`
		Longitude float64 `maxminddb:"longitude"`
	} `maxminddb:"location"`
}

type asnRecord struct {
	ASN uint32 `maxminddb:"autonomous_system_number"`
	Org string `maxminddb:"autonomous_system_organization"`
}

// Open opens the city (IPv4 and IPv6) and ASN databases. An empty path
// disables that part: with no ASN file there is no ASN, ISP or Datacenter;
// with no city file for an address family there is no location for it. A
// single city file that covers both families (an IPv6 tree with IPv4 mapped
// in, like GeoLite2-City) may be given as either path.
func Open(cityV4, cityV6, asn string) (*DB, error) {
	db := &DB{dc: make(map[uint32]struct{}, len(datacenterASNs)), proxy: make(map[uint32]struct{}, len(proxyASNs))}
	for k := range datacenterASNs {
		db.dc[k] = struct{}{}
	}
	for k := range proxyASNs {
		db.proxy[k] = struct{}{}
	}
	var err error
	open := func(path, what string) *maxminddb.Reader {
		if path == "" || err != nil {
			return nil
		}
		r, e := maxminddb.Open(path)
		if e != nil {
			err = fmt.Errorf("geoip: open %s database %s: %w", what, path, e)
			return nil
		}
		return r
	}
	db.cityV4 = open(cityV4, "city IPv4")
	db.cityV6 = open(cityV6, "city IPv6")
	db.asn = open(asn, "ASN")
	if err != nil {
		_ = db.Close()
		return nil, err
	}
	// A file that holds both families serves the other one when it is absent.
	if db.cityV4 == nil && db.cityV6 != nil {
		db.cityV4 = db.cityV6
	}
	if db.cityV6 == nil && db.cityV4 != nil && db.cityV4.Metadata.IPVersion == 6 {
		db.cityV6 = db.cityV4
	}
	return db, nil
}

// Close releases the databases.
func (db *DB) Close() error {
	if db == nil {
		return nil
	}
	var errs []error
	seen := map[*maxminddb.Reader]bool{}
	for _, r := range []*maxminddb.Reader{db.cityV4, db.cityV6, db.asn} {
		if r != nil && !seen[r] {
			seen[r] = true
			errs = append(errs, r.Close())
		}
	}
	return errors.Join(errs...)
}

// Enabled reports which parts are available.
func (db *DB) Enabled() (cityV4, cityV6, asn bool) {
	if db == nil {
		return false, false, false
	}
	return db.cityV4 != nil, db.cityV6 != nil, db.asn != nil
}

// AddDatacenterASNs extends this DB's hosting/cloud ASN list. Call it before
// the DB is shared: it is not safe concurrently with Lookup.
func (db *DB) AddDatacenterASNs(asns ...uint32) {
	defer db.clearAddrCache()
	for _, a := range asns {
		db.dc[a] = struct{}{}
	}
}

// IsDatacenter reports whether asn is on this DB's hosting/cloud ASN list.
func (db *DB) IsDatacenter(asn uint32) bool {
	_, ok := db.dc[asn]
	return ok
}

// AddProxyASNs extends this DB's VPN/proxy operator ASN list. Call it
// before the DB is shared: it is not safe concurrently with Lookup.
func (db *DB) AddProxyASNs(asns ...uint32) {
	defer db.clearAddrCache()
	for _, a := range asns {
		db.proxy[a] = struct{}{}
	}
}

// IsProxy reports whether asn is on this DB's VPN/proxy operator ASN list.
func (db *DB) IsProxy(asn uint32) bool {
	_, ok := db.proxy[asn]
	return ok
}

// SetTorExits sets the Tor exit list that Lookup checks (nil: none). Call
// it before the DB is shared: it is not safe concurrently with Lookup.
func (db *DB) SetTorExits(t *TorExits) {
	db.tor = t
	db.clearAddrCache()
}

// clearAddrCache forgets the cached lookups (after the lists they used
// changed).
func (db *DB) clearAddrCache() {
	for i := range db.addrCache {
		db.addrCache[i].Store(nil)
	}
}

// TorExits returns the Tor exit list set with SetTorExits, or nil.
func (db *DB) TorExits() *TorExits {
	if db == nil {
		return nil
	}
	return db.tor
}

// Lookup returns what the databases know about addr. An invalid address, a
// miss or a disabled part simply leaves the fields empty. Lookup errors (a
// corrupt record) are treated as misses.
func (db *DB) Lookup(addr netip.Addr) Info {
	var info Info
	if db == nil || !addr.IsValid() {
		return info
	}
	addr = addr.Unmap().WithZone("")
	s := &db.addrCache[addrSlot(addr)]
	if e := s.Load(); e != nil && e.addr == addr {
		return e.info
	}
	info = db.lookup(addr)
	s.Store(&addrEntry{addr: addr, info: info})
	return info
}

func addrSlot(addr netip.Addr) uintptr {
	b := addr.As16()
	h := binary.LittleEndian.Uint64(b[:8])*0x9E3779B97F4A7C15 ^ binary.LittleEndian.Uint64(b[8:])*0xC2B2AE3D27D4EB4F
	return uintptr(h>>40) & (addrCacheSize - 1)
}

// lookup is Lookup without the address cache (addr unmapped, no zone).
func (db *DB) lookup(addr netip.Addr) Info {
	var info Info
	city := db.cityV6
	if addr.Is4() {
		city = db.cityV4
	}
	if city != nil {
		if r := city.Lookup(addr); r.Found() {
			if d, ok := db.city(city, r); ok {
				info.CountryCode, info.Region, info.City = d.CountryCode, d.Region, d.City
				info.Lat, info.Lon = d.Lat, d.Lon
				info.Found = true
			}
		}
	}
	if db.asn != nil {
		if r := db.asn.Lookup(addr); r.Found() {
			if e, ok := db.asnData(r); ok {
				info.ASN, info.ISP = e.asn, e.org
				info.Datacenter = db.IsDatacenter(e.asn)
				info.HostingHint = e.hosting || info.Datacenter
				info.Proxy = db.IsProxy(e.asn)
				info.Tor = IsTorASN(e.asn)
				info.Found = true
			}
		}
	}
	if !info.Tor && db.tor.Contains(addr) {
		info.Tor = true
	}
	return info
}

func slot(off uintptr) uintptr {
	// Fibonacci hashing of the data offset.
	return (uintptr(uint64(off)*0x9E3779B97F4A7C15) >> 51) & (cacheSize - 1)
}

func (db *DB) city(r *maxminddb.Reader, res maxminddb.Result) (cityData, bool) {
	off := res.Offset()
	s := &db.cityCache[slot(off)]
	if e := s.Load(); e != nil && e.off == off && e.db == r {
		return e.data, true
	}
	var d cityData
	var flat flatCity
	if err := res.Decode(&flat); err == nil && flat.CountryCode != "" {
		d = cityData{CountryCode: flat.CountryCode, Region: flat.State1, City: flat.City, Lat: flat.Latitude, Lon: flat.Longitude}
	} else {
		// Not the flat layout ("city" is a map there, so the flat decode
		// fails): try the nested one.
		var n nestedCity
		if err := res.Decode(&n); err != nil {
			return cityData{}, false
		}
		d = cityData{CountryCode: n.Country.ISOCode, City: n.City.Names.En, Lat: n.Location.Latitude, Lon: n.Location.Longitude}
		if len(n.Subdivisions) > 0 {
			d.Region = n.Subdivisions[0].Names.En
		}
	}
	// dbip-city stores float32 coordinates: round away the float32 noise
	// (37.422000885 → 37.422); 4 decimals is about 11 m.
	d.Lat, d.Lon = round4(d.Lat), round4(d.Lon)
	s.Store(&cityEntry{db: r, off: off, data: d})
	return d, true
}

func (db *DB) asnData(res maxminddb.Result) (*asnEntry, bool) {
	off := res.Offset()
	s := &db.asnCache[slot(off)]
	if e := s.Load(); e != nil && e.off == off {
		return e, true
	}
	var rec asnRecord
	if err := res.Decode(&rec); err != nil {
		return nil, false
	}
	e := &asnEntry{off: off, asn: rec.ASN, org: rec.Org, hosting: hostingName.MatchString(rec.Org)}
	s.Store(e)
	return e, true
}

// hostingName matches organisation names of hosting companies. Only used when
// a record is first decoded, never on the cached path.
var hostingName = regexp.MustCompile(`(?i)\b(hosting|host|cloud|servers?|data ?cent(er|re)s?|vps|colo(cation)?|dedicated|compute)\b`)

func round4(x float64) float64 { return math.Round(x*1e4) / 1e4 }
