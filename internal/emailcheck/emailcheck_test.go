package emailcheck

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	c := New([]string{"example-disposable.com", " Trash.Example.ORG ", "# comment", ""})
	cases := []struct {
		in   string
		want Info
	}{
		{"  John.Smith+news@GoogleMail.com ", Info{Normalized: "johnsmith@gmail.com", Domain: "gmail.com", Valid: true, Aliased: true}},
		{"j.o.h.n.smith@gmail.com", Info{Normalized: "johnsmith@gmail.com", Domain: "gmail.com", Valid: true, Aliased: true}},
		{"johnsmith@gmail.com", Info{Normalized: "johnsmith@gmail.com", Domain: "gmail.com", Valid: true}},
		{"Jane.Doe+shop@outlook.com", Info{Normalized: "jane.doe@outlook.com", Domain: "outlook.com", Valid: true, Aliased: true}},
		{"jane.doe+shop@example.com", Info{Normalized: "jane.doe+shop@example.com", Domain: "example.com", Valid: true}},
		{"bob@mailinator.com", Info{Normalized: "bob@mailinator.com", Domain: "mailinator.com", Valid: true, Disposable: true}},
		{"bob@inbox.mailinator.com", Info{Normalized: "bob@inbox.mailinator.com", Domain: "inbox.mailinator.com", Valid: true, Disposable: true}},
		{"bob@example-disposable.com", Info{Normalized: "bob@example-disposable.com", Domain: "example-disposable.com", Valid: true, Disposable: true}},
		{"bob@trash.example.org", Info{Normalized: "bob@trash.example.org", Domain: "trash.example.org", Valid: true, Disposable: true}},
		{"bob@example.org", Info{Normalized: "bob@example.org", Domain: "example.org", Valid: true}},
		{"xk7q9zp2m4@gmail.com", Info{Normalized: "xk7q9zp2m4@gmail.com", Domain: "gmail.com", Valid: true, Generated: true}},
		{"bob@localhost", Info{Normalized: "bob@localhost", Domain: "localhost"}},
		{"bob@example.test", Info{Normalized: "bob@example.test", Domain: "example.test"}},
		{"bob@example.c", Info{Normalized: "bob@example.c", Domain: "example.c"}},
		{"bob@example.123", Info{Normalized: "bob@example.123", Domain: "example.123"}},
		{"bob@-example.com", Info{Normalized: "bob@-example.com", Domain: "-example.com"}},
		{"bob@exa_mple.com", Info{Normalized: "bob@exa_mple.com", Domain: "exa_mple.com"}},
		{"bob..x@example.com", Info{Normalized: "bob..x@example.com", Domain: "example.com"}},
		{".bob@example.com", Info{Normalized: ".bob@example.com", Domain: "example.com"}},
		{"bo b@example.com", Info{Normalized: "bo b@example.com", Domain: "example.com"}},
		{"@example.com", Info{Normalized: "@example.com", Domain: "example.com"}},
		{"bob@", Info{Normalized: "bob@", Domain: ""}},
		{"müller@bücher.de", Info{Normalized: "müller@bücher.de", Domain: "bücher.de", Valid: true}},
		{"bob@xn--bcher-kva.xn--p1ai", Info{Normalized: "bob@xn--bcher-kva.xn--p1ai", Domain: "xn--bcher-kva.xn--p1ai", Valid: true}},
		{"not-an-email", Info{}},
		{"", Info{}},
	}
	for _, tc := range cases {
		if got := c.Check(tc.in); got != tc.want {
			t.Errorf("Check(%q) =\n %+v, want\n %+v", tc.in, got, tc.want)
		}
	}
}

func TestAlias(t *testing.T) {
	same := []string{"johnsmith@gmail.com", "John.Smith@gmail.com", "john.smith+a@googlemail.com", "JOHNSMITH+b+c@GMAIL.COM"}
	for _, e := range same {
		if got := Alias(e); got != "johnsmith@gmail.com" {
			t.Errorf("Alias(%q) = %q", e, got)
		}
	}
	if Alias("john.smith@example.com") == Alias("johnsmith@example.com") {
		t.Error("dots removed for a non-Gmail domain")
	}
	if got := Alias("+tag@gmail.com"); got != "+tag@gmail.com" {
		t.Errorf("leading + stripped: %q", got)
	}
}

func TestBuiltinOnly(t *testing.T) {
	c := New(nil)
	if c.Len() < 50 {
		t.Errorf("builtin list has %d domains", c.Len())
	}
	for _, d := range []string{"mailinator.com", "yopmail.com", "guerrillamail.com", "10minutemail.com", "sub.yopmail.fr"} {
		if !c.IsDisposableDomain(d) {
			t.Errorf("%s not disposable", d)
		}
	}
	for _, d := range []string{"gmail.com", "com", "yahoo.co.uk", "outlook.com", ""} {
		if c.IsDisposableDomain(d) {
			t.Errorf("%s disposable", d)
		}
	}
	if New([]string{"co.uk"}).IsDisposableDomain("bbc.co.uk") != true {
		t.Error("parent-domain match")
	}
}

func TestLooksGenerated(t *testing.T) {
	gen := []string{
		"xk7q9zp2m4", "a8f3k2p9", "qwrtzpls", "kx9vq2bw7z", "bcdfghjk",
		"5f2b9c7e1a4d6e3b", "3f2504e0-4f89-11d3-9a0c-0305e82c3301", "zx81vq73kt", "hj3k4l5m6n",
	}
	real := []string{
		"john.smith", "johnsmith1985", "jane_doe", "mkrtchyan", "user83921047",
		"maria.garcia.lopez", "alexander", "christopher", "schwarzkopf", "bob",
		"a.b", "15551234567", "1234567890", "info", "sales-team", "oliver.jones2",
		"strengths", "j.r.r.tolkien", "angelina.jolie", "dmitry.ivanov88", "w1ll1am",
		"tom.o.brien", "karthikeyan", "nguyenthanhtung", "zhangwei1990", "lisa.marie.1999",
	}
	for _, s := range gen {
		if !LooksGenerated(s) {
			t.Errorf("LooksGenerated(%q) = false", s)
		}
	}
	for _, s := range real {
		if LooksGenerated(s) {
			t.Errorf("LooksGenerated(%q) = true", s)
		}
	}
}

func TestLoadDisposable(t *testing.T) {
	dir := t.TempDir()
	j := filepath.Join(dir, "l.json")
	os.WriteFile(j, []byte(` ["a.com","b.org"] `), 0o644)
	txt := filepath.Join(dir, "l.conf")
	os.WriteFile(txt, []byte("# header\na.com\n\n  b.org \n"), 0o644)
	for _, p := range []string{j, txt} {
		got, err := LoadDisposable(p)
		if err != nil || len(got) != 2 || got[0] != "a.com" || got[1] != "b.org" {
			t.Errorf("LoadDisposable(%s) = %q, %v", p, got, err)
		}
	}
	if _, err := LoadDisposable(filepath.Join(dir, "missing")); err == nil {
		t.Error("missing file: no error")
	}
	os.WriteFile(j, []byte(`[1,2]`), 0o644)
	if _, err := LoadDisposable(j); err == nil {
		t.Error("bad JSON: no error")
	}
}

func disposableFile(t testing.TB) string {
	if p := os.Getenv("MOAT_DISPOSABLE_EMAIL_DOMAINS"); p != "" {
		return p
	}
	cache := os.Getenv("MOAT_DATA_CACHE")
	if cache == "" {
		home, _ := os.UserHomeDir()
		cache = filepath.Join(home, ".cache", "moat")
	}
	p := filepath.Join(cache, "pkg/disposable-email-domains-js_1.26.0/package/dist/dict/disposable_email_blocklist.json")
	if _, err := os.Stat(p); err != nil {
		t.Skipf("disposable list not present (%s); run scripts/fetch-data.sh", p)
	}
	return p
}

func TestFetchedList(t *testing.T) {
	doms, err := LoadDisposable(disposableFile(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(doms) < 1000 {
		t.Fatalf("only %d domains", len(doms))
	}
	c := New(doms)
	t.Logf("%d domains", c.Len())
	for _, d := range BuiltinDisposable() {
		found := false
		for _, x := range doms {
			if x == d {
				found = true
				break
			}
		}
		if !found {
			t.Errorf("builtin %s not in the fetched list", d)
		}
	}
	for _, e := range []string{"a@gmail.com", "a@yahoo.com", "a@outlook.com", "a@icloud.com", "a@proton.me", "a@gmx.de", "a@qq.com", "a@163.com", "a@mail.ru", "a@yandex.ru"} {
		if c.Check(e).Disposable {
			t.Errorf("%s flagged disposable", e)
		}
	}
}

var sink Info

func BenchmarkCheck(b *testing.B) {
	c := New(nil)
	emails := []string{"John.Smith+news@GoogleMail.com", "bob@inbox.mailinator.com", "xk7q9zp2m4@example.com", "jane.doe@company.co.uk"}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		sink = c.Check(emails[i&3])
		i++
	}
}

func TestGooglemailNotAliased(t *testing.T) {
	if info := New(nil).Check("bob@googlemail.com"); info.Aliased || info.Normalized != "bob@gmail.com" {
		t.Errorf("%+v", info)
	}
}

// TestNormalizeMatchesReference: normalize, which returns its lower-cased
// input when nothing is removed, gives what building the address always did.
func TestNormalizeMatchesReference(t *testing.T) {
	ref := func(email string) (string, string, string) {
		e := strings.ToLower(strings.TrimSpace(email))
		at := strings.LastIndexByte(e, '@')
		if at < 0 {
			return "", "", ""
		}
		local, domain := e[:at], strings.TrimSuffix(e[at+1:], ".")
		if domain == "googlemail.com" {
			domain = "gmail.com"
		}
		if subaddressing[domain] {
			if i := strings.IndexByte(local, '+'); i > 0 {
				local = local[:i]
			}
		}
		if domain == "gmail.com" && strings.IndexByte(local, '.') >= 0 {
			local = strings.ReplaceAll(local, ".", "")
		}
		return local + "@" + domain, domain, local
	}
	for _, e := range []string{"", "a", "@", "a@", "@b", "bob@example.com", " Bob@Example.COM ", "bob+x@gmail.com", "b.o.b@gmail.com",
		"b.o.b+x@googlemail.com", "bob@gmail.com.", "bob@example.com..", "+x@gmail.com", "a@b@c.com", "bob+x@fastmail.com", "bob+x@example.com",
		"x@googlemail.com", "x@GoogleMail.com.", "ÉMILE@exämple.com"} {
		n, d, l := normalize(e)
		rn, rd, rl := ref(e)
		if n != rn || d != rd || l != rl {
			t.Errorf("normalize(%q) = %q %q %q, want %q %q %q", e, n, d, l, rn, rd, rl)
		}
	}
}
