package simulate

import (
	"fmt"
	"net"
	"os"
	"path/filepath"

	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"
)

// synthCountry is one country of the synthetic geo data: three residential
// ISPs with four regions each.
type synthCountry struct {
	code     string
	lat, lon float64
}

var synthCountries = []synthCountry{
	{"US", 39, -98}, {"DE", 51, 10}, {"FR", 46.5, 2.5}, {"GB", 53, -1.5}, {"BR", -14, -51}, {"IN", 22, 79},
	{"JP", 36, 138}, {"NG", 9, 8}, {"PL", 52, 19}, {"ES", 40, -4}, {"RO", 45.9, 25}, {"VN", 16, 107},
}

// synthDatacenters are real hosting ASNs (on geoip's curated list, so the
// scorer flags them) with a region in four countries each.
var synthDatacenters = []struct {
	asn       uint32
	org       string
	countries [4]string
}{
	{16509, "Amazon.com, Inc.", [4]string{"US", "DE", "FR", "GB"}},
	{14061, "DigitalOcean, LLC", [4]string{"US", "DE", "GB", "IN"}},
	{24940, "Hetzner Online GmbH", [4]string{"DE", "US", "PL", "JP"}},
	{9009, "M247 Europe SRL", [4]string{"RO", "ES", "BR", "NG"}},
}

var regionOffsets = [4][2]float64{{2, 3}, {-2, -3}, {3, -2}, {-3, 2}}

// publicOctets lists first octets of public unicast IPv4 space.
func publicOctets() []byte {
	var out []byte
	for o := 1; o < 224; o++ {
		if o == 10 || o == 100 || o == 127 || o == 169 || o == 172 || o == 192 {
			continue
		}
		out = append(out, byte(o))
	}
	return out
}

// WriteSyntheticGeo writes a small synthetic city database (dbip-city
// layout, IPv4) and ASN database (GeoLite2-ASN layout) into dir and returns
// their paths. Twelve countries have three residential ISPs with four
// regions each (one /10 per ISP and region), and four real hosting ASNs
// have a /10 in four countries each. It lets `moat simulate` and its tests
// run without the downloaded data; real runs should use that data.
func WriteSyntheticGeo(dir string) (cityV4, asn string, err error) {
	city, err := newTree(4)
	if err != nil {
		return "", "", err
	}
	asnTree, err := newTree(6)
	if err != nil {
		return "", "", err
	}
	octets := publicOctets()
	next := 0
	insert := func(octet byte, quarter int, cc, region, cityName string, lat, lon float64, as uint32, org string) error {
		n := &net.IPNet{IP: net.IPv4(octet, byte(quarter<<6), 0, 0).To4(), Mask: net.CIDRMask(10, 32)}
		rec := mmdbtype.Map{
			"country_code": mmdbtype.String(cc), "state1": mmdbtype.String(region), "city": mmdbtype.String(cityName),
			"latitude": mmdbtype.Float32(lat), "longitude": mmdbtype.Float32(lon),
		}
		if err := city.Insert(n, rec); err != nil {
			return fmt.Errorf("simulate: synthetic city %s: %w", n, err)
		}
		if err := asnTree.Insert(n, mmdbtype.Map{
			"autonomous_system_number":       mmdbtype.Uint32(as),
			"autonomous_system_organization": mmdbtype.String(org),
		}); err != nil {
			return fmt.Errorf("simulate: synthetic asn %s: %w", n, err)
		}
		return nil
	}
	for ci, c := range synthCountries {
		for isp := 0; isp < 3; isp++ {
			octet := octets[next]
			next++
			as := uint32(64500 + ci*10 + isp)
			org := fmt.Sprintf("%s Telecom %d", c.code, isp+1)
			for r := 0; r < 4; r++ {
				lat, lon := c.lat+regionOffsets[r][0], c.lon+regionOffsets[r][1]
				if err := insert(octet, r, c.code, fmt.Sprintf("%s Region %d", c.code, r+1), fmt.Sprintf("%s City %d", c.code, r+1), lat, lon, as, org); err != nil {
					return "", "", err
				}
			}
		}
	}
	for _, d := range synthDatacenters {
		octet := octets[next]
		next++
		for q, cc := range d.countries {
			var c synthCountry
			for _, sc := range synthCountries {
				if sc.code == cc {
					c = sc
				}
			}
			if err := insert(octet, q, cc, cc+" Region 1", cc+" City 1", c.lat+regionOffsets[0][0], c.lon+regionOffsets[0][1], d.asn, d.org); err != nil {
				return "", "", err
			}
		}
	}
	cityV4, asn = filepath.Join(dir, "synthetic-city-v4.mmdb"), filepath.Join(dir, "synthetic-asn.mmdb")
	if err := writeTree(city, cityV4); err != nil {
		return "", "", err
	}
	if err := writeTree(asnTree, asn); err != nil {
		return "", "", err
	}
	return cityV4, asn, nil
}

func newTree(ipVersion int) (*mmdbwriter.Tree, error) {
	t, err := mmdbwriter.New(mmdbwriter.Options{DatabaseType: "moat-simulate-synthetic", IPVersion: ipVersion, RecordSize: 24})
	if err != nil {
		return nil, fmt.Errorf("simulate: new mmdb tree: %w", err)
	}
	return t, nil
}

func writeTree(t *mmdbwriter.Tree, path string) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("simulate: %w", err)
	}
	if _, err := t.WriteTo(f); err != nil {
		f.Close()
		return fmt.Errorf("simulate: write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("simulate: %w", err)
	}
	return nil
}
