package fingerprint

import (
	"strings"
	"testing"

	"github.com/moat-dev/moat/schemas"
)

var key = []byte(strings.Repeat("k", 32))

func TestFingerprintStableAcrossVersions(t *testing.T) {
	h, err := New(key)
	if err != nil {
		t.Fatal(err)
	}
	ev := &schemas.Event{Context: schemas.Context{Headers: map[string]string{"accept-language": "en-US,en;q=0.9"}}}
	v1 := schemas.UserAgent{Browser: "Chrome", BrowserMajor: "123", OS: "Windows", Platform: "Windows", DeviceType: "desktop"}
	v2 := v1
	v2.BrowserMajor = "124"
	a, b := h.Fingerprint("app", AttributesOf(ev, v1)), h.Fingerprint("app", AttributesOf(ev, v2))
	if a == "" || a != b {
		t.Fatalf("a browser update changed the fingerprint: %q vs %q", a, b)
	}
	other := v1
	other.Browser = "Firefox"
	if h.Fingerprint("app", AttributesOf(ev, other)) == a {
		t.Fatal("another browser has the same fingerprint")
	}
	if h.Fingerprint("other-app", AttributesOf(ev, v1)) == a {
		t.Fatal("fingerprints are not scoped to the app")
	}
	if strings.Contains(a, "Chrome") || len(a) != 32 {
		t.Fatalf("fingerprint %q is not a 128-bit hex hash", a)
	}
}

func TestClientIDWins(t *testing.T) {
	h, _ := New(key)
	ua := schemas.UserAgent{Browser: "Chrome"}
	ev1 := &schemas.Event{Context: schemas.Context{ClientID: "cid-1"}}
	ev2 := &schemas.Event{Context: schemas.Context{Headers: map[string]string{"x-castle-client-id": "cid-1"}}}
	if h.Fingerprint("a", AttributesOf(ev1, ua)) != h.Fingerprint("a", AttributesOf(ev2, schemas.UserAgent{Browser: "Firefox"})) {
		t.Fatal("the same client id gave different fingerprints")
	}
}

func TestTokenBinding(t *testing.T) {
	h, _ := New(key)
	tok := h.Token("app", "u1", "fp")
	if tok == "" || tok == h.Token("app", "u2", "fp") || tok == h.Token("app2", "u1", "fp") || tok == h.Token("app", "u1", "fp2") {
		t.Fatal("token is not bound to app, user and fingerprint")
	}
	if tok != h.Token("app", "u1", "fp") {
		t.Fatal("token is not deterministic")
	}
	h2, _ := New([]byte(strings.Repeat("x", 32)))
	if h2.Token("app", "u1", "fp") == tok {
		t.Fatal("token does not depend on the key")
	}
	if h.Token("app", "u1", "") != "" || h.Fingerprint("app", Attributes{}) != "" {
		t.Fatal("empty input gave a token")
	}
	if _, err := New([]byte("short")); err == nil {
		t.Fatal("short key accepted")
	}
}
