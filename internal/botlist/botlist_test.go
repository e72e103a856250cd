package botlist

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// Real desktop and mobile browser UAs (from npm top-user-agents and common
// devices); none may be flagged.
var browserUAs = []string{
	"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
	"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36 Edg/124.0.2478.67",
	"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4.1 Safari/605.1.15",
	"Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
	"Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0",
	"Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
	"Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.6 Mobile/15E148 Safari/604.1",
	"Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.6367.82 Mobile Safari/537.36",
	"Mozilla/5.0 (Linux; Android 13; SM-X710) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/24.0 Chrome/117.0.0.0 Safari/537.36",
	"Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36",
	"Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
	"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 OPR/115.0.0.0",
	"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
	"Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/131.0.6778.73 Mobile/15E148 Safari/604.1",
	"Mozilla/5.0 (Linux; Android 14; Pixel 8 Pro) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36",
	"Mozilla/5.0 (Windows NT 6.1; Trident/7.0; rv:11.0) like Gecko",
	"Mozilla/5.0 (Android 14; Mobile; rv:133.0) Gecko/133.0 Firefox/133.0",
	"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 YaBrowser/24.12.0.0 Safari/537.36",
	"Mozilla/5.0 (Linux; U; Android 12; zh-CN; V2145A) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/78.0.3904.108 UCBrowser/13.4.0.1306 Mobile Safari/537.36",
	"Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 Instagram 334.0.4.32.98 (iPhone14,5; iOS 17_5; en_US; en; scale=3.00; 1170x2532; 608145126)",
	"",
}

func TestBuiltin(t *testing.T) {
	l := Builtin()
	hits := map[string]string{
		"Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)":                                                      "Googlebot",
		"Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)":                                                       "bingbot",
		"Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.2; +https://openai.com/gptbot)":                        "GPTBot",
		"facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)":                                                     "facebookexternalhit",
		"Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)":                                                            "AhrefsBot",
		"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/120.0.0.0 Safari/537.36":                 "HeadlessChrome",
		"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 Amazonbot/0.1": "Amazonbot",
	}
	for ua, want := range hits {
		if got, ok := l.Match(ua); !ok || got != want {
			t.Errorf("Builtin.Match(%q) = %q, %v; want %q", ua, got, ok, want)
		}
	}
	for _, ua := range append(browserUAs, "curl/8.4.0", "python-requests/2.31.0") {
		if got, ok := l.Match(ua); ok {
			t.Errorf("Builtin.Match(%q) = %q; want no match", ua, got)
		}
	}
}

func TestCompile(t *testing.T) {
	l, err := Compile([]Entry{
		{Pattern: `^Seekbot`},
		{Pattern: `[wW]get`},
		{Pattern: `(sistrix|SISTRIX) [cC]rawler`},
		{Pattern: `AdsBot-Google([^-]|$)`},
		{Pattern: `(^| )sentry\/`},
		{Pattern: `^ExactBot$`},
		{Pattern: `fetcher/1\.0$`},
		{Pattern: `Q`},
		{Pattern: `Spider\/`},
	})
	if err != nil {
		t.Fatal(err)
	}
	st := l.Stats()
	if st.Entries != 9 || st.Regexps != 2 || st.Literals != 5 || st.Expanded != 2 {
		t.Errorf("stats = %+v", st)
	}
	cases := []struct {
		ua   string
		want int
	}{
		{"Seekbot/1.0", 0},
		{"foo Seekbot/1.0", -1},
		{"Wget/1.21", 1},
		{"GNU wget", 1},
		{"WGET", -1},
		{"SISTRIX Crawler", 2},
		{"sistrix crawler", 2},
		{"Sistrix crawler", -1},
		{"AdsBot-Google (+http://www.google.com/adsbot.html)", 3},
		{"AdsBot-Google", 3},
		{"AdsBot-Google-Mobile", -1},
		{"sentry/1.0", 4},
		{"raven sentry/1.0", 4},
		{"nosentry/1.0", -1},
		{"ExactBot", 5},
		{"ExactBot2", -1},
		{"my fetcher/1.0", 6},
		{"my fetcher/1.0 Q", 7},
		{"a Q", 7},
		{"Wget and Q", 1}, // first entry in list order wins
		{"Spider/", 8},
		{"Spider", -1},
	}
	for _, c := range cases {
		if got := l.MatchIndex(c.ua); got != c.want {
			t.Errorf("MatchIndex(%q) = %d, want %d", c.ua, got, c.want)
		}
	}
	if _, err := Compile([]Entry{{Pattern: `(`}}); err == nil {
		t.Error("bad pattern: no error")
	}
	var nilList *List
	if _, ok := nilList.Match("Googlebot/2.1"); ok {
		t.Error("nil list matched")
	}
}

func TestLoadOrBuiltin(t *testing.T) {
	l, err := LoadOrBuiltin(filepath.Join(t.TempDir(), "missing.json"))
	if err != nil || l != Builtin() {
		t.Fatalf("missing file: %v", err)
	}
	p := filepath.Join(t.TempDir(), "bad.json")
	os.WriteFile(p, []byte("{"), 0o644)
	if _, err := LoadOrBuiltin(p); err == nil {
		t.Error("bad JSON: no error")
	}
}

func crawlerFile(t testing.TB) string {
	if p := os.Getenv("MOAT_CRAWLER_USER_AGENTS"); p != "" {
		return p
	}
	cache := os.Getenv("MOAT_DATA_CACHE")
	if cache == "" {
		home, _ := os.UserHomeDir()
		cache = filepath.Join(home, ".cache", "moat")
	}
	p := filepath.Join(cache, "pkg/crawler-user-agents_1.60.0/package/crawler-user-agents.json")
	if _, err := os.Stat(p); err != nil {
		t.Skipf("crawler-user-agents.json not present (%s); run scripts/fetch-data.sh", p)
	}
	return p
}

func TestFetchedList(t *testing.T) {
	l, err := Load(crawlerFile(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("stats: %+v", l.Stats())
	n := 0
	for i, e := range l.Entries() {
		for _, ua := range e.Instances {
			n++
			if _, ok := l.Match(ua); !ok {
				t.Errorf("entry %d %q: own example not matched: %q", i, e.Pattern, ua)
			}
		}
	}
	t.Logf("%d examples matched", n)
	for _, ua := range browserUAs {
		if name, ok := l.Match(ua); ok {
			t.Errorf("browser UA flagged as %q: %q", name, ua)
		}
	}
	if name, ok := l.Match("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"); !ok || name != "Googlebot" {
		t.Errorf("Googlebot → %q %v", name, ok)
	}
	ua := browserUAs[0]
	if a := testing.AllocsPerRun(100, func() { l.Match(ua) }); a != 0 {
		t.Errorf("Match allocates %v", a)
	}
}

func benchUAs(l *List) []string {
	uas := append([]string(nil), browserUAs...)
	for _, e := range l.Entries() {
		if len(e.Instances) > 0 && len(uas) < 200 {
			uas = append(uas, e.Instances[0])
		}
	}
	return uas
}

var sinkName string

func BenchmarkMatchFetched(b *testing.B) {
	l, err := Load(crawlerFile(b))
	if err != nil {
		b.Fatal(err)
	}
	uas := benchUAs(l)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		sinkName, _ = l.Match(uas[i%len(uas)])
		i++
	}
}

func BenchmarkMatchFetchedBrowsersOnly(b *testing.B) {
	l, err := Load(crawlerFile(b))
	if err != nil {
		b.Fatal(err)
	}
	uas := browserUAs[:len(browserUAs)-1]
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		sinkName, _ = l.Match(uas[i%len(uas)])
		i++
	}
}

func BenchmarkMatchBuiltin(b *testing.B) {
	l := Builtin()
	uas := benchUAs(l)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		sinkName, _ = l.Match(uas[i%len(uas)])
		i++
	}
}

func BenchmarkLoad(b *testing.B) {
	p := crawlerFile(b)
	for b.Loop() {
		if _, err := Load(p); err != nil {
			b.Fatal(err)
		}
	}
}

// TestMatchIndexEqualsRegexps: the first matching entry is the first
// entry whose pattern, run as a regexp, matches: over the built-in list
// and, when present, the fetched one, for its own examples, browsers, and
// the examples cut and spliced into each other.
func TestMatchIndexEqualsRegexps(t *testing.T) {
	lists := map[string]*List{"builtin": Builtin()}
	t.Run("fetched", func(t *testing.T) {
		l, err := Load(crawlerFile(t))
		if err != nil {
			t.Fatal(err)
		}
		lists["fetched"] = l
	})
	for name, l := range lists {
		res := make([]*regexp.Regexp, l.Len())
		for i, e := range l.Entries() {
			res[i] = regexp.MustCompile(e.Pattern)
		}
		uas := append([]string{"", "a", "ab"}, browserUAs...)
		for _, e := range l.Entries() {
			uas = append(uas, e.Instances...)
			uas = append(uas, e.Name, " "+e.Name, e.Name+" ", strings.ToLower(e.Name))
		}
		n := len(uas)
		for i := 0; i < n; i += 3 {
			u := uas[i]
			uas = append(uas, u[:len(u)/2], u[len(u)/3:], browserUAs[i%len(browserUAs)]+" "+u[len(u)/4:])
		}
		for _, ua := range uas {
			want := -1
			for i, re := range res {
				if re.MatchString(ua) {
					want = i
					break
				}
			}
			if got := l.MatchIndex(ua); got != want {
				t.Fatalf("%s: MatchIndex(%q) = %d, want %d", name, ua, got, want)
			}
		}
		t.Logf("%s: %d user agents", name, len(uas))
	}
}
