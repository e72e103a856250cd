// Package endpoints is the registry of webhook endpoints that apps manage
// through the API (POST /v1/webhooks/endpoints, ...), event-sourced like
// the rest of Moat.
//
// Every create, update and delete is a record on schemas.TopicEndpoints, a
// compacted topic keyed by app id and endpoint id (Key): a create or update
// carries the endpoint's whole new state (Record), a delete is a tombstone.
// Table materializes the topic: it reads it from the start into memory and
// keeps following it, so every role that needs endpoints (api, webhooker)
// rebuilds the same table after a restart. Manager writes the records and
// waits until its own table has applied them, so a read after a write
// shows the write.
//
// Signing secrets are generated server-side (NewSecret), handed to the
// client once, and stored only sealed: AES-256-GCM under the deployment's
// endpoints key (Cipher), bound to the app and endpoint. The topic holds
// the sealed value and a masked hint; a Table with the key decrypts them in
// memory for the webhooker. Secrets are never logged: Endpoint's String and
// LogValue leave them out.
//
// Endpoints from the apps file are not on the topic: they stay read-only
// configuration, merged with the table by the api and the webhooker.
package endpoints

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"
)

// RecordVersion is the version of Record written by this build;
// RecordSchema is its schemas.HeaderSchema value.
const (
	RecordVersion = 1
	RecordSchema  = "endpoint.v1"
)

// Endpoint is one API-managed webhook endpoint, as the table holds it.
type Endpoint struct {
	AppID       string
	ID          string
	URL         string
	Description string
	// Types are the notification types it wants; empty means all.
	Types   []string
	Enabled bool
	// CreatedAt and UpdatedAt are server times (UTC, milliseconds).
	CreatedAt, UpdatedAt time.Time
	// SecretHints are the masked active secrets, newest first (Hint).
	SecretHints []string
	// Secrets are the active signing secrets in plaintext, newest first
	// (the newest signs X-Castle-Signature, all sign X-Moat-Signature). They
	// are filled only by a Table that has the key; otherwise, or when a
	// secret does not open, Secrets is nil and SecretsErr says why.
	Secrets    []string `json:"-"`
	SecretsErr error    `json:"-"`

	// sealed are the secrets as stored, newest first.
	sealed []SealedSecret
}

// String names the endpoint without its URL or secrets.
func (e Endpoint) String() string { return fmt.Sprintf("endpoint(%s/%s)", e.AppID, e.ID) }

// LogValue keeps the URL and secrets out of structured logs.
func (e Endpoint) LogValue() slog.Value {
	return slog.GroupValue(slog.String("app", e.AppID), slog.String("id", e.ID))
}

// clone returns a deep copy, so callers cannot change the table.
func (e Endpoint) clone() Endpoint {
	e.Types = slices.Clone(e.Types)
	e.SecretHints = slices.Clone(e.SecretHints)
	e.Secrets = slices.Clone(e.Secrets)
	e.sealed = slices.Clone(e.sealed)
	return e
}

// Record is the value of a TopicEndpoints record: an endpoint's whole
// state. Fields are only added within a version; readers ignore unknown
// ones.
type Record struct {
	V           int            `json:"v"`
	AppID       string         `json:"app_id"`
	ID          string         `json:"id"`
	URL         string         `json:"url"`
	Description string         `json:"description,omitempty"`
	Types       []string       `json:"types,omitempty"`
	Enabled     bool           `json:"enabled"`
	Secrets     []SealedSecret `json:"secrets"`
	CreatedAt   time.Time      `json:"created_at"`
	UpdatedAt   time.Time      `json:"updated_at"`
}

// SealedSecret is one signing secret as stored: encrypted, with the id of
// the key that sealed it and a masked hint.
type SealedSecret struct {
	// KeyID is Cipher.KeyID of the key that sealed it.
	KeyID string `json:"kid"`
	// Sealed is base64url(nonce || AES-256-GCM ciphertext and tag).
	Sealed    string    `json:"sealed"`
	Hint      string    `json:"hint"`
	CreatedAt time.Time `json:"created_at"`
}

// Key returns the record key of an endpoint: app id, a NUL byte, endpoint
// id.
func Key(appID, endpointID string) []byte { return []byte(appID + "\x00" + endpointID) }

// splitKey is the inverse of Key.
func splitKey(k []byte) (appID, endpointID string, err error) {
	a, id, ok := strings.Cut(string(k), "\x00")
	if !ok || a == "" || id == "" {
		return "", "", errors.New("key is not <app id> NUL <endpoint id>")
	}
	return a, id, nil
}

// record returns e's state as a Record.
func (e *Endpoint) record() Record {
	return Record{
		V: RecordVersion, AppID: e.AppID, ID: e.ID, URL: e.URL, Description: e.Description,
		Types: e.Types, Enabled: e.Enabled, Secrets: e.sealed, CreatedAt: e.CreatedAt, UpdatedAt: e.UpdatedAt,
	}
}

// decode builds the endpoint of a record value with key (appID,
// endpointID), opening its secrets with c (nil: none are opened).
func decode(appID, endpointID string, value []byte, c *Cipher) (*Endpoint, error) {
	var r Record
	if err := json.Unmarshal(value, &r); err != nil {
		return nil, fmt.Errorf("decode: %w", err)
	}
	if r.AppID != appID || r.ID != endpointID {
		return nil, fmt.Errorf("value names %q/%q, key %q/%q", r.AppID, r.ID, appID, endpointID)
	}
	if r.URL == "" || len(r.Secrets) == 0 {
		return nil, errors.New("record without url or secrets")
	}
	e := &Endpoint{
		AppID: r.AppID, ID: r.ID, URL: r.URL, Description: r.Description, Types: r.Types,
		Enabled: r.Enabled, CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt, sealed: r.Secrets,
	}
	for _, s := range r.Secrets {
		e.SecretHints = append(e.SecretHints, s.Hint)
	}
	e.Secrets, e.SecretsErr = openAll(c, e)
	return e, nil
}

// openAll decrypts e's sealed secrets.
func openAll(c *Cipher, e *Endpoint) ([]string, error) {
	if c == nil {
		return nil, ErrNoKey
	}
	out := make([]string, 0, len(e.sealed))
	for _, s := range e.sealed {
		if s.KeyID != c.KeyID() {
			return nil, fmt.Errorf("%w (sealed under key %s, configured key is %s)", ErrWrongKey, s.KeyID, c.KeyID())
		}
		p, err := c.open(e.AppID, e.ID, s.Sealed)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}
