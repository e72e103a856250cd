// Package privacy is Moat's registry of forgotten users, the backbone of
// Castle's privacy API (DELETE /v1/privacy/users; docs/privacy.md).
//
// Erasing a user from an event-sourced system is not one delete: the raw
// events stay on the log until retention removes them, and every view is
// rebuilt from that log. So a deletion is itself recorded, on the compacted
// topic schemas.TopicPrivacy, as "identifier X of app A was deleted at T",
// and every role that reads the log (scorer, projector, api) skips what the
// registry names: an event about X received at or before T is as if it had
// never been sent, however often the log is replayed.
//
// The registry never holds a raw user id or email: records are keyed by an
// HMAC-SHA256, under the deployment's device key, of the app id, the
// identifier type and the normalized identifier (Hasher). Registry follows
// the topic into memory (like internal/lists' Follower); Writer records a
// deletion and the commands that make the scorer and projector act on it in
// one Kafka transaction.
package privacy

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"strings"
	"time"
)

// Identifier types of Castle's privacy API.
const (
	TypeID    = "$id"
	TypeEmail = "$email"
)

// ValidType reports whether typ is an identifier type of the privacy API.
func ValidType(typ string) bool { return typ == TypeID || typ == TypeEmail }

// NormalizeEmail is the form emails are compared in: trimmed and
// lower-cased (the scorer, the projector and the api all use it).
func NormalizeEmail(email string) string { return strings.ToLower(strings.TrimSpace(email)) }

// normalize returns identifier in the form it is hashed in: user ids are
// exact (Castle user ids are case-sensitive), emails normalized.
func normalize(typ, identifier string) string {
	if typ == TypeEmail {
		return NormalizeEmail(identifier)
	}
	return identifier
}

// MinKeyLen is the shortest accepted hashing key.
const MinKeyLen = 32

// Hasher derives registry keys. It is safe for concurrent use.
type Hasher struct {
	key []byte
}

// NewHasher returns a Hasher for key (the deployment's device key; the
// registry's hashes are domain-separated from fingerprints and device
// tokens by a label). The key must never change: a new key makes every
// recorded deletion unrecognizable.
func NewHasher(key []byte) (*Hasher, error) {
	if len(key) < MinKeyLen {
		return nil, fmt.Errorf("privacy: key must be at least %d bytes", MinKeyLen)
	}
	return &Hasher{key: append([]byte(nil), key...)}, nil
}

// Key returns the registry key of an identifier of app: the hex
// HMAC-SHA256 of the label, app id, type and normalized identifier
// (length-prefixed, so no two inputs collide by concatenation).
func (h *Hasher) Key(appID, typ, identifier string) string {
	m := hmac.New(sha256.New, h.key)
	write(m, "privacy.v1", appID, typ, normalize(typ, identifier))
	return hex.EncodeToString(m.Sum(nil))
}

func write(m hash.Hash, fields ...string) {
	var n [4]byte
	for _, f := range fields {
		l := len(f)
		n[0], n[1], n[2], n[3] = byte(l>>24), byte(l>>16), byte(l>>8), byte(l)
		m.Write(n[:])
		m.Write([]byte(f))
	}
}

// RecordVersion is the version of Record written by this build.
const RecordVersion = 1

// Record is the value of a registry record: which app, what kind of
// identifier, and when it was deleted. The identifier itself is only in
// the key, hashed.
type Record struct {
	V         int       `json:"v"`
	AppID     string    `json:"app_id"`
	Type      string    `json:"type"`
	DeletedAt time.Time `json:"deleted_at"`
}

func (r *Record) validate() error {
	switch {
	case r.V < 1:
		return errors.New("privacy: record without version")
	case r.AppID == "":
		return errors.New("privacy: record without app id")
	case !ValidType(r.Type):
		return fmt.Errorf("privacy: record of unknown type %q", r.Type)
	case r.DeletedAt.IsZero():
		return errors.New("privacy: record without deleted_at")
	}
	return nil
}

func decodeRecord(b []byte) (Record, error) {
	var r Record
	if err := json.Unmarshal(b, &r); err != nil {
		return Record{}, fmt.Errorf("privacy: decode record: %w", err)
	}
	return r, r.validate()
}
