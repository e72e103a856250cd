package useragent

import "testing"

func TestParse(t *testing.T) {
	p, err := New(0)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, give                                             string
		browser, major, platform, engine, btype, device, brand string
	}{
		{"chrome windows", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
			"Chrome", "124", "Windows", "Blink", "browser", "desktop", ""},
		{"safari mac", "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
			"Safari", "17", "macOS", "WebKit", "browser", "desktop", "Apple"},
		{"firefox ubuntu", "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
			"Firefox", "125", "Linux", "Gecko", "browser", "desktop", ""},
		{"iphone", "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
			"Mobile Safari", "17", "iOS", "WebKit", "browser", "mobile", "Apple"},
		{"ipad", "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.6 Mobile/15E148 Safari/604.1",
			"Mobile Safari", "16", "iOS", "WebKit", "browser", "tablet", "Apple"},
		{"galaxy s23", "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36",
			"Chrome Mobile", "124", "Android", "Blink", "browser", "mobile", "Samsung"},
		{"galaxy tab", "Mozilla/5.0 (Linux; Android 13; SM-X710) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/24.0 Chrome/117.0.0.0 Safari/537.36",
			"Samsung Internet", "24", "Android", "Blink", "browser", "tablet", "Generic_Android_Tablet"},
		{"googlebot", "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
			"Googlebot", "2", "Other", "", "bot", "bot", "Spider"},
		{"curl", "curl/8.4.0", "curl", "8", "Other", "", "library", "unknown", ""},
		{"empty", "", "", "", "", "", "", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := p.Parse(tt.give)
			if got.Browser != tt.browser || got.BrowserMajor != tt.major || got.Platform != tt.platform ||
				got.Engine != tt.engine || got.BrowserType != tt.btype || got.DeviceType != tt.device || got.DeviceBrand != tt.brand {
				t.Errorf("Parse(%q) = %+v", tt.give, got)
			}
		})
	}
}

func BenchmarkParseCached(b *testing.B) {
	p, err := New(0)
	if err != nil {
		b.Fatal(err)
	}
	ua := "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"
	b.ReportAllocs()
	for b.Loop() {
		p.Parse(ua)
	}
}
