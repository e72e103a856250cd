package bearer

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

var key = []byte("bearer-test-key-0123456789abcdef0123")

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func TestIssueVerify(t *testing.T) {
	c := &clock{time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)}
	s, err := NewSigner(key, 0, c.now)
	if err != nil {
		t.Fatal(err)
	}
	tok, claims, err := s.Issue("app-a", "bob", "dev-1")
	if err != nil {
		t.Fatal(err)
	}
	if claims.ExpiresAt() != c.t.Add(DefaultTTL) {
		t.Errorf("expires %v", claims.ExpiresAt())
	}
	got, err := s.Verify(tok)
	if err != nil || got != claims {
		t.Fatalf("Verify = %+v, %v; want %+v", got, err, claims)
	}
	// Tokens are unguessable: two issues differ.
	tok2, c2, _ := s.Issue("app-a", "bob", "dev-1")
	if tok2 == tok || c2.ID == claims.ID || len(claims.ID) != 22 {
		t.Errorf("ids %q %q", claims.ID, c2.ID)
	}
	// Expired a millisecond before the end... and at it.
	c.t = claims.ExpiresAt().Add(-time.Millisecond)
	if _, err := s.Verify(tok); err != nil {
		t.Errorf("just before expiry: %v", err)
	}
	c.t = claims.ExpiresAt()
	if _, err := s.Verify(tok); err != ErrExpired {
		t.Errorf("at expiry: %v", err)
	}
}

func TestVerifyRejects(t *testing.T) {
	now := func() time.Time { return time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC) }
	s, _ := NewSigner(key, time.Minute, now)
	other, _ := NewSigner([]byte("another-deployment-key-0123456789abcdef"), time.Minute, now)
	tok, _, _ := s.Issue("app-a", "bob", "")
	foreign, _, _ := other.Issue("app-a", "bob", "")

	// Another user, same signature: the claims are signed.
	parts := strings.Split(tok, ".")
	body, _ := base64.RawURLEncoding.DecodeString(parts[1])
	var c map[string]any
	_ = json.Unmarshal(body, &c)
	c["sub"] = "alice"
	forged, _ := json.Marshal(c)
	swapped := parts[0] + "." + base64.RawURLEncoding.EncodeToString(forged) + "." + parts[2]
	c["sub"], c["app"] = "bob", "app-b"
	forged, _ = json.Marshal(c)
	otherApp := parts[0] + "." + base64.RawURLEncoding.EncodeToString(forged) + "." + parts[2]

	for name, bad := range map[string]string{
		"empty":            "",
		"garbage":          "hello",
		"foreign key":      foreign,
		"other user":       swapped,
		"other app":        otherApp,
		"bad signature":    tok[:len(tok)-2] + "AA",
		"no signature":     parts[0] + "." + parts[1],
		"truncated":        tok[:len(tok)-5],
		"too long":         tok + strings.Repeat("A", MaxTokenLen),
		"other version":    "mbt2." + parts[1] + "." + parts[2],
		"signature of nil": "mbt1.." + parts[2],
	} {
		if _, err := s.Verify(bad); err != ErrInvalid {
			t.Errorf("%s: Verify = %v, want ErrInvalid", name, err)
		}
	}
	if _, err := NewSigner([]byte("short"), 0, nil); err == nil {
		t.Error("a short key was accepted")
	}
}

func TestLimiter(t *testing.T) {
	c := &clock{time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)}
	l := NewLimiter(3, time.Minute, 0, c.now) // 3 a minute, bursts of 3
	for i := 0; i < 3; i++ {
		if ok, _ := l.Allow("a"); !ok {
			t.Fatalf("call %d refused", i)
		}
	}
	ok, wait := l.Allow("a")
	if ok || wait != 20*time.Second {
		t.Fatalf("4th call: %v, wait %v (want 20s)", ok, wait)
	}
	if RetryAfterSeconds(wait) != 20 || RetryAfterSeconds(time.Millisecond) != 1 {
		t.Error("RetryAfterSeconds")
	}
	// Keys are independent.
	if ok, _ := l.Allow("b"); !ok {
		t.Error("another key was limited")
	}
	// One call back after 20 s.
	c.t = c.t.Add(20 * time.Second)
	if ok, _ := l.Allow("a"); !ok {
		t.Error("refused after refill")
	}
	if ok, _ := l.Allow("a"); ok {
		t.Error("allowed beyond the refill")
	}
	// Full buckets are forgotten when the map is full.
	l.maxKeys = 2
	c.t = c.t.Add(time.Hour)
	l.Allow("c")
	if len(l.buckets) > 2 {
		t.Errorf("%d buckets kept", len(l.buckets))
	}
	// Rate 0: off.
	off := NewLimiter(0, time.Minute, 0, c.now)
	for i := 0; i < 100; i++ {
		if ok, _ := off.Allow("x"); !ok {
			t.Fatal("a disabled limiter refused")
		}
	}
}
