// Package fingerprint derives device fingerprints and device tokens from an
// event. Both are keyed hashes (HMAC-SHA256 under a deployment secret), so
// the raw attributes are never stored and tokens cannot be guessed or forged
// without the key. Both are pure functions of the event and the key: replaying
// the log gives the same devices.
package fingerprint

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"hash"
	"strings"
	"sync"

	"github.com/moat-dev/moat/schemas"
)

// MinKeyLen is the shortest accepted key.
const MinKeyLen = 32

// Hasher computes fingerprints and tokens under one key. It is safe for
// concurrent use.
type Hasher struct {
	key []byte
	// macs holds keyed HMAC states (*mac) for reuse: hmac.New allocates
	// two SHA-256 states and hashes the padded key each time, which is
	// most of the cost of hashing a few short fields.
	macs sync.Pool
}

// mac is a pooled HMAC state with the buffers one sum needs, so that
// hashing allocates nothing.
type mac struct {
	h   hash.Hash
	in  []byte
	out [sha256.Size]byte
}

// maxPooledInput bounds the input buffer kept with a pooled state.
const maxPooledInput = 4 << 10

// New returns a Hasher for key. The key must stay the same for the life of
// a deployment: changing it changes every fingerprint and device token.
func New(key []byte) (*Hasher, error) {
	if len(key) < MinKeyLen {
		return nil, errors.New("fingerprint: key must be at least 32 bytes")
	}
	h := &Hasher{key: append([]byte(nil), key...)}
	h.macs.New = func() any { return &mac{h: hmac.New(sha256.New, h.key), in: make([]byte, 0, 256)} }
	return h, nil
}

// Attributes are the stable request attributes a fingerprint is made of.
// Versions are left out on purpose: browsers and operating systems update
// themselves every few weeks, and a device must not become "new" each time.
type Attributes struct {
	ClientID     string
	Browser      string
	OS           string
	Platform     string
	DeviceFamily string
	DeviceBrand  string
	DeviceModel  string
	DeviceType   string
	Language     string
}

// AttributesOf picks the fingerprint attributes from an event and its
// parsed user agent. With a client id (the Castle __cid cookie or
// X-Castle-Client-Id header, set once per browser) the client id alone
// identifies the device; otherwise the browser, OS, hardware and primary
// language do.
func AttributesOf(ev *schemas.Event, ua schemas.UserAgent) Attributes {
	if id := ev.Context.ClientID; id != "" {
		return Attributes{ClientID: id}
	}
	// Header names are stored normalized: index the map directly rather
	// than normalizing constant names on every event.
	if id := ev.Context.Headers["x-castle-client-id"]; id != "" && id != "true" {
		return Attributes{ClientID: id}
	}
	lang := ev.Context.Headers["accept-language"]
	return Attributes{
		Browser:      ua.Browser,
		OS:           ua.OS,
		Platform:     ua.Platform,
		DeviceFamily: ua.DeviceFamily,
		DeviceBrand:  ua.DeviceBrand,
		DeviceModel:  ua.DeviceModel,
		DeviceType:   ua.DeviceType,
		Language:     primaryLanguage(lang),
	}
}

// Empty reports whether there is nothing to fingerprint.
func (a Attributes) Empty() bool { return a == Attributes{} }

// primaryLanguage returns the first language tag of an Accept-Language
// header, lower-cased: "en-US,en;q=0.9" is "en-us".
func primaryLanguage(h string) string {
	if h == "" || h == "true" {
		return ""
	}
	first, _, _ := strings.Cut(h, ",")
	first, _, _ = strings.Cut(first, ";")
	return strings.ToLower(strings.TrimSpace(first))
}

// Fingerprint returns the hex fingerprint (128 bits) of attrs within app.
// Empty attributes give an empty fingerprint.
func (h *Hasher) Fingerprint(appID string, a Attributes) string {
	if a.Empty() {
		return ""
	}
	var sum [sha256.Size]byte
	h.sum(&sum, "fp.v1", appID, a.ClientID, a.Browser, a.OS, a.Platform, a.DeviceFamily, a.DeviceBrand, a.DeviceModel, a.DeviceType, a.Language)
	var out [32]byte
	hex.Encode(out[:], sum[:16])
	return string(out[:])
}

// Token returns the device token for a fingerprint: bound to app, user and
// fingerprint, 128 bits, URL-safe. An empty fingerprint gives an empty token.
func (h *Hasher) Token(appID, userID, fingerprint string) string {
	if fingerprint == "" {
		return ""
	}
	var sum [sha256.Size]byte
	h.sum(&sum, "token.v1", appID, userID, fingerprint)
	var out [22]byte // base64.RawURLEncoding.EncodedLen(16)
	base64.RawURLEncoding.Encode(out[:], sum[:16])
	return string(out[:])
}

// Pseudonym returns a keyed hash (96 bits, hex) of an identifier such as
// an IP address or an email within app, for state that must count an
// identifier without holding it (the cross-user state).
func (h *Hasher) Pseudonym(appID, kind, value string) string {
	var sum [sha256.Size]byte
	h.sum(&sum, "pseudonym.v1", appID, kind, value)
	var out [24]byte
	hex.Encode(out[:], sum[:12])
	return string(out[:])
}

// sum writes the HMAC of the length-prefixed fields (so ("ab","c") and
// ("a","bc") differ) to out. The fields are written in one Write: each as
// its 32-bit big-endian length, then its bytes.
func (h *Hasher) sum(out *[sha256.Size]byte, fields ...string) {
	m := h.macs.Get().(*mac)
	b := m.in[:0]
	for _, f := range fields {
		b = binary.BigEndian.AppendUint32(b, uint32(len(f)))
		b = append(b, f...)
	}
	m.h.Reset()
	m.h.Write(b)
	*out = [sha256.Size]byte(m.h.Sum(m.out[:0]))
	if cap(b) <= maxPooledInput {
		m.in = b[:0]
	} else {
		m.in = make([]byte, 0, 256)
	}
	h.macs.Put(m)
}
