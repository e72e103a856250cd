package risk

import (
	"bytes"
	"math"
	"math/bits"
	"net/netip"
	"sort"
	"strings"

	"github.com/moat-dev/moat/schemas"
)

// signalNames lists every signal the package can emit, sorted: a bit set
// over these indexes gives sorted output without sorting.
var signalNames = [...]string{
	SigBotBehavior,
	SigBruteForce,
	SigCredentialStuffing,
	SigDatacenterIP,
	SigDisposableEmailDomain,
	SigGeneratedEmail,
	SigHeadlessBrowser,
	SigHighActivityAccount,
	SigHighActivityDevice,
	SigHighActivityIP,
	SigHTTPClientLibrary,
	SigImpossibleTravel,
	SigInvalidDeviceData,
	SigInvalidEmail,
	SigMissingDeviceData,
	SigMissingHeaders,
	SigMultipleAccountsPerDevice,
	SigMultipleAliasesPerEmail,
	SigNewCountry,
	SigNewDevice,
	SigNewDeviceType,
	SigNewISP,
	SigNewLanguage,
	SigNewOS,
	SigProxyIP,
	SigSpoofedDevice,
	SigTor,
	SigWebCrawler,
}

const numSignals = len(signalNames)

// Signal indexes (positions in signalNames).
const (
	sBotBehavior = iota
	sBruteForce
	sCredentialStuffing
	sDatacenterIP
	sDisposableEmailDomain
	sGeneratedEmail
	sHeadlessBrowser
	sHighActivityAccount
	sHighActivityDevice
	sHighActivityIP
	sHTTPClientLibrary
	sImpossibleTravel
	sInvalidDeviceData
	sInvalidEmail
	sMissingDeviceData
	sMissingHeaders
	sMultipleAccountsPerDevice
	sMultipleAliasesPerEmail
	sNewCountry
	sNewDevice
	sNewDeviceType
	sNewISP
	sNewLanguage
	sNewOS
	sProxyIP
	sSpoofedDevice
	sTor
	sWebCrawler
)

// Signals returns every signal name this package can emit, sorted.
func Signals() []string { return append([]string(nil), signalNames[:]...) }

type sigset uint32

func (s *sigset) set(i int, on bool) {
	if on {
		*s |= 1 << i
	}
}

func (s sigset) has(i int) bool { return s&(1<<i) != 0 }

// --- hashing (FNV-1a, inline: no allocation) ---

const (
	fnv32Offset = 2166136261
	fnv32Prime  = 16777619
)

func fnv32(s string) uint32 { return fnv32Done(fnv32Add(fnv32Offset, s)) }

// fnv32Alias is fnv32("\x00" + alias), without building the string.
func fnv32Alias(alias string) uint32 {
	return fnv32Done(fnv32Add(fnv32Add(fnv32Offset, "\x00"), alias))
}

// fnv32Add hashes s into h.
func fnv32Add(h uint32, s string) uint32 {
	for i := 0; i < len(s); i++ {
		h ^= uint32(s[i])
		h *= fnv32Prime
	}
	return h
}

// fnv32Done keeps 0 for "no value".
func fnv32Done(h uint32) uint32 {
	if h == 0 {
		return 1
	}
	return h
}

func fnv64(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	if h == 0 {
		h = 1
	}
	return h
}

func fnv32b(b []byte) uint32 {
	h := uint32(2166136261)
	for _, c := range b {
		h ^= uint32(c)
		h *= 16777619
	}
	if h == 0 {
		h = 1
	}
	return h
}

// subnetHash hashes the /24 of an IPv4 address or the /48 of an IPv6 one
// (0 when ip does not parse).
func subnetHash(ip string) uint32 {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return 0
	}
	a = a.Unmap()
	if a.Is4() {
		b := a.As4()
		return fnv32b([]byte{4, b[0], b[1], b[2]})
	}
	b := a.As16()
	return fnv32b([]byte{6, b[0], b[1], b[2], b[3], b[4], b[5]})
}

// PrimaryLanguage returns the primary subtag of the first language of an
// Accept-Language header, lower-cased: "en-US,en;q=0.9" is "en".
func PrimaryLanguage(h string) string {
	if h == "" || h == "true" {
		return ""
	}
	first, _, _ := strings.Cut(h, ",")
	first, _, _ = strings.Cut(first, ";")
	first, _, _ = strings.Cut(first, "-")
	first = strings.TrimSpace(first)
	if first == "*" {
		return ""
	}
	return strings.ToLower(first)
}

func header(ev *schemas.Event, name string) (string, bool) {
	if ev.Context.Headers == nil {
		return "", false
	}
	v, ok := ev.Context.Headers[name] // names are stored normalized
	return v, ok
}

// featureValues hashes the event's value of each feature (0: no value).
func featureValues(in *Input) [numFeatures]uint32 {
	var fv [numFeatures]uint32
	ev := in.Event
	fv[FeatSubnet] = subnetHash(ev.Context.IP)
	fv[FeatASN] = in.IP.ASN
	if cc := in.IP.CountryCode; cc != "" {
		fv[FeatCountry] = fnv32(strings.ToUpper(cc))
	}
	ua := &in.Device.UserAgent
	if ua.Browser != "" && ua.Browser != "Other" {
		fv[FeatBrowser] = fnv32(ua.Browser)
	}
	if ua.Platform != "" && ua.Platform != "Other" {
		fv[FeatOS] = fnv32(ua.Platform)
	}
	if ua.DeviceType != "" && ua.DeviceType != "unknown" {
		fv[FeatDeviceType] = fnv32(ua.DeviceType)
	}
	if al, ok := header(ev, "accept-language"); ok {
		if l := PrimaryLanguage(al); l != "" {
			fv[FeatLanguage] = fnv32(l)
		}
	}
	return fv
}

var headlessTokens = []string{"headlesschrome", "phantomjs", "electron/", "slimerjs", "puppeteer", "playwright", "selenium", "webdriver", "htmlunit"}

// containsAnyFold reports whether s contains any of the lower-case ASCII
// tokens, ignoring ASCII case, without allocating.
func containsAnyFold(s string, tokens []string) bool {
	if s == "" {
		return false
	}
	var buf [1024]byte
	if len(s) > len(buf) {
		s = s[:len(buf)]
	}
	l := buf[:len(s)]
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		l[i] = c
	}
	for _, t := range tokens {
		if bytes.Contains(l, []byte(t)) {
			return true
		}
	}
	return false
}

// garbageUA reports a user agent no real client sends.
func garbageUA(raw string, ua *schemas.UserAgent) bool {
	if len(raw) < 8 || len(raw) > 1024 {
		return true
	}
	for i := 0; i < len(raw); i++ {
		if c := raw[i]; c < 0x20 || c == 0x7f {
			return true
		}
	}
	if !strings.ContainsRune(raw, '/') {
		switch ua.BrowserType {
		case "browser", "bot", "library":
			return false
		}
		return true
	}
	return false
}

// chPlatform maps a sec-ch-ua-platform value to schemas.UserAgent.Platform.
func chPlatform(v string) string {
	switch strings.ToLower(strings.Trim(strings.TrimSpace(v), `"`)) {
	case "windows":
		return "Windows"
	case "macos":
		return "macOS"
	case "linux":
		return "Linux"
	case "android":
		return "Android"
	case "ios":
		return "iOS"
	case "chrome os", "chromeos", "chromium os":
		return "ChromeOS"
	}
	return ""
}

// spoofed compares the user agent with the client hints.
func spoofed(ev *schemas.Event, ua *schemas.UserAgent) bool {
	if ua.Raw == "" {
		return false
	}
	if p, ok := header(ev, "sec-ch-ua-platform"); ok && p != "true" {
		if chp := chPlatform(p); chp != "" && ua.Platform != "" && ua.Platform != "Other" && chp != ua.Platform {
			// Android UAs report Linux in some builds: not a mismatch.
			if !(chp == "Android" && ua.Platform == "Linux") {
				return true
			}
		}
	}
	if m, ok := header(ev, "sec-ch-ua-mobile"); ok && m != "true" {
		switch strings.TrimSpace(m) {
		case "?1":
			if ua.DeviceType == "desktop" {
				return true
			}
		case "?0":
			if ua.DeviceType == "mobile" {
				return true
			}
		}
	}
	// Client hints come from Chromium only: Gecko or Safari WebKit claiming
	// them is a lie about one or the other.
	if v, ok := header(ev, "sec-ch-ua"); ok && v != "" && v != "true" {
		if ua.Engine == "Gecko" || ua.Engine == "Trident" ||
			(ua.Engine == "WebKit" && ua.Platform == "macOS" && ua.Browser == "Safari") {
			return true
		}
	}
	return false
}

// haversineKm is the great-circle distance between two points.
func haversineKm(lat1, lon1, lat2, lon2 float64) float64 {
	const r = 6371.0
	p1, p2 := lat1*math.Pi/180, lat2*math.Pi/180
	dp, dl := p2-p1, (lon2-lon1)*math.Pi/180
	a := math.Sin(dp/2)*math.Sin(dp/2) + math.Cos(p1)*math.Cos(p2)*math.Sin(dl/2)*math.Sin(dl/2)
	return 2 * r * math.Asin(math.Min(1, math.Sqrt(a)))
}

func unixSeconds(ev *schemas.Event) uint32 {
	s := ev.ReceivedAt.Unix()
	switch {
	case s < 0:
		return 0
	case s > math.MaxUint32:
		return math.MaxUint32
	}
	return uint32(s)
}

func isFailedLogin(ev *schemas.Event) bool {
	return ev.Type == "$login" && ev.Status == "$failed" || ev.LegacyEvent == "$login.failed"
}

func located(ip *IPInfo) bool {
	return ip.Found && !(ip.Lat == 0 && ip.Lon == 0)
}

// Assess scores the event against the user's state, then folds the event
// into the state. st may be a zero UserState (a new user).
//
// What is folded:
//   - always: the velocity counters (every event), failed logins and their
//     IPs ($login $failed), the email alias, the shared IP/device state;
//   - only for learned events: devices, countries, ASNs, subnets,
//     browsers, OS, device types, languages, the last location and the
//     engine's population table. An event is learned when its status is
//     $succeeded, the device is not reported, the action is not deny, and
//     the action is allow or the device is trusted or the event is a
//     $challenge $succeeded (the user passed the step-up). Failed,
//     attempted and challenged events never teach the model what "normal"
//     is, so an attacker cannot make their device familiar by trying.
func (e *Engine) Assess(st *UserState, in Input) Assessment {
	ev := in.Event
	cfg := &e.cfg
	now := unixSeconds(ev)
	ua := &in.Device.UserAgent
	fv := featureValues(&in)
	failed := isFailedLogin(ev)
	var sig sigset

	// --- velocity (folded first: counts include this event) ---
	ringAdd(&st.Vel5m.Head, st.Vel5m.C[:], now/60)
	ringAdd(&st.Vel1h.Head, st.Vel1h.C[:], now/300)
	ringAdd(&st.Vel24h.Head, st.Vel24h.C[:], now/3600)
	v5 := ringSum(st.Vel5m.Head, st.Vel5m.C[:], now/60)
	v1h := ringSum(st.Vel1h.Head, st.Vel1h.C[:], now/300)
	v24 := ringSum(st.Vel24h.Head, st.Vel24h.C[:], now/3600)
	sig.set(sHighActivityAccount, v5 > cfg.Vel5m || v1h > cfg.Vel1h || v24 > cfg.Vel24h)

	var ipH uint32
	if ev.Context.IP != "" {
		ipH = fnv32(ev.Context.IP)
	}
	if failed {
		ringAdd(&st.Fail1h.Head, st.Fail1h.C[:], now/300)
		if ipH != 0 {
			st.observeFailIP(ipH, now)
		}
	}
	fails := ringSum(st.Fail1h.Head, st.Fail1h.C[:], now/300)
	var since uint32
	if now > 3600 {
		since = now - 3600
	}
	sig.set(sBruteForce, fails >= cfg.BruteForceFails)
	sig.set(sCredentialStuffing, fails >= cfg.StuffingFails && st.failIPsSince(since, 0) >= cfg.StuffingIPs)

	// knownSubnet: the address is in a /24 (/48) the user has been learned
	// at (their line, their carrier's gateway, their VPN's exit).
	knownSubnet := fv[FeatSubnet] != 0 && st.Features[FeatSubnet].find(fv[FeatSubnet]) >= 0

	// --- history: new_* and impossible travel ---
	if st.Learned > 0 {
		if fp := in.Device.Fingerprint; fp != "" {
			sig.set(sNewDevice, st.findDevice(fnv64(fp)) < 0)
		}
		newVal := func(f Feature) bool {
			t := &st.Features[f]
			return fv[f] != 0 && t.N > 0 && t.find(fv[f]) < 0
		}
		sig.set(sNewCountry, newVal(FeatCountry))
		sig.set(sNewISP, newVal(FeatASN))
		sig.set(sNewLanguage, newVal(FeatLanguage))
		sig.set(sNewOS, newVal(FeatOS))
		sig.set(sNewDeviceType, newVal(FeatDeviceType))
		// A place the user has been learned at (a known /24) is not
		// impossible to reach: it is where their mobile carrier's
		// gateway or their VPN geolocates, far from their other places.
		if st.LocValid && located(&in.IP) && !knownSubnet {
			d := haversineKm(float64(st.Lat), float64(st.Lon), in.IP.Lat, in.IP.Lon)
			if d >= cfg.TravelMinKm {
				hours := 0.0
				if now > st.LocAt {
					hours = float64(now-st.LocAt) / 3600
				}
				sig.set(sImpossibleTravel, hours == 0 || d/hours > cfg.TravelSpeedKmh)
			}
		}
	}

	// --- device and headers ---
	rawUA, hasUA := header(ev, "user-agent")
	scrubbed := rawUA == "true"
	if scrubbed {
		rawUA = ""
	}
	if rawUA == "" {
		rawUA = ua.Raw
	}
	crawler := in.Bot || ua.BrowserType == "bot" || ua.DeviceType == "bot"
	sig.set(sWebCrawler, crawler)
	sec, _ := header(ev, "sec-ch-ua")
	headless := containsAnyFold(rawUA, headlessTokens) || strings.Contains(sec, "HeadlessChrome")
	sig.set(sHeadlessBrowser, headless)
	library := ua.BrowserType == "library"
	sig.set(sHTTPClientLibrary, library)
	missingHeaders := !hasUA && !scrubbed
	if !missingHeaders && (ua.BrowserType == "browser") && !crawler {
		_, al := header(ev, "accept-language")
		_, ac := header(ev, "accept")
		missingHeaders = !al || !ac
	}
	sig.set(sMissingHeaders, missingHeaders)
	clientID := ev.Context.ClientID
	if clientID == "" {
		if c, ok := header(ev, "x-castle-client-id"); ok && c != "true" {
			clientID = c
		}
	}
	sig.set(sMissingDeviceData, rawUA == "" && !scrubbed && clientID == "" && ev.Context.RequestToken == "")
	sig.set(sInvalidDeviceData, rawUA != "" && garbageUA(rawUA, ua))
	sig.set(sSpoofedDevice, spoofed(ev, ua))

	// --- network ---
	sig.set(sProxyIP, in.IP.Proxy)
	sig.set(sDatacenterIP, in.IP.Datacenter)
	sig.set(sTor, in.IP.Tor)

	// --- email ---
	// A zero EmailInfo means no email enrichment ran: no email signals
	// (so an unenriched event is never flagged invalid_email). Otherwise the
	// mailbox is Normalized, or the address as given when it has none
	// (an invalid address).
	email := ""
	if in.Email != (EmailInfo{}) {
		email = in.Email.Normalized
		if email == "" {
			email = in.Email.Address
		}
		if email == "" {
			email = ev.User.Email
		}
		email = strings.ToLower(strings.TrimSpace(email))
	}
	var alias aliasEntry
	if email != "" {
		sig.set(sInvalidEmail, !in.Email.Valid)
		sig.set(sDisposableEmailDomain, in.Email.Disposable)
		sig.set(sGeneratedEmail, in.Email.Generated)
		alias = aliasEntry{Email: fnv32(email), Alias: fnv32Alias(in.Email.Alias)}
		sig.set(sMultipleAliasesPerEmail, st.otherAlias(alias))
		st.observeAlias(alias)
	}

	// --- cross-user state ---
	// The event's observations of its IP, device and mailbox: counted
	// against the Shared state when there is one, and returned for the
	// scorer to publish.
	var uh uint32
	if ev.User.ID != "" {
		uh = fnv32(ev.User.ID)
	}
	var obs [3]schemas.Observation
	nobs := 0
	if ip := ev.Context.IP; ip != "" {
		if in.IPKey != "" {
			ip = in.IPKey
		}
		obs[nobs] = schemas.Observation{AppID: ev.AppID, Kind: schemas.ObserveIP, Key: ip, At: now, User: uh, Failed: failed}
		nobs++
	}
	if fp := in.Device.Fingerprint; fp != "" && in.DeviceIdentified {
		obs[nobs] = schemas.Observation{AppID: ev.AppID, Kind: schemas.ObserveDevice, Key: fp, At: now, User: uh}
		nobs++
	}
	if email != "" {
		key := email
		if in.EmailKey != "" {
			key = in.EmailKey
		}
		obs[nobs] = schemas.Observation{AppID: ev.AppID, Kind: schemas.ObserveEmail, Key: key, At: now, User: uh, Alias: fnv32Alias(in.Email.Alias)}
		nobs++
	}
	var a Assessment
	if nobs > 0 {
		a.Observations = append(make([]schemas.Observation, 0, nobs), obs[:nobs]...)
	}
	if in.Shared != nil {
		ss := in.Shared.Observe(a.Observations, cfg.SharedUserTTL)
		a.Shared = ss
		sig.set(sHighActivityIP, ss.IPEvents > cfg.IPEvents1h)
		sig.set(sHighActivityDevice, ss.DeviceEvents > cfg.DeviceEvents1h)
		sig.set(sMultipleAccountsPerDevice, ss.DeviceUsers >= cfg.AccountsPerDevice)
		if ss.IPFailUsers >= cfg.IPFailUsers1h {
			sig.set(sCredentialStuffing, true)
		}
		if ss.EmailAliases >= 2 {
			sig.set(sMultipleAliasesPerEmail, true)
		}
	}

	sig.set(sBotBehavior, headless || library || v5 > cfg.BotVel5m ||
		missingHeaders && (in.IP.Datacenter || in.IP.Tor) ||
		sig.has(sSpoofedDevice) && in.IP.Datacenter)

	// --- scores ---
	// Contributions are gathered per score (groups in score-name order:
	// account_abuse, account_takeover, bot), each sorted after its base.
	var gbuf [3][2 + int(numFeatures) + numSignals]Contribution
	var gn [3]int
	add := func(g int, c Contribution) { gbuf[g][gn[g]] = c; gn[g]++ }
	const gAbuse, gATO, gBot = 0, 1, 2
	ato, abuse, bot := cfg.BaseTakeover, cfg.BaseAbuse, cfg.BaseBot
	add(gAbuse, Contribution{Score: ScoreAccountAbuse, Name: "base", Kind: "base", Value: round6(abuse)})
	add(gATO, Contribution{Score: ScoreAccountTakeover, Name: "base", Kind: "base", Value: round6(ato)})
	add(gBot, Contribution{Score: ScoreBot, Name: "base", Kind: "base", Value: round6(bot)})

	// Freeman et al.: sum over features of log P(x|attacker)/P(x|user),
	// with the device as a feature too. The browser, OS, device type and
	// language make up the device's fingerprint, so for a device the user
	// is known to use they add no evidence of their own: its likelihood
	// ratio replaces theirs (a backoff, as for hierarchical features).
	if st.Learned > 0 {
		fpH := uint64(0)
		if fp := in.Device.Fingerprint; fp != "" {
			fpH = fnv64(fp)
		}
		knownDevice := fpH != 0 && st.findDevice(fpH) >= 0
		e.mu.Lock()
		for f := Feature(0); f < numFeatures; f++ {
			h := fv[f]
			t := &st.Features[f]
			if h == 0 || t.N == 0 || cfg.FeatureWeights[f] == 0 || knownDevice && deviceFeature(f) {
				continue
			}
			c := 0.0
			if i := t.find(h); i >= 0 {
				c = float64(t.E[i].Count)
			}
			v := cfg.FeatureWeights[f] * e.logRatio(e.popFreq(f, h), c, float64(t.total()), st.Novel[f])
			ato += v
			add(gATO, Contribution{Score: ScoreAccountTakeover, Name: featureNames[f], Kind: "feature", Value: round6(v)})
		}
		e.mu.Unlock()
		if fpH != 0 && st.NDevices > 0 && cfg.DeviceWeight != 0 {
			c := 0.0
			if i := st.findDevice(fpH); i >= 0 {
				c = float64(st.Devices[i].Count)
			}
			v := cfg.DeviceWeight * e.logRatio(1/cfg.DeviceVocabulary, c, float64(st.deviceTotal()), st.NovelDevices)
			ato += v
			add(gATO, Contribution{Score: ScoreAccountTakeover, Name: "device", Kind: "feature", Value: round6(v)})
		}
	}

	a.Signals = make([]string, 0, bits.OnesCount32(uint32(sig)))
	for i := 0; i < numSignals; i++ {
		if !sig.has(i) {
			continue
		}
		a.Signals = append(a.Signals, signalNames[i])
		if knownSubnet && e.familiarNet.has(i) {
			// a fact about a network the user has been learned at:
			// their own history explains it, and the ip_subnet
			// feature weighs how familiar it is
			continue
		}
		w := e.w[i]
		if w.AccountTakeover != 0 {
			ato += w.AccountTakeover
			add(gATO, Contribution{Score: ScoreAccountTakeover, Name: signalNames[i], Kind: "signal", Value: round6(w.AccountTakeover)})
		}
		if w.AccountAbuse != 0 {
			abuse += w.AccountAbuse
			add(gAbuse, Contribution{Score: ScoreAccountAbuse, Name: signalNames[i], Kind: "signal", Value: round6(w.AccountAbuse)})
		}
		if w.Bot != 0 {
			bot += w.Bot
			add(gBot, Contribution{Score: ScoreBot, Name: signalNames[i], Kind: "signal", Value: round6(w.Bot)})
		}
	}
	pATO, pAbuse, pBot := logistic(ato), logistic(abuse), logistic(bot)
	a.Scores = Scores{AccountTakeover: round6(pATO), AccountAbuse: round6(pAbuse), Bot: round6(pBot)}
	switch {
	case in.Reported:
		a.Feedback = "reported"
		a.Scores.AccountTakeover = 1
		add(gATO, Contribution{Score: ScoreAccountTakeover, Name: "reported_device", Kind: "feedback", Value: 1})
		a.Risk = 1
	case in.Trusted:
		a.Feedback = "trusted"
		a.Scores.AccountTakeover = 0
		add(gATO, Contribution{Score: ScoreAccountTakeover, Name: "trusted_device", Kind: "feedback", Value: 0})
		a.Risk = 0
	default:
		// The probability that at least one of the three threats is
		// present, taking them as independent (a noisy-OR). Unlike their
		// maximum, it keeps the order of the takeover score below the
		// other scores' bases, so a policy can challenge any share of
		// logins by risk.
		a.Risk = round6(1 - (1-pATO)*(1-pAbuse)*(1-pBot))
	}
	a.Contributions = make([]Contribution, 0, gn[0]+gn[1]+gn[2])
	for g := range gbuf {
		sortContributions(gbuf[g][1:gn[g]])
		a.Contributions = append(a.Contributions, gbuf[g][:gn[g]]...)
	}
	if len(in.Lists) > 0 {
		a.Lists = append([]string(nil), in.Lists...)
		sort.Strings(a.Lists)
	}

	// --- policy ---
	p := in.Policy
	if p == nil {
		p = cfg.Policy
	}
	a.Policy = p.Evaluate(a, ev)

	// --- learn ---
	act := a.Policy.Action
	a.Learned = ev.Status == "$succeeded" && !in.Reported && act != ActionDeny &&
		(act == ActionAllow || in.Trusted || ev.Type == "$challenge")
	if a.Learned {
		e.learn(st, &in, &fv, now)
	}
	return a
}

func (e *Engine) learn(st *UserState, in *Input, fv *[numFeatures]uint32, now uint32) {
	if st.Learned < math.MaxUint32 {
		st.Learned++
	}
	if st.First == 0 || now < st.First {
		st.First = now
	}
	if now > st.Last {
		st.Last = now
	}
	for f := Feature(0); f < numFeatures; f++ {
		if fv[f] != 0 {
			if st.Features[f].find(fv[f]) < 0 && st.Novel[f] < math.MaxUint16 {
				st.Novel[f]++
			}
			st.Features[f].observe(fv[f], now, featureCaps[f])
		}
	}
	if fp := in.Device.Fingerprint; fp != "" {
		h := fnv64(fp)
		if st.findDevice(h) < 0 && st.NovelDevices < math.MaxUint16 {
			st.NovelDevices++
		}
		st.observeDevice(h, now)
	}
	if located(&in.IP) && now >= st.LocAt {
		st.LocValid = true
		st.Lat, st.Lon, st.LocAt = float32(in.IP.Lat), float32(in.IP.Lon), now
	}
	e.learnPop(fv)
}

// deviceFeature reports the features that are part of the device
// fingerprint.
func deviceFeature(f Feature) bool {
	return f == FeatBrowser || f == FeatOS || f == FeatDeviceType || f == FeatLanguage
}

// logRatio is the clamped log likelihood ratio log P(x|attacker) /
// P(x|user) of a value with attacker (population) probability p, seen c
// times among the user's n. The user's distribution is smoothed against
// the population with strength α, the user's own count of new values
// (Witten-Bell: a user who often shows new values is less surprising when
// they show one more), at least PriorStrength:
//
//	P(x|user) = (c + α·p) / (n + α)
//
// so a value the user never used has the ratio (n + α) / α.
func (e *Engine) logRatio(p, c, n float64, novel uint16) float64 {
	a := math.Max(e.cfg.PriorStrength, float64(novel))
	lr := math.Log(p * (n + a) / (c + a*p))
	return math.Max(e.cfg.MinLogRatio, math.Min(e.cfg.MaxLogRatio, lr))
}

// sortContributions orders one score's contributions (base excluded) by
// decreasing |value|, then name, then kind.
func sortContributions(c []Contribution) {
	// insertion sort: a few elements, no allocation
	for i := 1; i < len(c); i++ {
		for j := i; j > 0 && contribLess(&c[j], &c[j-1]); j-- {
			c[j], c[j-1] = c[j-1], c[j]
		}
	}
}

func contribLess(a, b *Contribution) bool {
	if aa, ba := math.Abs(a.Value), math.Abs(b.Value); aa != ba {
		return aa > ba
	}
	if a.Name != b.Name {
		return a.Name < b.Name
	}
	return a.Kind < b.Kind
}
