// Package bearer issues and verifies the short-lived tokens end users
// present to Moat's end-user routes (Authorization: Bearer), and limits how
// often a token or an IP address may call them.
//
// A token is issued to an app's backend (authenticated by its API secret)
// for one of its users and, optionally, the device the user is on. It is
// "mbt1." + base64url(claims JSON) + "." + base64url(HMAC-SHA256), signed
// under a key derived from the deployment's bearer key, so every api
// instance verifies every token without shared state. The claims carry a
// random 128-bit id (the token cannot be guessed, and rate limits count per
// token), the app, the user, the device token and the expiry. Nothing in a
// token is secret: it is signed, not encrypted.
package bearer

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// DefaultTTL is how long a token is valid unless configured otherwise.
const DefaultTTL = 15 * time.Minute

// MinKeyLen is the shortest bearer key accepted.
const MinKeyLen = 32

const prefix = "mbt1."

// Errors of Verify. Both mean 401 to the client, which is not told which.
var (
	ErrInvalid = errors.New("bearer: invalid token")
	ErrExpired = errors.New("bearer: token expired")
)

// Claims are what a token asserts.
type Claims struct {
	// ID is the token's random id (base64url, 128 bits).
	ID string `json:"jti"`
	// AppID and UserID are the app and the user the token acts for.
	AppID  string `json:"app"`
	UserID string `json:"sub"`
	// DeviceToken is the user's current device, if the app named one.
	DeviceToken string `json:"dev,omitempty"`
	// IssuedAtMs and ExpiresAtMs are epoch milliseconds.
	IssuedAtMs  int64 `json:"iat"`
	ExpiresAtMs int64 `json:"exp"`
}

// ExpiresAt is the end of the token's validity.
func (c Claims) ExpiresAt() time.Time { return time.UnixMilli(c.ExpiresAtMs).UTC() }

// Signer issues and verifies tokens.
type Signer struct {
	key []byte
	ttl time.Duration
	now func() time.Time
}

// NewSigner returns a Signer under key (at least MinKeyLen bytes) issuing
// tokens valid for ttl (DefaultTTL when 0). now is the clock (time.Now
// when nil).
func NewSigner(key []byte, ttl time.Duration, now func() time.Time) (*Signer, error) {
	if len(key) < MinKeyLen {
		return nil, fmt.Errorf("bearer: key must be at least %d bytes", MinKeyLen)
	}
	if ttl < 0 {
		return nil, errors.New("bearer: ttl must not be negative")
	}
	if ttl == 0 {
		ttl = DefaultTTL
	}
	if now == nil {
		now = time.Now
	}
	// A key of its own, so that the bearer key may be shared with other
	// uses without a signature of one being valid for the other.
	m := hmac.New(sha256.New, key)
	m.Write([]byte("moat bearer token v1"))
	return &Signer{key: m.Sum(nil), ttl: ttl, now: now}, nil
}

// TTL is how long issued tokens are valid.
func (s *Signer) TTL() time.Duration { return s.ttl }

// Issue returns a new token for a user of an app and their current device
// (may be empty), and its claims.
func (s *Signer) Issue(appID, userID, deviceToken string) (string, Claims, error) {
	if appID == "" || userID == "" {
		return "", Claims{}, errors.New("bearer: app and user are required")
	}
	id := make([]byte, 16)
	if _, err := rand.Read(id); err != nil {
		return "", Claims{}, fmt.Errorf("bearer: token id: %w", err)
	}
	now := s.now().UTC()
	c := Claims{
		ID: base64.RawURLEncoding.EncodeToString(id), AppID: appID, UserID: userID, DeviceToken: deviceToken,
		IssuedAtMs: now.UnixMilli(), ExpiresAtMs: now.Add(s.ttl).UnixMilli(),
	}
	body, err := json.Marshal(c)
	if err != nil {
		return "", Claims{}, fmt.Errorf("bearer: encode claims: %w", err)
	}
	signed := prefix + base64.RawURLEncoding.EncodeToString(body)
	return signed + "." + base64.RawURLEncoding.EncodeToString(s.mac(signed)), c, nil
}

func (s *Signer) mac(signed string) []byte {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte(signed))
	return m.Sum(nil)
}

// MaxTokenLen bounds what Verify looks at.
const MaxTokenLen = 4096

// Verify checks a token's signature (in constant time) and expiry and
// returns its claims.
func (s *Signer) Verify(token string) (Claims, error) {
	if len(token) > MaxTokenLen || !strings.HasPrefix(token, prefix) {
		return Claims{}, ErrInvalid
	}
	i := strings.LastIndexByte(token, '.')
	if i <= len(prefix) {
		return Claims{}, ErrInvalid
	}
	signed, sig := token[:i], token[i+1:]
	got, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil || !hmac.Equal(got, s.mac(signed)) {
		return Claims{}, ErrInvalid
	}
	body, err := base64.RawURLEncoding.DecodeString(signed[len(prefix):])
	if err != nil {
		return Claims{}, ErrInvalid
	}
	var c Claims
	if err := json.Unmarshal(body, &c); err != nil || c.ID == "" || c.AppID == "" || c.UserID == "" {
		return Claims{}, ErrInvalid
	}
	if s.now().UnixMilli() >= c.ExpiresAtMs {
		return Claims{}, ErrExpired
	}
	return c, nil
}
