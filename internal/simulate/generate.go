package simulate

import (
	"fmt"
	"math"
	"math/rand/v2"
	"net/netip"
	"sort"
	"time"
)

// Label says who produced a login. Labels stay in the harness: the scorers
// only ever see the request.
type Label uint8

// The labels: legitimate users and the attacker types.
const (
	Legitimate Label = iota
	Naive
	VPN
	Targeted
	Stuffing
	Bot
)

// AttackLabels are the attacker types, in report order.
var AttackLabels = []Label{Naive, VPN, Targeted, Stuffing, Bot}

func (l Label) String() string {
	switch l {
	case Legitimate:
		return "legitimate"
	case Naive:
		return "naive"
	case VPN:
		return "vpn"
	case Targeted:
		return "targeted"
	case Stuffing:
		return "credential_stuffing"
	case Bot:
		return "bot"
	}
	return fmt.Sprintf("label(%d)", uint8(l))
}

// Context is one end-user request as the app forwards it to Moat.
type Context struct {
	IP                         netip.Addr
	UA                         string // "": no user-agent header
	Lang                       string // "": no accept-language header
	Accept                     string // "": no accept header
	CHUA, CHMobile, CHPlatform string // Chromium client hints ("": not sent)
	ClientID                   string // Castle client id cookie ("": none)
}

// Login is one $login call: $succeeded (the password was right; the app
// asks Moat's risk endpoint) or $failed (a wrong password; the filter
// endpoint).
type Login struct {
	At     int64 // unix milliseconds
	User   int
	Failed bool
	Train  bool // in the history period
	Ctx    Context
}

// Attack is one attacker's attempt on a victim: failed tries (wrong
// passwords), then the login with the right password, which is the event
// that is scored.
type Attack struct {
	Label  Label
	Victim int
	Tries  []Login
	Login  Login
}

// User is a simulated account.
type User struct {
	ID, Email, Country, Lang string
	// Home is the index in World.Nets of the user's home network at the
	// start; Primary the family of the most used device.
	Home    int
	Primary string
}

// Traffic is the generated, labelled traffic.
type Traffic struct {
	Start    time.Time
	TrainEnd int64 // unix ms: logins before are history, after are evaluated
	Users    []User
	// Logins are the legitimate users' logins, sorted by time.
	Logins []Login
	// Attacks are sorted by the time of their login.
	Attacks []Attack
	Stats   TrafficStats
}

// TrafficStats describe the legitimate traffic (for the report).
type TrafficStats struct {
	Logins, Failed, TravelLogins, VPNLogins, DeviceChanges, Victims int
	VPNFallback                                                     int // VPN attacks with no datacenter in the victim's country
}

// countryInfo is a home country of legitimate users: a weight (roughly
// proportional to internet users, rounded) and the browser language.
type countryInfo struct {
	code   string
	weight float64
	lang   string
}

var homeCountries = []countryInfo{
	{"US", 30, "en-US,en;q=0.9"}, {"IN", 12, "en-IN,en;q=0.9,hi;q=0.8"}, {"BR", 10, "pt-BR,pt;q=0.9,en;q=0.8"},
	{"DE", 8, "de-DE,de;q=0.9,en;q=0.8"}, {"JP", 7, "ja-JP,ja;q=0.9"}, {"GB", 6, "en-GB,en;q=0.9"},
	{"FR", 6, "fr-FR,fr;q=0.9,en;q=0.8"}, {"MX", 6, "es-MX,es;q=0.9,en;q=0.8"}, {"ID", 5, "id-ID,id;q=0.9,en;q=0.8"},
	{"ES", 4, "es-ES,es;q=0.9"}, {"IT", 4, "it-IT,it;q=0.9,en;q=0.8"}, {"PL", 3, "pl-PL,pl;q=0.9,en;q=0.8"},
	{"TR", 3, "tr-TR,tr;q=0.9,en;q=0.8"}, {"KR", 3, "ko-KR,ko;q=0.9"}, {"CA", 3, "en-CA,en;q=0.9,fr-CA;q=0.8"},
	{"VN", 3, "vi-VN,vi;q=0.9,en;q=0.8"}, {"NG", 2, "en-NG,en;q=0.9"}, {"AR", 2, "es-AR,es;q=0.9"},
	{"AU", 2, "en-AU,en;q=0.9"}, {"NL", 2, "nl-NL,nl;q=0.9,en;q=0.8"}, {"RO", 1, "ro-RO,ro;q=0.9,en;q=0.8"},
	{"SE", 1, "sv-SE,sv;q=0.9,en;q=0.8"}, {"ZA", 1, "en-ZA,en;q=0.9"},
}

// langOf is the usual browser language in country c.
func langOf(c string) string {
	for _, ci := range homeCountries {
		if ci.code == c {
			return ci.lang
		}
	}
	return "en-US,en;q=0.9"
}

const (
	acceptHTML = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
	dayMs      = 86400 * 1000
	hourMs     = 3600 * 1000
)

var firstNames = []string{"anna", "ben", "carla", "david", "emma", "felix", "giulia", "hiro", "ines", "jon", "kofi", "lena", "marta", "nils", "olga", "pablo", "quinn", "rosa", "sami", "tara"}
var lastNames = []string{"smith", "mueller", "rossi", "garcia", "tanaka", "silva", "kowalski", "dubois", "okafor", "nguyen", "patel", "kim", "jansen", "popescu", "lopez"}

// Generate builds the labelled traffic of cfg on world w. It is a pure
// function of cfg (including its seed) and w.
func Generate(cfg Config, w *World) (*Traffic, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	var homes []countryInfo
	for _, c := range homeCountries {
		if w.HasCountry(c.code) {
			homes = append(homes, c)
		}
	}
	if len(homes) == 0 {
		return nil, fmt.Errorf("simulate: none of the home countries is in the geo data: %w", ErrEmptyWorld)
	}
	g := &generator{cfg: cfg, w: w, homes: homes, start: cfg.start()}
	tr := &Traffic{Start: g.start, TrainEnd: g.ms(cfg.Days - cfg.EvalDays)}
	users := make([]*simUser, cfg.Users)
	history := make([]int, cfg.Users)
	for i := range users {
		u, logins := g.user(i, &tr.Stats)
		users[i] = u
		tr.Users = append(tr.Users, User{ID: u.id, Email: u.email, Country: u.country, Lang: u.lang, Home: u.home0, Primary: u.devices[0].fam.name})
		for _, l := range logins {
			if l.Train && !l.Failed {
				history[i]++
			}
		}
		tr.Logins = append(tr.Logins, logins...)
	}
	sort.SliceStable(tr.Logins, func(i, j int) bool { return tr.Logins[i].At < tr.Logins[j].At })
	for _, l := range tr.Logins {
		if l.Failed {
			tr.Stats.Failed++
		} else {
			tr.Stats.Logins++
		}
	}
	var victims []int
	for i, n := range history {
		if n >= cfg.MinHistory {
			victims = append(victims, i)
		}
	}
	if len(victims) == 0 {
		return nil, fmt.Errorf("simulate: no user has %d logins of history; raise --users or --days", cfg.MinHistory)
	}
	tr.Stats.Victims = len(victims)
	for _, l := range AttackLabels {
		tr.Attacks = append(tr.Attacks, g.attacks(l, users, victims, &tr.Stats)...)
	}
	sort.SliceStable(tr.Attacks, func(i, j int) bool { return tr.Attacks[i].Login.At < tr.Attacks[j].Login.At })
	return tr, nil
}

type generator struct {
	cfg   Config
	w     *World
	homes []countryInfo
	start time.Time
}

// ms is the unix millisecond time of the start of day d.
func (g *generator) ms(d int) int64 { return g.start.UnixMilli() + int64(d)*dayMs }

// simUser is a legitimate user's habits.
type simUser struct {
	idx                    int
	id, email, country     string
	lang                   string
	tz                     float64 // hours east of UTC
	peaks                  [2]float64
	rate                   float64 // logins per day
	home0, home            int
	homeHost               byte
	mobile                 []int // carrier gateways (CGNAT)
	work                   int   // -1: none
	workHost               byte
	vpn                    []int // commercial VPN exits (nil: no VPN)
	devices                []*device
	tripEnd                int // first day back home
	tripNet                int
	tripHost               byte
	tripAbroad, tripLaptop bool
}

func (g *generator) newCID(rng *rand.Rand) string {
	if !g.cfg.ClientIDs {
		return ""
	}
	return fmt.Sprintf("%016x%016x", rng.Uint64(), rng.Uint64())
}

func (g *generator) user(i int, st *TrafficStats) (*simUser, []Login) {
	rng := rand.New(rand.NewPCG(g.cfg.Seed, uint64(i)+1))
	w := g.w
	u := &simUser{idx: i, id: fmt.Sprintf("u%06d", i), work: -1, tripEnd: -1}
	u.email = fmt.Sprintf("%s.%s.%d@example.com", firstNames[rng.IntN(len(firstNames))], lastNames[rng.IntN(len(lastNames))], i)
	var total float64
	for _, c := range g.homes {
		total += c.weight
	}
	x := rng.Float64() * total
	ci := g.homes[len(g.homes)-1]
	for _, c := range g.homes {
		if x -= c.weight; x < 0 {
			ci = c
			break
		}
	}
	u.country, u.lang = ci.code, ci.lang
	if rng.Float64() < 0.08 { // expats and people with an English browser
		u.lang = "en-US,en;q=0.9"
	}
	u.home = w.residential(rng, u.country)
	u.home0 = u.home
	u.homeHost = byte(1 + rng.IntN(254))
	u.tz = math.Round(w.Nets[u.home].Lon / 15)
	u.peaks = [2]float64{7 + 3*rng.Float64(), 18 + 5*rng.Float64()}
	u.rate = math.Min(5, math.Max(0.05, math.Exp(math.Log(0.5)+0.8*rng.NormFloat64())))
	// a mobile carrier present in the user's region: its CGNAT gateways
	// are mostly regional, one of them anywhere in the country
	carrier := w.inRegion(rng, u.home)
	for k := 0; k < 4; k++ {
		u.mobile = append(u.mobile, w.sameASN(rng, carrier, k < 3))
	}
	if rng.Float64() < 0.35 {
		u.work, u.workHost = w.inRegion(rng, u.home), byte(1+rng.IntN(254))
	}
	if rng.Float64() < 0.04 {
		u.vpn = []int{w.datacenter(rng, u.country), w.datacenter(rng, u.country)}
	}
	// devices: most people have a phone and a computer, some a tablet
	hasPhone, hasComputer := rng.Float64() < 0.85, rng.Float64() < 0.75
	if !hasPhone && !hasComputer {
		hasPhone = true
	}
	if hasComputer {
		d := newDevice(rng, pickFamily(rng, kindDesktop))
		d.weight = 0.45
		u.devices = append(u.devices, d)
	}
	if hasPhone {
		d := newDevice(rng, pickFamily(rng, kindMobile))
		d.weight = 0.5
		u.devices = append(u.devices, d)
	}
	if rng.Float64() < 0.15 {
		d := newDevice(rng, pickFamily(rng, kindTablet))
		d.weight = 0.1
		u.devices = append(u.devices, d)
	}
	// the primary device (the most used) first
	sort.SliceStable(u.devices, func(a, b int) bool { return u.devices[a].weight > u.devices[b].weight })
	for _, d := range u.devices {
		d.cid = g.newCID(rng)
	}

	var out []Login
	trainDays := g.cfg.Days - g.cfg.EvalDays
	for day := 0; day < g.cfg.Days; day++ {
		g.dayChanges(rng, u, day, st)
		n := poisson(rng, u.rate)
		for s := 0; s < n; s++ {
			l, ok := g.session(rng, u, day, st)
			if !ok {
				continue
			}
			l.Train = l.At < g.ms(trainDays)
			if rng.Float64() < 0.04 { // a mistyped password first
				f := l
				f.Failed = true
				f.At -= int64(15+rng.IntN(75)) * 1000
				if f.At >= g.start.UnixMilli() {
					out = append(out, f)
				}
			}
			out = append(out, l)
		}
	}
	return u, out
}

// dayChanges applies what changes from one day to the next: a new home
// address, a replaced device, the start or end of a trip.
func (g *generator) dayChanges(rng *rand.Rand, u *simUser, day int, st *TrafficStats) {
	w := g.w
	switch r := rng.Float64(); {
	case r < 0.02: // the ISP moved the line to another /24
		u.home = w.sameASN(rng, u.home, true)
		u.homeHost = byte(1 + rng.IntN(254))
	case r < 0.07: // a new address in the same /24
		u.homeHost = byte(1 + rng.IntN(254))
	}
	for i, d := range u.devices {
		if rng.Float64() < 1.0/500 { // a new phone or computer
			f := d.fam
			if rng.Float64() < 0.4 {
				f = pickFamily(rng, f.kind)
			}
			nd := newDevice(rng, f)
			nd.weight, nd.cid = d.weight, g.newCID(rng)
			u.devices[i] = nd
			st.DeviceChanges++
		}
	}
	if day >= u.tripEnd && u.tripEnd >= 0 {
		u.tripEnd = -1
	}
	if u.tripEnd < 0 && rng.Float64() < 1.0/120 { // about three trips a year
		u.tripEnd = day + 2 + rng.IntN(9)
		u.tripAbroad = rng.Float64() < 0.3
		dest := u.country
		if u.tripAbroad {
			var total float64
			for _, c := range g.homes {
				total += c.weight
			}
			x := rng.Float64() * total
			for _, c := range g.homes {
				if x -= c.weight; x < 0 {
					dest = c.code
					break
				}
			}
		}
		u.tripNet = w.residential(rng, dest)
		u.tripHost = byte(1 + rng.IntN(254))
		u.tripLaptop = rng.Float64() < 0.5
	}
}

// session is one login of the user on day day.
func (g *generator) session(rng *rand.Rand, u *simUser, day int, st *TrafficStats) (Login, bool) {
	w := g.w
	onTrip := u.tripEnd >= 0
	// which device
	var usable []*device
	var total float64
	for _, d := range u.devices {
		if onTrip && d.fam.kind != kindMobile && !u.tripLaptop {
			continue
		}
		usable = append(usable, d)
		total += d.weight
	}
	if len(usable) == 0 {
		return Login{}, false
	}
	dev := usable[len(usable)-1]
	x := rng.Float64() * total
	for _, d := range usable {
		if x -= d.weight; x < 0 {
			dev = d
			break
		}
	}
	// when (local time around one of the user's two peaks)
	local := u.peaks[rng.IntN(2)] + 1.5*rng.NormFloat64()
	at := g.ms(day) + int64((local-u.tz)*float64(hourMs)) + rng.Int64N(60000)
	if at < g.start.UnixMilli() || at >= g.ms(g.cfg.Days) {
		return Login{}, false
	}
	weekday := time.UnixMilli(at).UTC().Weekday()
	workHours := weekday != time.Saturday && weekday != time.Sunday && local >= 8 && local < 18
	// where from
	net, host := u.home, u.homeHost
	switch {
	case onTrip:
		st.TravelLogins++
		switch {
		case dev.fam.kind == kindMobile && u.tripAbroad && rng.Float64() < 0.6:
			// roaming is routed through the home carrier
			net, host = u.mobile[rng.IntN(len(u.mobile))], byte(1+rng.IntN(254))
		case dev.fam.kind == kindMobile && !u.tripAbroad && rng.Float64() < 0.6:
			net, host = u.mobile[rng.IntN(len(u.mobile))], byte(1+rng.IntN(254))
		default: // hotel or friends' wifi
			net, host = u.tripNet, u.tripHost
		}
	case dev.fam.kind == kindDesktop:
		switch {
		case u.vpn != nil && rng.Float64() < 0.25:
			net, host = u.vpn[rng.IntN(len(u.vpn))], byte(1+rng.IntN(254))
			st.VPNLogins++
		case u.work >= 0 && workHours && rng.Float64() < 0.7:
			net, host = u.work, u.workHost
		}
	case dev.fam.kind == kindMobile:
		switch r := rng.Float64(); {
		case r < 0.5:
			net, host = u.mobile[rng.IntN(len(u.mobile))], byte(1+rng.IntN(254))
		case r < 0.55 && u.work >= 0:
			net, host = u.work, u.workHost
		}
	}
	if g.cfg.ClientIDs && rng.Float64() < 0.02 { // cookies cleared
		dev.cid = g.newCID(rng)
	}
	return Login{At: at, User: u.idx, Ctx: browserContext(dev, day, w.Nets[net].Addr(host), u.lang)}, true
}

func browserContext(d *device, day int, ip netip.Addr, lang string) Context {
	c := Context{IP: ip, UA: d.ua(day), Lang: lang, Accept: acceptHTML, ClientID: d.cid}
	c.CHUA, c.CHMobile, c.CHPlatform = d.hints(day)
	return c
}

// poisson draws from a Poisson distribution (Knuth; rates here are small).
func poisson(rng *rand.Rand, lambda float64) int {
	l, k, p := math.Exp(-lambda), 0, 1.0
	for {
		p *= rng.Float64()
		if p <= l {
			return k
		}
		k++
	}
}

// attackTime is a time in the evaluation period when someone in time zone
// tz (hours east of UTC) is awake, or any time when tz is NaN.
func (g *generator) attackTime(rng *rand.Rand, tz float64) int64 {
	first := g.cfg.Days - g.cfg.EvalDays
	for {
		day := first + rng.IntN(g.cfg.EvalDays)
		var at int64
		if math.IsNaN(tz) {
			at = g.ms(day) + rng.Int64N(dayMs)
		} else {
			local := 9 + 14*rng.Float64() // 09:00 to 23:00 local
			at = g.ms(day) + int64((local-tz)*float64(hourMs)) + rng.Int64N(60000)
		}
		if at >= g.ms(first) && at < g.ms(g.cfg.Days) {
			return at
		}
	}
}

// randomDevice is a device drawn from the market (desktop or phone).
func (g *generator) randomDevice(rng *rand.Rand) *device {
	k := kindDesktop
	if rng.Float64() < 0.4 {
		k = kindMobile
	}
	d := newDevice(rng, pickFamily(rng, k))
	d.cid = g.newCID(rng)
	return d
}

func (g *generator) randomLang(rng *rand.Rand) string {
	return g.homes[rng.IntN(len(g.homes))].lang
}

// attacks generates cfg.AttacksPerType attacks of type l on victims.
func (g *generator) attacks(l Label, users []*simUser, victims []int, st *TrafficStats) []Attack {
	rng := rand.New(rand.NewPCG(g.cfg.Seed, 0xa77ac4<<8|uint64(l)))
	w := g.w
	n := g.cfg.AttacksPerType
	out := make([]Attack, 0, n)
	day := func(at int64) int { return int((at - g.start.UnixMilli()) / dayMs) }
	if l == Stuffing {
		return g.stuffing(rng, victims, n)
	}
	for len(out) < n {
		v := users[victims[rng.IntN(len(victims))]]
		var net int
		var dev *device
		var lang string
		switch l {
		case Naive: // random country, random device
			c := w.Countries[rng.IntN(len(w.Countries))]
			net, dev, lang = w.residential(rng, c), g.randomDevice(rng), langOf(c)
		case VPN: // a VPN exit in the victim's country, random device
			if len(w.dc[v.country]) == 0 {
				st.VPNFallback++
			}
			net, dev, lang = w.datacenter(rng, v.country), g.randomDevice(rng), g.randomLang(rng)
		case Targeted: // the victim's region, browser, OS and language
			net = w.inRegion(rng, v.home)
			dev = newDevice(rng, v.devices[0].fam)
			dev.lag = 0
			dev.cid = g.newCID(rng)
			lang = v.lang
		case Bot:
			net = w.anyDatacenter(rng)
		}
		host := byte(1 + rng.IntN(254))
		ip := w.Nets[net].Addr(host)
		var a Attack
		a.Label, a.Victim = l, v.idx
		if l == Bot {
			at := g.attackTime(rng, math.NaN())
			a.Login = Login{At: at, User: v.idx, Ctx: botContext(rng, ip, day(at))}
		} else {
			at := g.attackTime(rng, math.Round(w.Nets[net].Lon/15))
			a.Login = Login{At: at, User: v.idx, Ctx: browserContext(dev, day(at), ip, lang)}
		}
		out = append(out, a)
	}
	return out
}

// botContext is an automated client: a headless browser, an HTTP library,
// or a plain browser user agent sent by a script that forgets the other
// headers.
func botContext(rng *rand.Rand, ip netip.Addr, day int) Context {
	v := 124 + day/28
	switch r := rng.Float64(); {
	case r < 0.5:
		return Context{IP: ip, UA: fmt.Sprintf(headlessTmpl, v), Lang: "en-US,en;q=0.9", Accept: acceptHTML,
			CHUA: fmt.Sprintf(`"Chromium";v="%d", "HeadlessChrome";v="%d", "Not-A.Brand";v="99"`, v, v), CHMobile: "?0", CHPlatform: `"Windows"`}
	case r < 0.75:
		return Context{IP: ip, UA: libraryUAs[rng.IntN(len(libraryUAs))], Accept: "*/*"}
	default:
		d := &device{fam: families[0]}
		return Context{IP: ip, UA: d.ua(day), Accept: "*/*"}
	}
}

// stuffing generates credential-stuffing campaigns until n victims had a
// working password tried: each campaign runs from one datacenter address
// or a pool of residential proxies, with one stale browser user agent and
// no client hints, over a two-hour window; each victim may first get a few
// wrong passwords.
func (g *generator) stuffing(rng *rand.Rand, victims []int, n int) []Attack {
	w := g.w
	var out []Attack
	first := g.ms(g.cfg.Days - g.cfg.EvalDays)
	span := g.ms(g.cfg.Days) - first - 2*hourMs
	for len(out) < n {
		size := min(n-len(out), 20+rng.IntN(81))
		start := first + rng.Int64N(max(1, span))
		var pool []netip.Addr
		if rng.Float64() < 0.5 {
			pool = []netip.Addr{w.Nets[w.anyDatacenter(rng)].Addr(byte(1 + rng.IntN(254)))}
		} else {
			for k := 0; k < 100; k++ {
				c := w.Countries[rng.IntN(len(w.Countries))]
				pool = append(pool, w.Nets[w.residential(rng, c)].Addr(byte(1+rng.IntN(254))))
			}
		}
		d := &device{fam: families[0], lag: 2 + rng.IntN(6)}
		day := int((start - g.start.UnixMilli()) / dayMs)
		ctx := Context{UA: d.ua(day), Lang: "en-US,en;q=0.9", Accept: acceptHTML}
		for k := 0; k < size; k++ {
			v := victims[rng.IntN(len(victims))]
			at := start + rng.Int64N(2*hourMs)
			a := Attack{Label: Stuffing, Victim: v}
			for t := rng.IntN(3); t > 0; t-- {
				c := ctx
				c.IP = pool[rng.IntN(len(pool))]
				a.Tries = append(a.Tries, Login{At: at - int64(t)*int64(5000+rng.IntN(25000)), User: v, Failed: true, Ctx: c})
			}
			c := ctx
			c.IP = pool[rng.IntN(len(pool))]
			a.Login = Login{At: at, User: v, Ctx: c}
			out = append(out, a)
		}
	}
	return out
}
