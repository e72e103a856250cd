package endpoints

import (
	"bytes"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
)

func testKey(b byte) []byte { return bytes.Repeat([]byte{b}, KeySize) }

func mustCipher(t testing.TB, key []byte) *Cipher {
	t.Helper()
	c, err := NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestSealOpen(t *testing.T) {
	c := mustCipher(t, testKey(1))
	secret, err := NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := c.seal("app", "ep_1", secret)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(sealed, secret) || strings.Contains(sealed, strings.TrimPrefix(secret, SecretPrefix)) {
		t.Fatal("sealed value contains the secret")
	}
	again, _ := c.seal("app", "ep_1", secret)
	if again == sealed {
		t.Fatal("two seals of one secret are identical: the nonce is not random")
	}
	if got, err := c.open("app", "ep_1", sealed); err != nil || got != secret {
		t.Fatalf("open: %q, %v", got, err)
	}
	// Bound to its app and endpoint, and to the key; tampering is detected.
	for name, open := range map[string]func() (string, error){
		"other endpoint": func() (string, error) { return c.open("app", "ep_2", sealed) },
		"other app":      func() (string, error) { return c.open("app2", "ep_1", sealed) },
		"other key":      func() (string, error) { return mustCipher(t, testKey(2)).open("app", "ep_1", sealed) },
		"garbage":        func() (string, error) { return c.open("app", "ep_1", "!!") },
		"tampered": func() (string, error) {
			b, _ := base64.RawURLEncoding.DecodeString(sealed)
			b[len(b)-1] ^= 1
			return c.open("app", "ep_1", base64.RawURLEncoding.EncodeToString(b))
		},
	} {
		if got, err := open(); !errors.Is(err, ErrWrongKey) || got != "" {
			t.Errorf("%s: opened to %q, err %v", name, got, err)
		}
	}
	if c.KeyID() == mustCipher(t, testKey(2)).KeyID() || c.KeyID() != mustCipher(t, testKey(1)).KeyID() {
		t.Fatal("key ids do not tell keys apart")
	}
}

func TestParseKeyAndSecrets(t *testing.T) {
	if _, err := ParseKey(strings.Repeat("ab", KeySize) + "\n"); err != nil {
		t.Fatalf("valid key: %v", err)
	}
	for _, bad := range []string{"", "zz", strings.Repeat("ab", KeySize-1), strings.Repeat("ab", KeySize+1), strings.Repeat("x", 2*KeySize)} {
		if _, err := ParseKey(bad); err == nil || !strings.Contains(err.Error(), "openssl rand -hex 32") {
			t.Errorf("ParseKey(%q): %v", bad, err)
		}
	}
	if _, err := NewCipher(testKey(1)[:16]); err == nil {
		t.Fatal("a 16-byte key was accepted")
	}
	seen := map[string]bool{}
	for range 100 {
		s, err := NewSecret()
		if err != nil {
			t.Fatal(err)
		}
		raw, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(s, SecretPrefix))
		if !strings.HasPrefix(s, SecretPrefix) || err != nil || len(raw) != 32 || seen[s] {
			t.Fatalf("secret %q: %v", s, err)
		}
		seen[s] = true
		if h := Hint(s); !strings.HasPrefix(h, SecretPrefix+"…") || !strings.HasSuffix(s, strings.TrimPrefix(h, SecretPrefix+"…")) || len(h) > len(SecretPrefix)+3+4 {
			t.Fatalf("hint %q of %q", h, s)
		}
	}
	if h := Hint("short"); h != "…" {
		t.Fatalf("hint of a short secret: %q", h)
	}
}
