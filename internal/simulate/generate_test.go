package simulate

import (
	"os"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/moat-dev/moat/internal/geoip"
	"github.com/moat-dev/moat/internal/useragent"
)

var (
	synthDir  string
	synthOnce sync.Once
	synthDB   *geoip.DB
	synthErr  error
	uaOnce    sync.Once
	uaParser  *useragent.Parser
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "moat-simulate-test-")
	if err != nil {
		panic(err)
	}
	synthDir = dir
	code := m.Run()
	if synthDB != nil {
		synthDB.Close()
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

// synthetic opens the synthetic geo data (written once per test binary).
func synthetic(t *testing.T) *geoip.DB {
	t.Helper()
	synthOnce.Do(func() {
		v4, asn, err := WriteSyntheticGeo(synthDir)
		if err != nil {
			synthErr = err
			return
		}
		synthDB, synthErr = geoip.Open(v4, "", asn)
	})
	if synthErr != nil {
		t.Fatal(synthErr)
	}
	return synthDB
}

func parser(t *testing.T) *useragent.Parser {
	uaOnce.Do(func() {
		var err error
		if uaParser, err = useragent.New(0); err != nil {
			panic(err)
		}
	})
	return uaParser
}

func smallConfig() Config {
	c := DefaultConfig()
	c.Users, c.Days, c.EvalDays, c.AttacksPerType, c.GeoSamples = 200, 40, 10, 100, 100_000
	return c
}

func TestSyntheticWorld(t *testing.T) {
	db := synthetic(t)
	w, err := DiscoverWorld(db, 100_000, 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(w.Countries) != len(synthCountries) || len(w.dcCountry) < 8 {
		t.Fatalf("found %d countries (%v), %d with datacenters", len(w.Countries), w.Countries, len(w.dcCountry))
	}
	for _, n := range w.Nets {
		g := db.Lookup(n.Addr(7))
		if !g.Found || g.CountryCode != n.Country || g.ASN != n.ASN || g.Datacenter != n.Datacenter {
			t.Fatalf("net %v: lookup %+v", n, g)
		}
	}
	w2, _ := DiscoverWorld(db, 100_000, 1)
	if !reflect.DeepEqual(w.Nets, w2.Nets) {
		t.Fatal("world discovery is not deterministic")
	}
}

func TestGenerateDeterministic(t *testing.T) {
	w, err := DiscoverWorld(synthetic(t), 100_000, 1)
	if err != nil {
		t.Fatal(err)
	}
	cfg := smallConfig()
	a, err := Generate(cfg, w)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := Generate(cfg, w)
	if !reflect.DeepEqual(a, b) {
		t.Fatal("the same seed generated different traffic")
	}
	cfg.Seed++
	c, _ := Generate(cfg, w)
	if reflect.DeepEqual(a.Logins, c.Logins) || reflect.DeepEqual(a.Attacks, c.Attacks) {
		t.Fatal("another seed generated the same traffic")
	}
	if len(a.Attacks) != len(AttackLabels)*cfg.AttacksPerType {
		t.Fatalf("%d attacks", len(a.Attacks))
	}
	for i := 1; i < len(a.Logins); i++ {
		if a.Logins[i].At < a.Logins[i-1].At {
			t.Fatal("logins not in time order")
		}
	}
	for _, l := range a.Logins {
		if l.Train != (l.At < a.TrainEnd) && !l.Failed {
			t.Fatalf("login at %d marked train=%v (history ends %d)", l.At, l.Train, a.TrainEnd)
		}
	}
}

func TestAttackers(t *testing.T) {
	db := synthetic(t)
	w, err := DiscoverWorld(db, 100_000, 1)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := Generate(smallConfig(), w)
	if err != nil {
		t.Fatal(err)
	}
	ua := parser(t)
	famUA := func(name string) (browser, os string) {
		for _, f := range families {
			if f.name == name {
				p := ua.Parse((&device{fam: f, model: "SM-S918B"}).ua(0))
				return p.Browser, p.OS
			}
		}
		t.Fatalf("no family %s", name)
		return "", ""
	}
	var legitResolved int
	for _, l := range tr.Logins {
		if db.Lookup(l.Ctx.IP).Found {
			legitResolved++
		}
	}
	if legitResolved != len(tr.Logins) {
		t.Fatalf("%d of %d legitimate addresses do not resolve", len(tr.Logins)-legitResolved, len(tr.Logins))
	}
	naiveCountries := map[string]bool{}
	var naiveAway, vpnChecked, targetedRegion, targetedN int
	stuffIPs := map[string]map[int]bool{}
	for _, a := range tr.Attacks {
		v := tr.Users[a.Victim]
		g := db.Lookup(a.Login.Ctx.IP)
		if !g.Found {
			t.Fatalf("%s attack from %s does not resolve", a.Label, a.Login.Ctx.IP)
		}
		if a.Login.At < tr.TrainEnd {
			t.Fatalf("%s attack during the history period", a.Label)
		}
		switch a.Label {
		case Naive:
			naiveCountries[g.CountryCode] = true
			if g.CountryCode != v.Country {
				naiveAway++
			}
		case VPN:
			if len(w.dc[v.Country]) > 0 {
				vpnChecked++
				if g.CountryCode != v.Country || !g.Datacenter {
					t.Fatalf("VPN attack on a %s user from %s (datacenter %v)", v.Country, g.CountryCode, g.Datacenter)
				}
			}
		case Targeted:
			targetedN++
			if g.CountryCode != v.Country || g.Datacenter {
				t.Fatalf("targeted attack on a %s user from %s", v.Country, g.CountryCode)
			}
			if g.Region == w.Nets[v.Home].Region {
				targetedRegion++
			}
			p := ua.Parse(a.Login.Ctx.UA)
			if b, o := famUA(v.Primary); p.Browser != b || p.OS != o || a.Login.Ctx.Lang != v.Lang {
				t.Fatalf("targeted attack as %s/%s/%s on a %s/%s/%s user", p.Browser, p.OS, a.Login.Ctx.Lang, b, o, v.Lang)
			}
		case Stuffing:
			for _, l := range append(a.Tries, a.Login) {
				ip := l.Ctx.IP.String()
				if stuffIPs[ip] == nil {
					stuffIPs[ip] = map[int]bool{}
				}
				stuffIPs[ip][a.Victim] = true
				if !l.Failed && l != a.Login || l.Failed && l == a.Login {
					t.Fatal("stuffing tries must fail and the login succeed")
				}
			}
		case Bot:
			p := ua.Parse(a.Login.Ctx.UA)
			automated := strings.Contains(a.Login.Ctx.UA, "HeadlessChrome") || p.BrowserType == "library" || a.Login.Ctx.Lang == ""
			if !g.Datacenter || !automated {
				t.Fatalf("bot from %+v with %q", g, a.Login.Ctx.UA)
			}
		}
	}
	if len(naiveCountries) < 8 || naiveAway < 80 {
		t.Fatalf("naive attackers from %d countries, %d of 100 abroad", len(naiveCountries), naiveAway)
	}
	if vpnChecked < 80 {
		t.Fatalf("only %d VPN attacks on users in a country with datacenters", vpnChecked)
	}
	if targetedRegion < targetedN*9/10 {
		t.Fatalf("only %d of %d targeted attacks from the victim's home region", targetedRegion, targetedN)
	}
	shared := 0
	for _, victims := range stuffIPs {
		if len(victims) >= 2 {
			shared++
		}
	}
	if shared == 0 {
		t.Fatal("no credential-stuffing address was used against several users")
	}
}
