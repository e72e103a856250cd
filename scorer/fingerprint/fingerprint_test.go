package fingerprint

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"
	"sync"
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

// TestKeyedHashesAreHMAC pins the derivations to HMAC-SHA256 of the
// length-prefixed fields under the key, computed independently, including
// when the pooled MAC states are reused concurrently: a change would change
// every device of every deployment.
func TestKeyedHashesAreHMAC(t *testing.T) {
	h, err := New(key)
	if err != nil {
		t.Fatal(err)
	}
	ref := func(fields ...string) []byte {
		m := hmac.New(sha256.New, key)
		for _, f := range fields {
			l := len(f)
			m.Write([]byte{byte(l >> 24), byte(l >> 16), byte(l >> 8), byte(l)})
			m.Write([]byte(f))
		}
		return m.Sum(nil)
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				user := fmt.Sprintf("u%d-%d", g, i)
				if got, want := h.Token("app", user, "fp"), base64.RawURLEncoding.EncodeToString(ref("token.v1", "app", user, "fp")[:16]); got != want {
					t.Errorf("token %s, want %s", got, want)
				}
				if got, want := h.Pseudonym("app", "ip", user), hex.EncodeToString(ref("pseudonym.v1", "app", "ip", user)[:12]); got != want {
					t.Errorf("pseudonym %s, want %s", got, want)
				}
				a := Attributes{ClientID: user}
				if got, want := h.Fingerprint("app", a), hex.EncodeToString(ref("fp.v1", "app", user, "", "", "", "", "", "", "", "")[:16]); got != want {
					t.Errorf("fingerprint %s, want %s", got, want)
				}
			}
		}()
	}
	wg.Wait()
}
