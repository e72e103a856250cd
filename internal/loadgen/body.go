package loadgen

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strconv"
	"time"
)

// Property names the generator puts first in every body's properties object.
// They are read back from ClickHouse with visitParamExtract*, which needs
// compact JSON ("name":value with no space), as the generator writes it.
const (
	PropRun    = "lg_run"
	PropSeq    = "lg_seq"
	PropSentMs = "lg_sent_ms"
)

// Paths the body generator knows.
const (
	PathTrack    = "/v1/track"
	PathLog      = "/v1/log"
	PathIdentify = "/v1/identify"
	PathRisk     = "/v1/risk"
	PathFilter   = "/v1/filter"
	// PathDevices stands for GET /v1/users/{id}/devices of a simulated
	// user; it is a read, not an event (no body, not looked for in
	// ClickHouse).
	PathDevices = "/v1/users/{id}/devices"
)

// isRead reports a path that is a GET without an event behind it.
func isRead(path string) bool { return path == PathDevices }

// userAgents are real browser, app and SDK user agents of the kind Castle
// sees in context.headers.
var userAgents = []string{
	"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
	"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36 Edg/126.0.0.0",
	"Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:127.0) Gecko/20100101 Firefox/127.0",
	"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
	"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/125.0.0.0 Safari/537.36",
	"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/123.0.0.0 Safari/537.36",
	"Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:126.0) Gecko/20100101 Firefox/126.0",
	"Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
	"Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.6 Mobile/15E148 Safari/604.1",
	"Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/125.0.6422.113 Mobile Safari/537.36",
	"Mozilla/5.0 (Linux; Android 13; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/24.0 Chrome/117.0.0.0 Mobile Safari/537.36",
	"Mozilla/5.0 (Linux; Android 12; M2101K6G) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.6099.230 Mobile Safari/537.36",
	"MyBank/5.12.1 (iPhone; iOS 17.4.1; Scale/3.00)",
	"MyBank/5.11.0 (Android 14; Pixel 7 Pro; okhttp/4.12.0)",
	"Dalvik/2.1.0 (Linux; U; Android 11; Redmi Note 8 Pro Build/RP1A.200720.011)",
	"okhttp/4.12.0",
	"python-requests/2.31.0",
	"curl/8.5.0",
}

var languages = []string{
	"en-US,en;q=0.9", "en-GB,en;q=0.8", "de-DE,de;q=0.9,en;q=0.8", "fr-FR,fr;q=0.9",
	"es-ES,es;q=0.9", "pt-BR,pt;q=0.9,en;q=0.7", "ja-JP,ja;q=0.9", "pl-PL,pl;q=0.9,en;q=0.5",
}

// libraries are the SDKs whose body shape is imitated: modern ones send
// type/status/user, legacy ones event/user_id/user_traits.
var libraries = []struct {
	name, version string
	legacy        bool
}{
	{"castle-go", "2.2.0", false},
	{"castle-node", "2.3.1", false},
	{"castle-python", "6.1.0", false},
	{"castle-java", "2.4.1", false},
	{"castle-rb", "7.2.0", false},
	{"castle-php", "4.1.0", false},
	{"castle-rb", "4.3.0", true},
	{"castle-php", "2.0.1", true},
}

var (
	customNames  = []string{"Added to cart", "Viewed pricing", "Changed plan", "Exported report", "Invited teammate"}
	pages        = []string{"/login", "/account", "/checkout", "/settings/security", "/dashboard", "/signup"}
	plans        = []string{"free", "starter", "pro", "enterprise"}
	methods      = []string{"password", "sso", "magic_link", "passkey"}
	failReasons  = []string{"wrong_password", "unknown_user", "locked", "mfa_failed"}
	challengeSts = []string{"$requested", "$succeeded", "$failed"}
)

// event is one (type, status, name) choice; weights are relative.
type event struct {
	typ, status, name string
	weight            int
}

var trackEvents = []event{
	{"$login", "$succeeded", "", 40},
	{"$logout", "$succeeded", "", 15},
	{"$custom", "", "", 20}, // name picked from customNames
	{"$profile_update", "$succeeded", "", 8},
	{"$password_reset_request", "$succeeded", "", 5},
	{"$registration", "$succeeded", "", 7},
	{"$transaction", "$succeeded", "", 5},
}

// riskEvents are the calls an app makes to /v1/risk after a login or
// registration: the outcome is known.
var riskEvents = []event{
	{"$login", "$succeeded", "", 70},
	{"$login", "$failed", "", 15},
	{"$registration", "$succeeded", "", 10},
	{"$password_reset_request", "$succeeded", "", 5},
}

// filterEvents are the calls to /v1/filter before the outcome is known.
var filterEvents = []event{
	{"$login", "$attempted", "", 60},
	{"$registration", "$attempted", "", 30},
	{"$password_reset_request", "$attempted", "", 10},
}

var logEvents = []event{
	{"$login", "$failed", "", 55},
	{"$registration", "$failed", "", 10},
	{"$password_reset_request", "$failed", "", 10},
	{"$challenge", "", "", 15}, // status picked from challengeSts
	{"$custom", "", "", 10},
}

// device is one browser or app of a user.
type device struct {
	ua, lang, clientID, token, ip string
	lib                           int
	host                          string
}

// user is one simulated end user.
type user struct {
	id, email, name, registered string
	plan                        string
	devices                     []device
}

// bodyGen writes Castle API bodies. It is read-only after newBodyGen and safe
// for concurrent use; randomness comes from the caller's *rand.Rand.
type bodyGen struct {
	run    string
	users  []user
	track  []event
	log    []event
	risk   []event
	filter []event
	// trackSum, logSum, riskSum and filterSum are the weight totals.
	trackSum, logSum, riskSum, filterSum int
}

// newBodyGen builds n users (at least 1) deterministically from seed.
func newBodyGen(run string, n int, seed uint64) *bodyGen {
	if n < 1 {
		n = 1
	}
	r := rand.New(rand.NewPCG(seed, 0x6d6f6174))
	g := &bodyGen{run: run, users: make([]user, n), track: trackEvents, log: logEvents, risk: riskEvents, filter: filterEvents}
	for _, e := range trackEvents {
		g.trackSum += e.weight
	}
	for _, e := range logEvents {
		g.logSum += e.weight
	}
	for _, e := range riskEvents {
		g.riskSum += e.weight
	}
	for _, e := range filterEvents {
		g.filterSum += e.weight
	}
	hosts := []string{"app.example.com", "www.example.com", "api.example.com"}
	for i := range g.users {
		u := &g.users[i]
		u.id = fmt.Sprintf("lg-u-%07d", i)
		u.email = fmt.Sprintf("user%d@example%d.com", i, i%7)
		u.name = fmt.Sprintf("Load User %d", i)
		u.registered = time.Date(2019+r.IntN(6), time.Month(1+r.IntN(12)), 1+r.IntN(28), r.IntN(24), r.IntN(60), r.IntN(60), 0, time.UTC).Format("2006-01-02T15:04:05.000Z")
		u.plan = plans[r.IntN(len(plans))]
		nd := 1 + r.IntN(3)
		u.devices = make([]device, nd)
		home := randIP(r)
		for j := range u.devices {
			d := &u.devices[j]
			d.ua = userAgents[r.IntN(len(userAgents))]
			d.lang = languages[r.IntN(len(languages))]
			d.clientID = randUUID(r)
			d.token = randToken(r, 96)
			d.lib = r.IntN(len(libraries))
			d.host = hosts[r.IntN(len(hosts))]
			if j == 0 || r.IntN(3) > 0 {
				d.ip = home
			} else {
				d.ip = randIP(r)
			}
		}
	}
	return g
}

// randIP returns a random public-looking IPv4 address or, one time in eight,
// an IPv6 one. It is only data inside bodies; nothing is sent to it.
func randIP(r *rand.Rand) string {
	if r.IntN(8) == 0 {
		var b [16]byte
		b[0], b[1] = 0x2a, byte(r.IntN(16))
		for i := 2; i < 16; i++ {
			b[i] = byte(r.Uint32())
		}
		return netip.AddrFrom16(b).String()
	}
	for {
		a := byte(1 + r.IntN(222))
		switch a {
		case 10, 100, 127, 169, 172, 192:
			continue // keep clear of private and special ranges
		}
		return netip.AddrFrom4([4]byte{a, byte(r.Uint32()), byte(r.Uint32()), byte(1 + r.IntN(254))}).String()
	}
}

func randUUID(r *rand.Rand) string {
	var b [16]byte
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

const tokenAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

// randToken imitates a Castle.js request token (URL-safe base64).
func randToken(r *rand.Rand, n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = tokenAlphabet[r.IntN(len(tokenAlphabet))]
	}
	return string(b)
}

func pick(evs []event, sum int, r *rand.Rand) event {
	x := r.IntN(sum)
	for _, e := range evs {
		if x < e.weight {
			return e
		}
		x -= e.weight
	}
	return evs[len(evs)-1]
}

// appendDevicesPath appends the path of GET /v1/users/{id}/devices of a
// random simulated user to dst.
func (g *bodyGen) appendDevicesPath(dst []byte, r *rand.Rand) []byte {
	u := &g.users[r.IntN(len(g.users))]
	dst = append(dst, "/v1/users/"...)
	dst = append(dst, u.id...) // lg-u-NNNNNNN: no escaping needed
	return append(dst, "/devices"...)
}

// appendBody appends the body of one call to path for sequence number seq,
// sent at now, to dst. Every string written is either generated here from a
// safe alphabet or JSON-escaped (appendStr), so the result is valid JSON.
func (g *bodyGen) appendBody(dst []byte, path string, seq uint64, now time.Time, r *rand.Rand) []byte {
	u := &g.users[r.IntN(len(g.users))]
	d := &u.devices[r.IntN(len(u.devices))]
	lib := libraries[d.lib]
	nowMs := now.UnixMilli()
	// risk and filter only exist in the modern SDKs: always type/status/
	// user, a request token and a context.
	scored := path == PathRisk || path == PathFilter
	legacy := lib.legacy && !scored

	var ev event
	switch path {
	case PathLog:
		ev = pick(g.log, g.logSum, r)
		if ev.typ == "$challenge" {
			ev.status = challengeSts[r.IntN(len(challengeSts))]
		}
	case PathRisk:
		ev = pick(g.risk, g.riskSum, r)
	case PathFilter:
		ev = pick(g.filter, g.filterSum, r)
	case PathIdentify:
	default:
		ev = pick(g.track, g.trackSum, r)
	}
	if ev.typ == "$custom" {
		ev.name = customNames[r.IntN(len(customNames))]
	}

	dst = append(dst, '{')
	switch {
	case path == PathIdentify:
		// identify: always the legacy shape (user_id + user_traits).
		dst = append(dst, `"user_id":`...)
		dst = appendStr(dst, u.id)
		dst = append(dst, `,"user_traits":{"email":`...)
		dst = appendStr(dst, u.email)
		dst = append(dst, `,"name":`...)
		dst = appendStr(dst, u.name)
		dst = append(dst, `,"registered_at":`...)
		dst = appendStr(dst, u.registered)
		dst = append(dst, `,"plan":`...)
		dst = appendStr(dst, u.plan)
		dst = append(dst, '}')
	case legacy:
		dst = append(dst, `"event":`...)
		switch {
		case ev.typ == "$custom":
			dst = appendStr(dst, ev.name) // legacy custom events are bare names
		case ev.status != "":
			dst = appendStr(dst, ev.typ+"."+ev.status[1:])
		default:
			dst = appendStr(dst, ev.typ)
		}
		if !(path == PathLog && ev.typ == "$login" && r.IntN(2) == 0) { // failed logins of unknown users
			dst = append(dst, `,"user_id":`...)
			dst = appendStr(dst, u.id)
		}
		dst = append(dst, `,"user_traits":{"email":`...)
		dst = appendStr(dst, u.email)
		dst = append(dst, `,"name":`...)
		dst = appendStr(dst, u.name)
		dst = append(dst, '}')
	default:
		dst = append(dst, `"type":`...)
		dst = appendStr(dst, ev.typ)
		if ev.status != "" {
			dst = append(dst, `,"status":`...)
			dst = appendStr(dst, ev.status)
		}
		if ev.name != "" {
			dst = append(dst, `,"name":`...)
			dst = appendStr(dst, ev.name)
		}
		dst = append(dst, `,"request_token":`...)
		dst = appendStr(dst, d.token)
		dst = append(dst, `,"user":{`...)
		if !(path == PathLog && ev.typ == "$login" && r.IntN(2) == 0) {
			dst = append(dst, `"id":`...)
			dst = appendStr(dst, u.id)
			dst = append(dst, ',')
		}
		dst = append(dst, `"email":`...)
		dst = appendStr(dst, u.email)
		dst = append(dst, `,"name":`...)
		dst = appendStr(dst, u.name)
		dst = append(dst, `,"registered_at":`...)
		dst = appendStr(dst, u.registered)
		dst = append(dst, `,"traits":{"plan":`...)
		dst = appendStr(dst, u.plan)
		dst = append(dst, `}}`...)
	}

	// properties: the run markers first, then what an app would send.
	dst = append(dst, `,"properties":{"`+PropRun+`":`...)
	dst = appendStr(dst, g.run)
	dst = append(dst, `,"`+PropSeq+`":`...)
	dst = strconv.AppendUint(dst, seq, 10)
	dst = append(dst, `,"`+PropSentMs+`":`...)
	dst = strconv.AppendInt(dst, nowMs, 10)
	dst = append(dst, `,"page":`...)
	dst = appendStr(dst, pages[r.IntN(len(pages))])
	switch ev.typ {
	case "$login", "$registration":
		dst = append(dst, `,"authentication_method":`...)
		dst = appendStr(dst, methods[r.IntN(len(methods))])
		if ev.status == "$failed" {
			dst = append(dst, `,"reason":`...)
			dst = appendStr(dst, failReasons[r.IntN(len(failReasons))])
		}
	case "$transaction", "$custom":
		dst = append(dst, `,"amount":`...)
		dst = strconv.AppendInt(dst, int64(1+r.IntN(50000)), 10)
		dst = append(dst, `,"currency":"EUR","items":`...)
		dst = strconv.AppendInt(dst, int64(1+r.IntN(5)), 10)
	}
	dst = append(dst, '}')

	// context, as the server-side SDKs build it from the end user's request.
	dst = append(dst, `,"context":{"ip":`...)
	dst = appendStr(dst, d.ip)
	if legacy || r.IntN(4) == 0 {
		dst = append(dst, `,"client_id":`...)
		dst = appendStr(dst, d.clientID)
	}
	dst = append(dst, `,"headers":{"User-Agent":`...)
	dst = appendStr(dst, d.ua)
	dst = append(dst, `,"Accept":"text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8","Accept-Language":`...)
	dst = appendStr(dst, d.lang)
	dst = append(dst, `,"Accept-Encoding":"gzip, deflate, br","Connection":"keep-alive","Host":`...)
	dst = appendStr(dst, d.host)
	dst = append(dst, `,"Referer":"https://`...)
	dst = append(dst, d.host...)
	dst = append(dst, pages[r.IntN(len(pages))]...)
	dst = append(dst, `","Cookie":"true","X-Castle-Client-Id":`...)
	dst = appendStr(dst, d.clientID)
	dst = append(dst, `},"library":{"name":`...)
	dst = appendStr(dst, lib.name)
	dst = append(dst, `,"version":`...)
	dst = appendStr(dst, lib.version)
	dst = append(dst, '}')
	if legacy {
		dst = append(dst, `,"active":true,"user_agent":`...)
		dst = appendStr(dst, d.ua)
	}
	dst = append(dst, '}')

	ts := now.UTC()
	if legacy {
		dst = append(dst, `,"timestamp":"`...)
	} else {
		dst = append(dst, `,"created_at":"`...)
	}
	n := len(dst)
	dst = ts.AppendFormat(dst, "2006-01-02T15:04:05.000Z")
	iso := dst[n:]
	dst = append(dst, `","sent_at":"`...)
	dst = append(dst, iso...)
	dst = append(dst, `"}`...)
	return dst
}

// appendStr appends s as a JSON string. The generator's strings need no
// escaping, but anything unusual goes through encoding/json to stay valid.
func appendStr(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if !plainJSON[s[i]] {
			b, _ := json.Marshal(s)
			return append(dst, b...)
		}
	}
	dst = append(dst, '"')
	dst = append(dst, s...)
	return append(dst, '"')
}

// plainJSON marks the bytes that encoding/json writes unescaped.
var plainJSON = func() (t [256]bool) {
	for c := 0x20; c < 0x7f; c++ {
		t[c] = true
	}
	for _, c := range `"\<>&` {
		t[c] = false
	}
	return t
}()
