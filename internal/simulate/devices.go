package simulate

import (
	"fmt"
	"math/rand/v2"
	"strings"
)

// devKind is the kind of hardware.
type devKind uint8

const (
	kindDesktop devKind = iota
	kindMobile
	kindTablet
)

// uaFamily is one browser on one OS, with a user-agent template whose
// version moves with time the way browsers update themselves.
type uaFamily struct {
	name            string // e.g. "chrome-windows"
	kind            devKind
	browser, os     string // families, for the targeted attacker
	weight          float64
	tmpl            string // %[1]d: version, %[2]s: device model
	base, everyDays int    // version at the start, days per version
	brand           string // client-hint brand ("": not Chromium, no hints)
	platform        string // sec-ch-ua-platform
	models          []string
	mobileHint      bool
}

// families are the browsers legitimate users and attackers use, with
// weights in the order of desktop, mobile and tablet browser market shares
// (StatCounter-like proportions; the exact numbers do not matter, only
// that a few families dominate). Chrome on Android sends the reduced user
// agent ("Android 10; K") that carries no device model.
var families = []*uaFamily{
	{name: "chrome-windows", kind: kindDesktop, browser: "Chrome", os: "Windows", weight: 40, base: 124, everyDays: 28, brand: "Google Chrome", platform: "Windows",
		tmpl: "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/%[1]d.0.0.0 Safari/537.36"},
	{name: "edge-windows", kind: kindDesktop, browser: "Edge", os: "Windows", weight: 12, base: 124, everyDays: 28, brand: "Microsoft Edge", platform: "Windows",
		tmpl: "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/%[1]d.0.0.0 Safari/537.36 Edg/%[1]d.0.0.0"},
	{name: "firefox-windows", kind: kindDesktop, browser: "Firefox", os: "Windows", weight: 7, base: 125, everyDays: 28,
		tmpl: "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:%[1]d.0) Gecko/20100101 Firefox/%[1]d.0"},
	{name: "safari-macos", kind: kindDesktop, browser: "Safari", os: "macOS", weight: 11, base: 4, everyDays: 60,
		tmpl: "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.%[1]d Safari/605.1.15"},
	{name: "chrome-macos", kind: kindDesktop, browser: "Chrome", os: "macOS", weight: 14, base: 124, everyDays: 28, brand: "Google Chrome", platform: "macOS",
		tmpl: "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/%[1]d.0.0.0 Safari/537.36"},
	{name: "firefox-macos", kind: kindDesktop, browser: "Firefox", os: "macOS", weight: 3, base: 125, everyDays: 28,
		tmpl: "Mozilla/5.0 (Macintosh; Intel Mac OS X 10.15; rv:%[1]d.0) Gecko/20100101 Firefox/%[1]d.0"},
	{name: "chrome-linux", kind: kindDesktop, browser: "Chrome", os: "Linux", weight: 3, base: 124, everyDays: 28, brand: "Google Chrome", platform: "Linux",
		tmpl: "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/%[1]d.0.0.0 Safari/537.36"},
	{name: "firefox-linux", kind: kindDesktop, browser: "Firefox", os: "Linux", weight: 2, base: 125, everyDays: 28,
		tmpl: "Mozilla/5.0 (X11; Linux x86_64; rv:%[1]d.0) Gecko/20100101 Firefox/%[1]d.0"},
	{name: "chrome-chromeos", kind: kindDesktop, browser: "Chrome", os: "ChromeOS", weight: 2, base: 124, everyDays: 28, brand: "Google Chrome", platform: "Chrome OS",
		tmpl: "Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/%[1]d.0.0.0 Safari/537.36"},

	{name: "safari-iphone", kind: kindMobile, browser: "Safari", os: "iOS", weight: 45, base: 4, everyDays: 60,
		tmpl: "Mozilla/5.0 (iPhone; CPU iPhone OS 17_%[1]d like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.%[1]d Mobile/15E148 Safari/604.1"},
	{name: "chrome-iphone", kind: kindMobile, browser: "Chrome", os: "iOS", weight: 5, base: 124, everyDays: 28,
		tmpl: "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/%[1]d.0.6367.88 Mobile/15E148 Safari/604.1"},
	{name: "chrome-android", kind: kindMobile, browser: "Chrome", os: "Android", weight: 38, base: 124, everyDays: 28, brand: "Google Chrome", platform: "Android", mobileHint: true,
		tmpl: "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/%[1]d.0.0.0 Mobile Safari/537.36"},
	{name: "samsung-android", kind: kindMobile, browser: "Samsung Internet", os: "Android", weight: 12, base: 25, everyDays: 90, brand: "Samsung Internet", platform: "Android", mobileHint: true,
		models: []string{"SM-S918B", "SM-A546B", "SM-G991B", "SM-A156B", "SM-S921B", "SM-A256B", "SM-A346B", "SM-S911B"},
		tmpl:   "Mozilla/5.0 (Linux; Android 14; SAMSUNG %[2]s) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/%[1]d.0 Chrome/121.0.0.0 Mobile Safari/537.36"},

	{name: "safari-ipad", kind: kindTablet, browser: "Safari", os: "iOS", weight: 60, base: 4, everyDays: 60,
		tmpl: "Mozilla/5.0 (iPad; CPU OS 17_%[1]d like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.%[1]d Mobile/15E148 Safari/604.1"},
	{name: "chrome-android-tablet", kind: kindTablet, browser: "Chrome", os: "Android", weight: 40, base: 124, everyDays: 28, brand: "Google Chrome", platform: "Android",
		tmpl: "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/%[1]d.0.0.0 Safari/537.36"},
}

// pickFamily draws a family of kind k by weight.
func pickFamily(rng *rand.Rand, k devKind) *uaFamily {
	var total float64
	for _, f := range families {
		if f.kind == k {
			total += f.weight
		}
	}
	x := rng.Float64() * total
	var last *uaFamily
	for _, f := range families {
		if f.kind != k {
			continue
		}
		last = f
		if x -= f.weight; x < 0 {
			return f
		}
	}
	return last
}

// device is one browser on one piece of hardware.
type device struct {
	fam   *uaFamily
	model string
	lag   int // versions behind the current one (users who update late)
	// cid is the Castle client id cookie (empty when the app sends none).
	cid    string
	weight float64 // share of the user's sessions
}

func newDevice(rng *rand.Rand, f *uaFamily) *device {
	d := &device{fam: f, weight: 1}
	if len(f.models) > 0 {
		d.model = f.models[rng.IntN(len(f.models))]
	}
	if rng.IntN(4) == 0 {
		d.lag = 1
	}
	return d
}

// ua renders the device's user agent on day day of the simulation.
func (d *device) ua(day int) string {
	v := d.fam.base + day/d.fam.everyDays - d.lag
	if strings.Contains(d.fam.tmpl, "%[2]s") {
		return fmt.Sprintf(d.fam.tmpl, v, d.model)
	}
	return fmt.Sprintf(d.fam.tmpl, v)
}

// hints returns the Chromium client hints of the device ("" brand: none).
func (d *device) hints(day int) (ua, mobile, platform string) {
	if d.fam.brand == "" {
		return "", "", ""
	}
	v := d.fam.base + day/d.fam.everyDays - d.lag
	ua = fmt.Sprintf(`"Chromium";v="%d", "%s";v="%d", "Not-A.Brand";v="99"`, 124+day/28-d.lag, d.fam.brand, v)
	mobile = "?0"
	if d.fam.mobileHint {
		mobile = "?1"
	}
	return ua, mobile, `"` + d.fam.platform + `"`
}

// Automation user agents of the bot attacker.
var (
	headlessTmpl = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/%d.0.0.0 Safari/537.36"
	libraryUAs   = []string{"python-requests/2.31.0", "curl/8.5.0", "Go-http-client/1.1", "okhttp/4.12.0", "python-requests/2.32.3"}
)
