package risk

import (
	"bytes"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/moat-dev/moat/schemas"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

const chromeMac = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"

func chromeUA() schemas.UserAgent {
	return schemas.UserAgent{Raw: chromeMac, Browser: "Chrome", BrowserType: "browser", Engine: "Blink", OS: "Mac OS X", Platform: "macOS", DeviceType: "desktop"}
}

// base is a habitual login: Chrome on a Mac, Paris, Orange, French.
func base(at time.Time) Input {
	ev := &schemas.Event{
		V: 1, ID: "e", AppID: "app", Kind: schemas.KindRisk, Type: "$login", Status: "$succeeded",
		User: schemas.User{ID: "u1", Email: "alice@example.com"},
		Context: schemas.Context{IP: "90.1.2.3", RequestToken: "tok", Headers: map[string]string{
			"user-agent": chromeMac, "accept-language": "fr-FR,fr;q=0.9", "accept": "text/html",
			"sec-ch-ua": `"Chromium";v="124", "Google Chrome";v="124"`, "sec-ch-ua-platform": `"macOS"`, "sec-ch-ua-mobile": "?0",
		}},
		ReceivedAt: at,
	}
	return Input{
		Event:  ev,
		Device: schemas.Device{Token: "dt", Fingerprint: "fp-home", UserAgent: chromeUA()},
		IP:     IPInfo{CountryCode: "FR", City: "Paris", Lat: 48.85, Lon: 2.35, ASN: 3215, ISP: "Orange", Found: true},
		Email:  EmailInfo{Normalized: "alice@example.com", Domain: "example.com", Valid: true},
	}
}

// history returns a state with n habitual logins, one a day before t0.
func history(e *Engine, n int) *UserState {
	st := &UserState{}
	for i := n; i > 0; i-- {
		in := base(t0.Add(-time.Duration(i) * 24 * time.Hour))
		e.Assess(st, in)
	}
	return st
}

func TestSignals(t *testing.T) {
	cases := []struct {
		name   string
		signal string
		mod    func(in *Input)
		prep   func(e *Engine, st *UserState) // extra history
	}{
		{"new device", SigNewDevice, func(in *Input) { in.Device.Fingerprint = "fp-other" }, nil},
		{"new country", SigNewCountry, func(in *Input) { in.IP.CountryCode = "DE"; in.IP.Lat, in.IP.Lon = 48.85, 2.36 }, nil},
		{"new isp", SigNewISP, func(in *Input) { in.IP.ASN = 12322 }, nil},
		{"new language", SigNewLanguage, func(in *Input) { in.Event.Context.Headers["accept-language"] = "de-DE,de;q=0.9" }, nil},
		{"new os", SigNewOS, func(in *Input) { in.Device.UserAgent.Platform = "Windows" }, nil},
		{"new device type", SigNewDeviceType, func(in *Input) { in.Device.UserAgent.DeviceType = "tablet" }, nil},
		{"impossible travel", SigImpossibleTravel, func(in *Input) {
			in.IP.Lat, in.IP.Lon = 40.71, -74.0 // New York, 1 h after Paris
			in.Event.Context.IP = "198.51.100.7"
			in.Event.ReceivedAt = t0.Add(-23 * time.Hour)
		}, nil},
		{"web crawler", SigWebCrawler, func(in *Input) { in.Bot, in.BotName = true, "Googlebot" }, nil},
		{"web crawler ua type", SigWebCrawler, func(in *Input) { in.Device.UserAgent.BrowserType = "bot" }, nil},
		{"headless ua", SigHeadlessBrowser, func(in *Input) {
			in.Event.Context.Headers["user-agent"] = strings.Replace(chromeMac, "Chrome/", "HeadlessChrome/", 1)
		}, nil},
		{"headless sec-ch-ua", SigHeadlessBrowser, func(in *Input) { in.Event.Context.Headers["sec-ch-ua"] = `"HeadlessChrome";v="124"` }, nil},
		{"phantomjs", SigHeadlessBrowser, func(in *Input) {
			in.Event.Context.Headers["user-agent"] = "Mozilla/5.0 (Unknown; Linux x86_64) AppleWebKit/538.1 (KHTML, like Gecko) PhantomJS/2.1.1 Safari/538.1"
		}, nil},
		{"headless is bot behavior", SigBotBehavior, func(in *Input) { in.Event.Context.Headers["user-agent"] = "Mozilla/5.0 Electron/28.0.0" }, nil},
		{"library", SigHTTPClientLibrary, func(in *Input) { in.Device.UserAgent.BrowserType = "library" }, nil},
		{"no user agent", SigMissingHeaders, func(in *Input) { delete(in.Event.Context.Headers, "user-agent") }, nil},
		{"no accept-language", SigMissingHeaders, func(in *Input) { delete(in.Event.Context.Headers, "accept-language") }, nil},
		{"no accept", SigMissingHeaders, func(in *Input) { delete(in.Event.Context.Headers, "accept") }, nil},
		{"missing device data", SigMissingDeviceData, func(in *Input) {
			delete(in.Event.Context.Headers, "user-agent")
			in.Event.Context.RequestToken = ""
			in.Device = schemas.Device{}
		}, nil},
		{"garbage ua", SigInvalidDeviceData, func(in *Input) {
			in.Event.Context.Headers["user-agent"] = "xx"
			in.Device.UserAgent = schemas.UserAgent{Raw: "xx", BrowserType: "unknown"}
		}, nil},
		{"garbage ua control chars", SigInvalidDeviceData, func(in *Input) { in.Event.Context.Headers["user-agent"] = chromeMac + "\x01" }, nil},
		{"proxy", SigProxyIP, func(in *Input) { in.IP.Proxy = true }, nil},
		{"datacenter", SigDatacenterIP, func(in *Input) { in.IP.Datacenter = true }, nil},
		{"tor", SigTor, func(in *Input) { in.IP.Tor = true }, nil},
		{"spoofed platform", SigSpoofedDevice, func(in *Input) { in.Event.Context.Headers["sec-ch-ua-platform"] = `"Windows"` }, nil},
		{"spoofed mobile", SigSpoofedDevice, func(in *Input) { in.Event.Context.Headers["sec-ch-ua-mobile"] = "?1" }, nil},
		{"spoofed firefox with hints", SigSpoofedDevice, func(in *Input) {
			in.Device.UserAgent.Browser, in.Device.UserAgent.Engine = "Firefox", "Gecko"
		}, nil},
		{"disposable", SigDisposableEmailDomain, func(in *Input) { in.Email.Disposable = true }, nil},
		{"invalid email", SigInvalidEmail, func(in *Input) { in.Email.Valid = false }, nil},
		{"generated email", SigGeneratedEmail, func(in *Input) { in.Email.Generated = true }, nil},
		{"alias", SigMultipleAliasesPerEmail, func(in *Input) { in.Email.Alias = "promo" }, nil},
		{"velocity 5m", SigHighActivityAccount, nil, func(e *Engine, st *UserState) {
			for i := 0; i < 25; i++ {
				in := base(t0.Add(-time.Duration(i) * time.Second))
				in.Event.Status = "$attempted"
				e.Assess(st, in)
			}
		}},
		{"velocity 24h", SigHighActivityAccount, nil, func(e *Engine, st *UserState) {
			for i := 0; i < 310; i++ { // one every 4 minutes: never 20 in 5 min, nor 60 in 1 h
				in := base(t0.Add(-time.Duration(i) * 4 * time.Minute))
				in.Event.Status = "$attempted"
				e.Assess(st, in)
			}
		}},
		{"brute force", SigBruteForce, nil, func(e *Engine, st *UserState) {
			for i := 0; i < 10; i++ {
				in := base(t0.Add(-time.Duration(i) * time.Minute))
				in.Event.Status = "$failed"
				e.Assess(st, in)
			}
		}},
		{"credential stuffing (user)", SigCredentialStuffing, nil, func(e *Engine, st *UserState) {
			for i := 0; i < 5; i++ {
				in := base(t0.Add(-time.Duration(i) * time.Minute))
				in.Event.Status = "$failed"
				in.Event.Context.IP = fmt.Sprintf("203.0.113.%d", i)
				e.Assess(st, in)
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := NewEngine(DefaultConfig())
			st := history(e, 10)
			if c.prep != nil {
				c.prep(e, st)
			}
			// control: the habitual event does not fire the signal
			// (unless the prep built the condition up)
			if c.prep == nil {
				ctl := *st
				a := e.Assess(&ctl, base(t0))
				if a.Has(c.signal) {
					t.Fatalf("control fired %s: %v", c.signal, a.Signals)
				}
			}
			in := base(t0)
			if c.mod != nil {
				c.mod(&in)
			}
			a := e.Assess(st, in)
			if !a.Has(c.signal) {
				t.Fatalf("%s did not fire: %v", c.signal, a.Signals)
			}
		})
	}
}

// TestBaselineQuiet: a habitual login raises nothing and is allowed.
func TestBaselineQuiet(t *testing.T) {
	e := NewEngine(DefaultConfig())
	st := history(e, 20)
	a := e.Assess(st, base(t0))
	if len(a.Signals) != 0 {
		t.Fatalf("signals on a habitual login: %v", a.Signals)
	}
	if a.Policy.Action != ActionAllow || a.Risk >= 0.1 {
		t.Fatalf("habitual login: risk %v action %s", a.Risk, a.Policy.Action)
	}
	if !a.Learned {
		t.Fatal("habitual login not learned")
	}
}

func TestNoSignalsWithoutHistory(t *testing.T) {
	e := NewEngine(DefaultConfig())
	a := e.Assess(&UserState{}, base(t0))
	for _, s := range a.Signals {
		if strings.HasPrefix(s, "new_") || s == SigImpossibleTravel {
			t.Fatalf("history signal %s for a new user", s)
		}
	}
}

func TestNotFiring(t *testing.T) {
	e := NewEngine(DefaultConfig())
	st := history(e, 10)
	// slow travel: Paris -> New York over a day is fine
	in := base(t0)
	in.IP.Lat, in.IP.Lon = 40.71, -74.0
	if a := e.Assess(st, in); a.Has(SigImpossibleTravel) {
		t.Fatal("impossible_travel over 24h")
	}
	// a place the user has been learned at (its /24) is never impossible
	// to reach: there the user's mobile gateway or VPN geolocates
	st = history(e, 10)
	in = base(t0.Add(-23 * time.Hour))
	in.IP.Lat, in.IP.Lon = 40.71, -74.0
	if a := e.Assess(st, in); a.Has(SigImpossibleTravel) {
		t.Fatal("impossible_travel to a known subnet")
	}
	// short hop: 300 km in a minute is under the minimum distance
	st = history(e, 10)
	in = base(t0.Add(-24*time.Hour + time.Minute))
	in.IP.Lat, in.IP.Lon = 50.85, 4.35 // Brussels, 264 km
	if a := e.Assess(st, in); a.Has(SigImpossibleTravel) {
		t.Fatal("impossible_travel under the minimum distance")
	}
	// crawler: missing accept headers are not missing_headers
	st = history(e, 10)
	in = base(t0)
	in.Bot = true
	in.Device.UserAgent.BrowserType = "bot"
	delete(in.Event.Context.Headers, "accept")
	if a := e.Assess(st, in); a.Has(SigMissingHeaders) {
		t.Fatal("missing_headers for a crawler")
	}
	// scrubbed user agent is neither missing headers nor missing data
	in = base(t0)
	in.Event.Context.Headers["user-agent"] = "true"
	if a := e.Assess(st, in); a.Has(SigMissingHeaders) || a.Has(SigMissingDeviceData) || a.Has(SigInvalidDeviceData) {
		t.Fatalf("scrubbed ua: %v", a.Signals)
	}
	// Android UA with Linux platform in the UA string is not spoofed
	in = base(t0)
	in.Device.UserAgent.Platform = "Linux"
	in.Event.Context.Headers["sec-ch-ua-platform"] = `"Android"`
	if a := e.Assess(st, in); a.Has(SigSpoofedDevice) {
		t.Fatal("android/linux spoofed")
	}
	// 4 failures: no brute force; 5 failures from one IP: no stuffing
	st = history(e, 10)
	for i := 0; i < 5; i++ {
		in := base(t0.Add(-time.Duration(i) * time.Minute))
		in.Event.Status = "$failed"
		a := e.Assess(st, in)
		if a.Has(SigBruteForce) || a.Has(SigCredentialStuffing) {
			t.Fatalf("failure %d: %v", i, a.Signals)
		}
	}
	// failures older than an hour are forgotten
	if a := e.Assess(st, base(t0.Add(2*time.Hour))); a.Has(SigBruteForce) {
		t.Fatal("stale failures")
	}
	// no email: no email signals
	in = base(t0)
	in.Email = EmailInfo{}
	in.Event.User.Email = ""
	if a := e.Assess(history(e, 3), in); a.Has(SigInvalidEmail) {
		t.Fatal("invalid_email without email")
	}
	// an email but no enrichment: no email signals either
	in = base(t0)
	in.Email = EmailInfo{}
	if a := e.Assess(history(e, 3), in); a.Has(SigInvalidEmail) {
		t.Fatal("invalid_email without enrichment")
	}
	// an address with no '@' (no Normalized) is still invalid
	in = base(t0)
	in.Event.User.Email = ""
	in.Email = EmailInfo{Address: "not-an-email"}
	if a := e.Assess(history(e, 3), in); !a.Has(SigInvalidEmail) {
		t.Fatal("invalid_email for an address without @")
	}
}

func TestSharedSignals(t *testing.T) {
	e := NewEngine(DefaultConfig())
	sh := NewSharedState(0)
	// one device, many accounts
	var a Assessment
	for i := 0; i < 4; i++ {
		in := base(t0.Add(time.Duration(i) * time.Second))
		in.Event.User.ID = fmt.Sprintf("user%d", i)
		in.Shared = sh
		in.DeviceIdentified = true
		a = e.Assess(&UserState{}, in)
		if i < 3 && a.Has(SigMultipleAccountsPerDevice) {
			t.Fatalf("multiple_accounts_per_device at %d users", i+1)
		}
	}
	if !a.Has(SigMultipleAccountsPerDevice) {
		t.Fatal("multiple_accounts_per_device did not fire")
	}
	// cross-user credential stuffing: one IP failing for 5 users
	sh = NewSharedState(0)
	for i := 0; i < 5; i++ {
		in := base(t0.Add(time.Duration(i) * time.Second))
		in.Event.User.ID = fmt.Sprintf("victim%d", i)
		in.Event.Status = "$failed"
		in.Event.Context.IP = "198.51.100.7"
		in.Device.Fingerprint = fmt.Sprintf("fp%d", i)
		in.Shared = sh
		in.DeviceIdentified = true
		a = e.Assess(&UserState{}, in)
		if i < 4 && a.Has(SigCredentialStuffing) {
			t.Fatalf("credential_stuffing at %d users", i+1)
		}
	}
	if !a.Has(SigCredentialStuffing) {
		t.Fatal("cross-user credential_stuffing did not fire")
	}
	// high activity IP and device
	sh = NewSharedState(0)
	for i := 0; i <= 300; i++ {
		in := base(t0.Add(time.Duration(i) * time.Second))
		in.Event.User.ID = fmt.Sprintf("u%d", i%3)
		in.Device.Fingerprint = fmt.Sprintf("fp%d", i%2)
		in.Shared = sh
		in.DeviceIdentified = true
		a = e.Assess(&UserState{}, in)
		if i == 100 && (a.Has(SigHighActivityIP) || a.Has(SigHighActivityDevice)) {
			t.Fatalf("high activity too early: %v", a.Signals)
		}
	}
	if !a.Has(SigHighActivityIP) || !a.Has(SigHighActivityDevice) {
		t.Fatalf("high activity: %v", a.Signals)
	}
	// cross-user aliases
	sh = NewSharedState(0)
	for i, alias := range []string{"", "a1"} {
		in := base(t0)
		in.Event.User.ID = fmt.Sprintf("n%d", i)
		in.Email.Alias = alias
		in.Shared = sh
		in.DeviceIdentified = true
		a = e.Assess(&UserState{}, in)
	}
	if !a.Has(SigMultipleAliasesPerEmail) {
		t.Fatal("cross-user multiple_aliases_per_email")
	}
	// eviction keeps the bound
	sh = NewSharedState(64)
	for i := 0; i < 1000; i++ {
		in := base(t0.Add(time.Duration(i) * time.Second))
		in.Event.Context.IP = fmt.Sprintf("10.0.%d.%d", i/256, i%256)
		in.Shared = sh
		in.DeviceIdentified = true
		e.Assess(&UserState{}, in)
	}
	if sh.Len() > 64 {
		t.Fatalf("shared state holds %d > 64 keys", sh.Len())
	}
}

func TestATOModel(t *testing.T) {
	e := NewEngine(DefaultConfig())
	// a population of other users in France on Chrome/macOS
	for u := 0; u < 50; u++ {
		st := &UserState{}
		for i := 0; i < 5; i++ {
			in := base(t0.Add(-time.Duration(100+i) * time.Hour))
			in.Event.User.ID = fmt.Sprint("pop", u)
			e.Assess(st, in)
		}
	}
	st := history(e, 30)
	habitual := e.Assess(cloneState(st), base(t0))
	// naive attacker: other country, network, OS, browser, language, device
	in := base(t0)
	in.Event.Context.IP = "41.1.2.3"
	in.IP = IPInfo{CountryCode: "NG", Lat: 6.5, Lon: 3.4, ASN: 36873, Found: true}
	in.Device.Fingerprint = "fp-attacker"
	in.Device.UserAgent = schemas.UserAgent{Raw: "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Firefox/125.0", Browser: "Firefox", BrowserType: "browser", Engine: "Gecko", Platform: "Windows", DeviceType: "desktop"}
	in.Event.Context.Headers = map[string]string{"user-agent": in.Device.UserAgent.Raw, "accept": "*/*", "accept-language": "en-US"}
	naive := e.Assess(cloneState(st), in)
	if !(naive.Scores.AccountTakeover > 0.9 && habitual.Scores.AccountTakeover < 0.05) {
		t.Fatalf("ato naive %v habitual %v", naive.Scores.AccountTakeover, habitual.Scores.AccountTakeover)
	}
	if naive.Policy.Action != ActionDeny {
		t.Fatalf("naive attacker action %s (risk %v)", naive.Policy.Action, naive.Risk)
	}
	if naive.Learned {
		t.Fatal("denied event learned")
	}
	// the feature contributions are there and sum with the rest to the logit
	var feats int
	for _, c := range naive.Contributions {
		if c.Kind == "feature" {
			feats++
		}
	}
	if feats != int(numFeatures)+1 { // the features and the device
		t.Fatalf("feature contributions: %d: %+v", feats, naive.Contributions)
	}
	// with little history the model is cautious: one login, new country
	st1 := history(e, 1)
	in1 := base(t0)
	in1.IP.CountryCode = "BE"
	one := e.Assess(st1, in1)
	if one.Scores.AccountTakeover >= naive.Scores.AccountTakeover {
		t.Fatalf("one-login user scored %v >= %v", one.Scores.AccountTakeover, naive.Scores.AccountTakeover)
	}
}

func cloneState(s *UserState) *UserState { c := *s; return &c }

func contribution(a Assessment, score, name string) (float64, bool) {
	for _, c := range a.Contributions {
		if c.Score == score && c.Name == name {
			return c.Value, true
		}
	}
	return 0, false
}

// TestDeviceBackoff: for a device the user is known to use, the device's
// likelihood ratio replaces those of its parts (browser, OS, device type,
// language); a new device is judged by its parts as well.
func TestDeviceBackoff(t *testing.T) {
	e := NewEngine(DefaultConfig())
	st := history(e, 20)
	// a second, rarely used device: a tablet on the same network
	for i := 0; i < 2; i++ {
		in := base(t0.Add(-time.Duration(30+i) * time.Minute))
		in.Device.Fingerprint = "fp-tablet"
		in.Device.UserAgent.DeviceType = "tablet"
		in.Trusted = true
		e.Assess(st, in)
	}
	in := base(t0)
	in.Device.Fingerprint = "fp-tablet"
	in.Device.UserAgent.DeviceType = "tablet"
	known := e.Assess(cloneState(st), in)
	for _, name := range []string{"browser", "os", "device_type", "language"} {
		if _, ok := contribution(known, ScoreAccountTakeover, name); ok {
			t.Fatalf("known device: %s counted besides the device: %+v", name, known.Contributions)
		}
	}
	if v, ok := contribution(known, ScoreAccountTakeover, "device"); !ok || v >= 0 {
		t.Fatalf("known device: device contribution %v %v", v, ok)
	}
	// the rarely used known device ranks below a new one of the same kind
	in.Device.Fingerprint = "fp-tablet-2"
	unknown := e.Assess(cloneState(st), in)
	if _, ok := contribution(unknown, ScoreAccountTakeover, "device_type"); !ok {
		t.Fatalf("new device: parts not counted: %+v", unknown.Contributions)
	}
	if v, _ := contribution(unknown, ScoreAccountTakeover, "device"); v <= 0 || unknown.Scores.AccountTakeover <= known.Scores.AccountTakeover {
		t.Fatalf("new device %v (device %v) not above known %v", unknown.Scores.AccountTakeover, v, known.Scores.AccountTakeover)
	}
}

// TestNoveltySmoothing: a new value is stronger evidence against a user
// who always shows the same value than against one who often shows new
// ones (Witten-Bell), at equal history length.
func TestNoveltySmoothing(t *testing.T) {
	e := NewEngine(DefaultConfig())
	stable := history(e, 20)
	varied := &UserState{}
	for i := 20; i > 0; i-- {
		in := base(t0.Add(-time.Duration(i) * 24 * time.Hour))
		in.Event.Context.IP = fmt.Sprintf("90.1.%d.3", i%8) // eight /24s of one ISP
		e.Assess(varied, in)
	}
	if stable.Novel[FeatSubnet] != 1 || varied.Novel[FeatSubnet] != 8 {
		t.Fatalf("novelty counts %d and %d, want 1 and 8", stable.Novel[FeatSubnet], varied.Novel[FeatSubnet])
	}
	in := base(t0)
	in.Event.Context.IP = "90.1.99.3"
	s, _ := contribution(e.Assess(cloneState(stable), in), ScoreAccountTakeover, "ip_subnet")
	v, _ := contribution(e.Assess(cloneState(varied), in), ScoreAccountTakeover, "ip_subnet")
	if !(s > v && v > 0) {
		t.Fatalf("new subnet: stable user %v, varied user %v", s, v)
	}
}

// TestFamiliarNetworkSignals: datacenter_ip and proxy_ip weigh in every
// score from a network the user has not been learned at, and in none from
// the /24 of the user's own VPN, where they still fire; another /24 of the
// same provider weighs again, and so does tor on a familiar /24.
func TestFamiliarNetworkSignals(t *testing.T) {
	for _, tc := range []struct {
		signal string
		flag   func(*IPInfo)
	}{
		{SigDatacenterIP, func(ip *IPInfo) { ip.Datacenter = true }},
		{SigProxyIP, func(ip *IPInfo) { ip.Proxy = true }},
	} {
		t.Run(tc.signal, func(t *testing.T) {
			vpn := func(at time.Time, ip string) Input {
				in := base(at)
				in.Event.Context.IP = ip
				in.IP = IPInfo{CountryCode: "FR", City: "Paris", Lat: 48.86, Lon: 2.34, ASN: 16276, ISP: "VPN", Found: true}
				tc.flag(&in.IP)
				return in
			}
			weighs := func(a Assessment, signal string) (n int) {
				for _, score := range []string{ScoreAccountTakeover, ScoreAccountAbuse, ScoreBot} {
					if v, ok := contribution(a, score, signal); ok && v > 0 {
						n++
					}
				}
				return n
			}
			e := NewEngine(DefaultConfig())
			st := history(e, 20)
			home := e.Assess(cloneState(st), base(t0))
			first := e.Assess(cloneState(st), vpn(t0, "51.15.1.7"))
			if !first.Has(tc.signal) || weighs(first, tc.signal) != 3 || first.Risk <= home.Risk+0.05 {
				t.Fatalf("new network: risk %v (home %v), %+v", first.Risk, home.Risk, first.Contributions)
			}
			// the user passes step-ups through their VPN a few times
			for i := 0; i < 5; i++ {
				in := vpn(t0.Add(-time.Duration(5-i)*time.Hour), fmt.Sprintf("51.15.1.%d", 10+i))
				in.Event.Type = "$challenge"
				if a := e.Assess(st, in); !a.Learned {
					t.Fatalf("step-up through the VPN not learned: %+v", a)
				}
			}
			own := e.Assess(cloneState(st), vpn(t0, "51.15.1.99"))
			if !own.Has(tc.signal) || weighs(own, tc.signal) != 0 {
				t.Fatalf("the user's VPN: %v %+v", own.Signals, own.Contributions)
			}
			if own.Scores.Bot != home.Scores.Bot || own.Scores.AccountAbuse != home.Scores.AccountAbuse || own.Risk >= first.Risk || own.Risk > home.Risk+0.01 {
				t.Fatalf("the user's VPN: scores %+v risk %v; home %+v risk %v", own.Scores, own.Risk, home.Scores, home.Risk)
			}
			// another /24 of the same provider is not the user's VPN
			other := e.Assess(cloneState(st), vpn(t0, "51.15.2.7"))
			if weighs(other, tc.signal) != 3 || other.Risk <= own.Risk {
				t.Fatalf("another /24: risk %v (own VPN %v), %+v", other.Risk, own.Risk, other.Contributions)
			}
			// a Tor exit in the familiar /24 still weighs
			in := vpn(t0, "51.15.1.99")
			in.IP.Tor = true
			if a := e.Assess(cloneState(st), in); weighs(a, SigTor) != 3 || weighs(a, tc.signal) != 0 {
				t.Fatalf("tor on a familiar /24: %+v", a.Contributions)
			}
			// without the rule the user's own VPN weighs as any other
			cfg := DefaultConfig()
			cfg.FamiliarNetworkSignals = nil
			if a := NewEngine(cfg).Assess(cloneState(st), vpn(t0, "51.15.1.99")); weighs(a, tc.signal) != 3 || a.Risk <= own.Risk {
				t.Fatalf("FamiliarNetworkSignals empty: risk %v, %+v", a.Risk, a.Contributions)
			}
		})
	}
}

// TestRiskCombination: risk is the noisy-OR of the three scores, so it is
// at least each of them and keeps the takeover score's order below the
// other scores' bases.
func TestRiskCombination(t *testing.T) {
	e := NewEngine(DefaultConfig())
	st := history(e, 20)
	a := e.Assess(cloneState(st), base(t0))
	sc := a.Scores
	want := 1 - (1-sc.AccountTakeover)*(1-sc.AccountAbuse)*(1-sc.Bot)
	if math.Abs(a.Risk-want) > 2e-6 || a.Risk < sc.AccountAbuse || a.Risk < sc.Bot {
		t.Fatalf("risk %v, scores %+v", a.Risk, sc)
	}
	in := base(t0)
	in.Event.Context.IP = "90.1.99.3" // a new /24 of the usual ISP
	b := e.Assess(cloneState(st), in)
	if !(b.Scores.AccountTakeover > sc.AccountTakeover && b.Scores.AccountTakeover < sc.AccountAbuse && b.Risk > a.Risk) {
		t.Fatalf("takeover %v -> %v (abuse %v) but risk %v -> %v", sc.AccountTakeover, b.Scores.AccountTakeover, sc.AccountAbuse, a.Risk, b.Risk)
	}
}

func TestFeedbackPegs(t *testing.T) {
	e := NewEngine(DefaultConfig())
	st := history(e, 10)
	in := base(t0)
	in.IP = IPInfo{CountryCode: "NG", Lat: 6.5, Lon: 3.4, ASN: 36873, Found: true, Tor: true}
	in.Device.Fingerprint = "fp-x"
	in.Trusted = true
	a := e.Assess(cloneState(st), in)
	if a.Scores.AccountTakeover != 0 || a.Risk != 0 || a.Policy.Action != ActionAllow || a.Feedback != "trusted" {
		t.Fatalf("trusted: %+v", a)
	}
	// a hard deny rule still applies to a trusted device
	p := NewPolicy("p", "hard", ActionAllow, Rule{ID: "tor", Name: "No Tor", Action: ActionDeny, Hard: true, AnySignals: []string{SigTor}})
	in.Policy = p
	if a := e.Assess(cloneState(st), in); a.Policy.Action != ActionDeny {
		t.Fatalf("hard rule on trusted: %+v", a.Policy)
	}
	// a non-hard one does not
	in.Policy = NewPolicy("p", "soft", ActionAllow, Rule{ID: "tor", Name: "No Tor", Action: ActionDeny, AnySignals: []string{SigTor}})
	if a := e.Assess(cloneState(st), in); a.Policy.Action != ActionAllow {
		t.Fatalf("soft rule on trusted: %+v", a.Policy)
	}
	in = base(t0)
	in.Reported = true
	a = e.Assess(cloneState(st), in)
	if a.Scores.AccountTakeover != 1 || a.Risk != 1 || a.Policy.Action != ActionDeny || a.Learned {
		t.Fatalf("reported: %+v", a)
	}
}

func TestPolicy(t *testing.T) {
	p := DefaultPolicy()
	ev := &schemas.Event{Type: "$login", Status: "$succeeded"}
	for _, c := range []struct {
		risk float64
		want string
	}{{0, "allow"}, {0.59, "allow"}, {0.6, "challenge"}, {0.89, "challenge"}, {0.9, "deny"}, {1, "deny"}} {
		if got := p.Evaluate(Assessment{Risk: c.risk}, ev); got.Action != c.want {
			t.Errorf("risk %v: %s, want %s", c.risk, got.Action, c.want)
		}
	}
	r := p.Evaluate(Assessment{Risk: 0.95}, ev)
	if r.ID != "moat-default" || r.RuleName != "Deny threats" || r.RevisionID == "" || len(r.RevisionID) != 36 {
		t.Fatalf("result %+v", r)
	}
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}

	rules := []Rule{
		{ID: "bl", Name: "Blocklisted IP", Action: ActionDeny, AnyLists: []string{"blocklist"}},
		{ID: "reg", Name: "Abusive registration", Action: ActionDeny, Types: []string{"$registration"}, Scores: []ScoreCond{{ScoreAccountAbuse, ">", 0.5}}},
		{ID: "fail", Name: "Failed with proxy", Action: ActionChallenge, Statuses: []string{"$failed"}, AllSignals: []string{SigProxyIP, SigNewDevice}},
		{ID: "ok", Name: "Known device", Action: ActionAllow, NoSignals: []string{SigNewDevice}},
	}
	q := NewPolicy("app1", "App policy", ActionChallenge, rules...)
	reg := &schemas.Event{Type: "$registration", Status: "$attempted"}
	fail := &schemas.Event{Type: "$login", Status: "$failed"}
	check := func(a Assessment, ev *schemas.Event, want, rule string) {
		t.Helper()
		got := q.Evaluate(a, ev)
		if got.Action != want || got.RuleID != rule {
			t.Errorf("got %s/%s want %s/%s", got.Action, got.RuleID, want, rule)
		}
	}
	check(Assessment{Lists: []string{"blocklist"}}, ev, "deny", "bl")
	check(Assessment{Scores: Scores{AccountAbuse: 0.7}}, reg, "deny", "reg")
	check(Assessment{Scores: Scores{AccountAbuse: 0.7}}, ev, "allow", "ok")
	check(Assessment{Signals: []string{SigNewDevice, SigProxyIP}}, fail, "challenge", "fail")
	check(Assessment{Signals: []string{SigNewDevice}}, fail, "challenge", "")
	check(Assessment{Signals: []string{SigNewDevice}}, ev, "challenge", "")

	// revisions: content-derived, stable, changing with any rule change
	q2 := NewPolicy("app1", "App policy", ActionChallenge, rules...)
	if q.Revision() != q2.Revision() {
		t.Fatal("same content, different revision")
	}
	lit := &Policy{ID: "app1", Name: "App policy", Default: ActionChallenge, Rules: rules}
	if lit.Revision() != q.Revision() {
		t.Fatal("literal and NewPolicy revisions differ")
	}
	changed := append([]Rule(nil), rules...)
	changed[1].Scores = []ScoreCond{{ScoreAccountAbuse, ">", 0.6}}
	if NewPolicy("app1", "App policy", ActionChallenge, changed...).Revision() == q.Revision() {
		t.Fatal("changed threshold kept the revision")
	}
	if NewPolicy("app1", "App policy", ActionDeny, rules...).Revision() == q.Revision() {
		t.Fatal("changed default kept the revision")
	}
	bad := NewPolicy("x", "x", "block", Rule{Action: "maybe"})
	if bad.Validate() == nil {
		t.Fatal("invalid policy validated")
	}
}

// replay runs a mixed stream and returns the assessments and final states.
func replay(t testing.TB) ([]Assessment, [][]byte, []byte) {
	e := NewEngine(DefaultConfig())
	sh := NewSharedState(1000)
	states := make([]UserState, 20)
	var out []Assessment
	for i := 0; i < 3000; i++ {
		u := (i * 7) % len(states)
		in := base(t0.Add(time.Duration(i) * 37 * time.Second))
		in.Event.User.ID = fmt.Sprint("user", u)
		in.Device.Fingerprint = fmt.Sprintf("fp-%d-%d", u, i%(u+2))
		in.IP.CountryCode = []string{"FR", "DE", "US", "FR", "FR"}[i%5]
		in.IP.ASN = uint32(1000 + i%(u+3))
		in.IP.Lat = float64(40 + i%7)
		in.Event.Context.IP = fmt.Sprintf("10.%d.%d.%d", u, i%3, i%250)
		in.Event.Status = []string{"$succeeded", "$succeeded", "$failed", "$attempted"}[i%4]
		in.Email.Alias = []string{"", "", "x"}[i%3]
		in.Shared = sh
		in.DeviceIdentified = true
		out = append(out, e.Assess(&states[u], in))
	}
	var bs [][]byte
	for i := range states {
		b, err := states[i].MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		bs = append(bs, b)
	}
	return out, bs, e.MarshalPopulation()
}

func TestReplayDeterminism(t *testing.T) {
	a1, s1, p1 := replay(t)
	a2, s2, p2 := replay(t)
	if !reflect.DeepEqual(a1, a2) {
		for i := range a1 {
			if !reflect.DeepEqual(a1[i], a2[i]) {
				t.Fatalf("assessment %d differs:\n%+v\n%+v", i, a1[i], a2[i])
			}
		}
	}
	if !reflect.DeepEqual(s1, s2) || !bytes.Equal(p1, p2) {
		t.Fatal("states differ")
	}
	var fired int
	for _, a := range a1 {
		fired += len(a.Signals)
	}
	if fired == 0 {
		t.Fatal("replay stream fired no signal")
	}
}

func TestStateRoundTrip(t *testing.T) {
	e := NewEngine(DefaultConfig())
	st := history(e, 40)
	for i := 0; i < 12; i++ {
		in := base(t0.Add(time.Duration(i) * time.Minute))
		in.Event.Status = "$failed"
		in.Event.Context.IP = fmt.Sprintf("192.0.2.%d", i)
		in.Email.Alias = fmt.Sprint(i % 6)
		e.Assess(st, in)
	}
	b, err := st.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var got UserState
	if err := got.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	if got != *st {
		t.Fatalf("round trip differs")
	}
	// identical continuation (population frozen: the first call would
	// otherwise teach it before the second)
	e.cfg.LearnPopulation = false
	in := base(t0.Add(time.Hour))
	in.Device.Fingerprint = "fp-new"
	if a, b := e.Assess(&got, in), e.Assess(st, in); !reflect.DeepEqual(a, b) {
		t.Fatal("assessments differ after round trip")
	}
	// empty state
	var empty UserState
	eb, _ := empty.MarshalBinary()
	if len(eb) != 1 {
		t.Fatalf("empty state is %d bytes", len(eb))
	}
	if err := got.UnmarshalBinary(eb); err != nil || got != (UserState{}) {
		t.Fatal("empty round trip")
	}
	// corrupt and truncated input
	for _, bad := range [][]byte{nil, {9}, b[:len(b)-1], append(append([]byte(nil), b...), 0)} {
		if err := got.UnmarshalBinary(bad); err == nil {
			t.Fatalf("accepted corrupt state of %d bytes", len(bad))
		}
	}
	// population snapshot
	e2 := NewEngine(DefaultConfig())
	if err := e2.RestorePopulation(e.MarshalPopulation()); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(e2.MarshalPopulation(), e.MarshalPopulation()) {
		t.Fatal("population round trip")
	}
}

// pathological: a user with 1000 distinct devices, countries, networks,
// languages, aliases and failing IPs.
func pathological(e *Engine) *UserState {
	st := &UserState{}
	langs := []string{"en", "fr", "de", "es", "it", "pt", "nl", "pl", "ru", "ja", "zh", "ko"}
	for i := 0; i < 1000; i++ {
		in := base(t0.Add(time.Duration(i) * 13 * time.Minute))
		in.Trusted = true // so that every event is learned
		in.Device.Fingerprint = fmt.Sprint("fp", i)
		in.IP.CountryCode = fmt.Sprintf("C%d", i)
		in.IP.ASN = uint32(i + 1)
		in.IP.Lat, in.IP.Lon = float64(i%90), float64(i%180)
		in.Event.Context.IP = fmt.Sprintf("%d.%d.%d.1", 1+i%200, i/200, i%256)
		in.Event.Context.Headers["accept-language"] = langs[i%len(langs)]
		in.Device.UserAgent.Browser = fmt.Sprint("B", i)
		in.Device.UserAgent.Platform = fmt.Sprint("P", i)
		in.Device.UserAgent.DeviceType = fmt.Sprint("T", i)
		in.Email.Alias = fmt.Sprint(i)
		e.Assess(st, in)
		in.Event.Status = "$failed"
		in.Trusted = false
		e.Assess(st, in)
	}
	return st
}

func TestStateBound(t *testing.T) {
	if MaxStateSize > 2048 {
		t.Fatalf("MaxStateSize %d > 2 KB", MaxStateSize)
	}
	e := NewEngine(DefaultConfig())
	st := pathological(e)
	b, _ := st.MarshalBinary()
	t.Logf("pathological user: %d bytes serialized (max %d), %d bytes in memory", len(b), MaxStateSize, StateMemory)
	if len(b) > MaxStateSize || len(b) > 2048 {
		t.Fatalf("state %d bytes", len(b))
	}
	if int(st.NDevices) != MaxDevices || int(st.Features[FeatCountry].N) != featureCaps[FeatCountry] {
		t.Fatal("tables not full")
	}
	typical := history(e, 30)
	tb, _ := typical.MarshalBinary()
	t.Logf("typical user (30 logins, one device): %d bytes", len(tb))
	// the newest device survives eviction, the oldest does not
	if st.findDevice(fnv64("fp999")) < 0 || st.findDevice(fnv64("fp0")) >= 0 {
		t.Fatal("device LRU")
	}
}

func TestContributionsSorted(t *testing.T) {
	e := NewEngine(DefaultConfig())
	st := history(e, 10)
	in := base(t0)
	in.IP.Tor, in.IP.Datacenter, in.Email.Disposable = true, true, true
	in.Device.Fingerprint = "x"
	a := e.Assess(st, in)
	for i := 1; i < len(a.Contributions); i++ {
		p, c := a.Contributions[i-1], a.Contributions[i]
		if p.Score > c.Score {
			t.Fatalf("unsorted %v", a.Contributions)
		}
	}
	if a.Contributions[0].Kind != "base" {
		t.Fatal("base not first")
	}
	if !sortedStrings(a.Signals) {
		t.Fatal("signals unsorted")
	}
}

func sortedStrings(s []string) bool {
	for i := 1; i < len(s); i++ {
		if s[i-1] >= s[i] {
			return false
		}
	}
	return true
}

func TestSignalNamesSorted(t *testing.T) {
	if !sortedStrings(signalNames[:]) {
		t.Fatal("signalNames must be sorted")
	}
	w := DefaultConfig().Weights
	for _, s := range signalNames {
		if _, ok := w[s]; !ok {
			t.Errorf("no default weight for %s", s)
		}
	}
}

func TestRing(t *testing.T) {
	var r ring5
	for i := uint32(100); i < 110; i++ {
		ringAdd(&r.Head, r.C[:], i)
		if got := ringSum(r.Head, r.C[:], i); got != min(int(i-99), 5) {
			t.Fatalf("at %d: %d", i, got)
		}
	}
	ringAdd(&r.Head, r.C[:], 50) // too old: ignored
	if ringSum(r.Head, r.C[:], 109) != 5 {
		t.Fatal("old event counted")
	}
	if ringSum(r.Head, r.C[:], 112) != 2 || ringSum(r.Head, r.C[:], 200) != 0 {
		t.Fatal("window sliding")
	}
}

// TestStateVersion1: states written before the novelty counts (version 1)
// still decode; the counts are estimated from the tables.
func TestStateVersion1(t *testing.T) {
	e := NewEngine(DefaultConfig())
	st := history(e, 12)
	in := base(t0)
	in.Device.Fingerprint = "fp-2"
	in.Event.Context.IP = "90.1.9.3"
	in.Trusted = true
	e.Assess(st, in)
	b, err := st.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	// version 2 minus the novelty counts is version 1
	off := 1 + 12 + 13
	for f := range st.Features {
		off += 1 + 10*int(st.Features[f].N)
	}
	v1 := append([]byte{1}, b[1:off]...)
	v1 = append(v1, b[off+2*int(numFeatures)+2:]...)
	var got UserState
	if err := got.UnmarshalBinary(v1); err != nil {
		t.Fatal(err)
	}
	want := *st
	for f := range want.Novel {
		want.Novel[f] = uint16(want.Features[f].N)
	}
	want.NovelDevices = uint16(want.NDevices)
	if got != want || got.Novel[FeatSubnet] != 2 || got.NovelDevices != 2 {
		t.Fatalf("version 1 decoded to %+v", got)
	}
	if err := got.UnmarshalBinary(append(v1, 0)); err == nil {
		t.Fatal("version 1 with trailing bytes accepted")
	}
}

// TestSharedDeviceNeedsIdentity: a fingerprint made of the browser, OS and
// language (no client id) names a kind of device that thousands of users
// share, so it is not counted across users: ten accounts on "Chrome on
// Windows" are not multiple_accounts_per_device, and the event has no
// device observation.
func TestSharedDeviceNeedsIdentity(t *testing.T) {
	e := NewEngine(DefaultConfig())
	sh := NewSharedState(0)
	var a Assessment
	for i := 0; i < 10; i++ {
		in := base(t0.Add(time.Duration(i) * time.Second))
		in.Event.User.ID = fmt.Sprintf("user%d", i)
		in.Shared = sh
		a = e.Assess(&UserState{}, in)
		for _, o := range a.Observations {
			if o.Kind == schemas.ObserveDevice {
				t.Fatal("a device kind was observed across users")
			}
		}
	}
	if a.Has(SigMultipleAccountsPerDevice) || a.Has(SigHighActivityDevice) {
		t.Fatalf("signals of a device kind: %v", a.Signals)
	}
}

func TestFnv32Alias(t *testing.T) {
	for _, s := range []string{"", "a", "bob+x@example.com", strings.Repeat("é", 40)} {
		if fnv32Alias(s) != fnv32("\x00"+s) {
			t.Fatalf("fnv32Alias(%q) differs", s)
		}
	}
}
