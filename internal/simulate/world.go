package simulate

import (
	"errors"
	"math/rand/v2"
	"net/netip"
	"sort"

	"github.com/moat-dev/moat/internal/geoip"
)

// Net is one IPv4 /24 found in the geo database, with what the database
// says about it. Every address the generator emits lies in one of these, so
// it resolves in the database the scorer enriches with.
type Net struct {
	Prefix                [3]byte
	Country, Region, City string
	Lat, Lon              float64
	ASN                   uint32
	// Datacenter: the ASN is on Moat's curated hosting list. Hosting: it
	// is, or its organisation's name says hosting (geoip's HostingHint).
	Datacenter, Hosting bool
}

// Addr returns host h of the /24.
func (n *Net) Addr(h byte) netip.Addr {
	return netip.AddrFrom4([4]byte{n.Prefix[0], n.Prefix[1], n.Prefix[2], h})
}

// World is the sampled map of networks the generator draws places from:
// residential (non-hosting) networks by country, by region and by
// (ASN, country), and datacenter networks by country.
type World struct {
	Nets []Net
	// Countries with at least one residential network, sorted.
	Countries []string

	res       map[string][]int // country -> residential nets
	region    map[string][]int // country\x00region -> residential nets
	asn       map[asnCountry][]int
	dc        map[string][]int // country -> datacenter nets
	dcAll     []int
	hostAll   []int // hosting (incl. datacenter) nets
	dcCountry []string
}

type asnCountry struct {
	asn     uint32
	country string
}

// ErrEmptyWorld is returned when sampling the database found too few
// located networks to simulate anything.
var ErrEmptyWorld = errors.New("simulate: the geo database located too few networks (is the city and ASN data configured?)")

// reserved reports addresses no real client uses (private, loopback,
// CGNAT, link-local, multicast and reserved space).
func reserved(a [4]byte) bool {
	switch {
	case a[0] == 0, a[0] == 10, a[0] == 127, a[0] >= 224:
		return true
	case a[0] == 100 && a[1]&0xc0 == 64:
		return true
	case a[0] == 169 && a[1] == 254, a[0] == 172 && a[1]&0xf0 == 16, a[0] == 192 && a[1] == 168:
		return true
	}
	return false
}

// DiscoverWorld samples n random public IPv4 addresses (deterministically
// from seed), looks each up in db and keeps the /24s that are located (a
// country, coordinates and an ASN). Sampling the address space weights
// countries, ASNs and regions by the address space they hold.
func DiscoverWorld(db *geoip.DB, n int, seed uint64) (*World, error) {
	rng := rand.New(rand.NewPCG(seed, 0x776f726c64)) // "world"
	w := &World{}
	seen := make(map[[3]byte]bool)
	for i := 0; i < n; i++ {
		v := rng.Uint32()
		a := [4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}
		if reserved(a) {
			continue
		}
		p := [3]byte{a[0], a[1], a[2]}
		if seen[p] {
			continue
		}
		seen[p] = true
		g := db.Lookup(netip.AddrFrom4(a))
		if g.CountryCode == "" || g.ASN == 0 || (g.Lat == 0 && g.Lon == 0) {
			continue
		}
		w.Nets = append(w.Nets, Net{Prefix: p, Country: g.CountryCode, Region: g.Region, City: g.City,
			Lat: g.Lat, Lon: g.Lon, ASN: g.ASN, Datacenter: g.Datacenter, Hosting: g.HostingHint || g.Datacenter})
	}
	w.index()
	if len(w.Countries) == 0 || len(w.dcAll) == 0 {
		return nil, ErrEmptyWorld
	}
	return w, nil
}

func (w *World) index() {
	w.res = map[string][]int{}
	w.region = map[string][]int{}
	w.asn = map[asnCountry][]int{}
	w.dc = map[string][]int{}
	for i := range w.Nets {
		n := &w.Nets[i]
		if n.Hosting {
			w.hostAll = append(w.hostAll, i)
		}
		if n.Datacenter {
			if len(w.dc[n.Country]) == 0 {
				w.dcCountry = append(w.dcCountry, n.Country)
			}
			w.dc[n.Country] = append(w.dc[n.Country], i)
			w.dcAll = append(w.dcAll, i)
			continue
		}
		if n.Hosting {
			continue
		}
		if len(w.res[n.Country]) == 0 {
			w.Countries = append(w.Countries, n.Country)
		}
		w.res[n.Country] = append(w.res[n.Country], i)
		w.region[n.Country+"\x00"+n.Region] = append(w.region[n.Country+"\x00"+n.Region], i)
		k := asnCountry{n.ASN, n.Country}
		w.asn[k] = append(w.asn[k], i)
	}
	sort.Strings(w.Countries)
	sort.Strings(w.dcCountry)
}

// HasCountry reports whether c has residential networks.
func (w *World) HasCountry(c string) bool { return len(w.res[c]) > 0 }

func pick(rng *rand.Rand, idx []int) int { return idx[rng.IntN(len(idx))] }

// residential returns a random residential net of country c (weighted by
// address space).
func (w *World) residential(rng *rand.Rand, c string) int { return pick(rng, w.res[c]) }

// inRegion returns a random residential net in the region of net n (its
// country when the region has no other).
func (w *World) inRegion(rng *rand.Rand, n int) int {
	nn := &w.Nets[n]
	if r := w.region[nn.Country+"\x00"+nn.Region]; len(r) > 0 {
		return pick(rng, r)
	}
	return w.residential(rng, nn.Country)
}

// sameASN returns a random net of the ASN and country of net n, preferring
// n's region.
func (w *World) sameASN(rng *rand.Rand, n int, sameRegion bool) int {
	nn := &w.Nets[n]
	all := w.asn[asnCountry{nn.ASN, nn.Country}]
	if sameRegion {
		var in []int
		for _, i := range all {
			if w.Nets[i].Region == nn.Region {
				in = append(in, i)
			}
		}
		if len(in) > 0 {
			return pick(rng, in)
		}
	}
	if len(all) == 0 {
		return n
	}
	return pick(rng, all)
}

// datacenter returns a random datacenter net in country c, or anywhere
// when c has none.
func (w *World) datacenter(rng *rand.Rand, c string) int {
	if d := w.dc[c]; len(d) > 0 {
		return pick(rng, d)
	}
	return pick(rng, w.dcAll)
}

// anyDatacenter returns a random datacenter net.
func (w *World) anyDatacenter(rng *rand.Rand) int { return pick(rng, w.dcAll) }
