// Package apps holds Moat's tenants. An app has an id, a name and one or more
// API secrets; every API call authenticates as exactly one app, and every
// event and row carries that app's id.
package apps

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"regexp"
	"time"

	"gopkg.in/yaml.v3"
)

// App is one tenant.
type App struct {
	ID   string `yaml:"id" json:"id"`
	Name string `yaml:"name" json:"name"`
	// Secret is the API secret (HTTP Basic password). Secrets lists
	// additional secrets that are also accepted, for rotation.
	Secret  string   `yaml:"secret" json:"secret"`
	Secrets []string `yaml:"secrets,omitempty" json:"secrets,omitempty"`
	// Test marks a sandbox app: Castle test request tokens are honoured.
	Test bool `yaml:"test,omitempty" json:"test,omitempty"`
	// Webhooks are the app's notification endpoints.
	Webhooks []Webhook `yaml:"webhooks,omitempty" json:"webhooks,omitempty"`
	// AllowPrivateEndpoints lets webhook endpoints the app creates through
	// the API reach loopback and private addresses (refused by default).
	AllowPrivateEndpoints bool `yaml:"allow_private_endpoints,omitempty" json:"allow_private_endpoints,omitempty"`
	// Risk tunes the synchronous risk, filter and authenticate calls.
	Risk RiskSettings `yaml:"risk,omitempty" json:"risk,omitempty"`
	// Policy is the app's risk policy (ordered rules; see
	// docs/signals.md), kept as parsed YAML/JSON and compiled by the
	// scorer. Empty: Castle's bands.
	Policy map[string]any `yaml:"policy,omitempty" json:"policy,omitempty"`
}

// RiskSettings say how long a scored call waits for its decision and what
// it answers when the decision is late.
type RiskSettings struct {
	// TimeoutMS is the decision deadline in milliseconds (default 500,
	// below the official SDKs' 500-1500 ms client timeouts).
	TimeoutMS int `yaml:"timeout_ms,omitempty" json:"timeout_ms,omitempty"`
	// Failover is the answer on the deadline: "error" (503, so the SDK
	// applies its own failover; the default), or "allow", "challenge" or
	// "deny", returned with failover: true.
	Failover string `yaml:"failover,omitempty" json:"failover,omitempty"`
}

// DefaultRiskTimeoutMS is the default decision deadline.
const DefaultRiskTimeoutMS = 500

// Timeout returns the decision deadline.
func (r RiskSettings) Timeout() time.Duration {
	if r.TimeoutMS <= 0 {
		return DefaultRiskTimeoutMS * time.Millisecond
	}
	return time.Duration(r.TimeoutMS) * time.Millisecond
}

// FailoverAction returns the configured failover action ("" for error).
func (r RiskSettings) FailoverAction() string {
	if r.Failover == "error" {
		return ""
	}
	return r.Failover
}

// Webhook is one endpoint that receives an app's notifications.
type Webhook struct {
	ID  string `yaml:"id" json:"id"`
	URL string `yaml:"url" json:"url"`
	// Types are the notification types it wants (schemas.Notify*); empty
	// means all.
	Types []string `yaml:"types,omitempty" json:"types,omitempty"`
	// Secrets sign deliveries; the first signs X-Castle-Signature, and all
	// of them sign the timestamped signature header (two during rotation).
	// Empty means the app's API secret, as Castle does.
	Secrets []string `yaml:"secrets,omitempty" json:"secrets,omitempty"`
	// AllowPrivate lets deliveries reach loopback and private addresses
	// (refused by default).
	AllowPrivate bool `yaml:"allow_private,omitempty" json:"allow_private,omitempty"`
}

// String keeps secrets out of logs and error messages.
func (a App) String() string { return fmt.Sprintf("app(%s)", a.ID) }

// File is the apps file format (YAML or JSON).
type File struct {
	Apps []App `yaml:"apps" json:"apps"`
}

// Registry authenticates API secrets. It is immutable and safe for
// concurrent use.
type Registry struct {
	apps    []App
	byID    map[string]int
	digests []digest
}

type digest struct {
	sum [sha256.Size]byte
	app int
}

var idPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

// MinSecretLen is the shortest API secret accepted (Castle's are 32 chars).
const MinSecretLen = 16

// New validates apps and builds a registry.
func New(list []App) (*Registry, error) {
	if len(list) == 0 {
		return nil, errors.New("apps: no apps configured")
	}
	r := &Registry{byID: make(map[string]int, len(list))}
	seen := map[[sha256.Size]byte]string{}
	for i, a := range list {
		if !idPattern.MatchString(a.ID) {
			return nil, fmt.Errorf("apps: app %d: id %q must be 1-64 letters, digits, '_', '.', '-'", i, a.ID)
		}
		if _, dup := r.byID[a.ID]; dup {
			return nil, fmt.Errorf("apps: duplicate app id %q", a.ID)
		}
		secrets := append([]string{a.Secret}, a.Secrets...)
		for _, s := range secrets {
			if len(s) < MinSecretLen {
				return nil, fmt.Errorf("apps: app %q: every secret must be at least %d characters", a.ID, MinSecretLen)
			}
			sum := sha256.Sum256([]byte(s))
			if other, dup := seen[sum]; dup {
				return nil, fmt.Errorf("apps: apps %q and %q share a secret", other, a.ID)
			}
			seen[sum] = a.ID
			r.digests = append(r.digests, digest{sum: sum, app: i})
		}
		switch a.Risk.Failover {
		case "", "error", "allow", "challenge", "deny":
		default:
			return nil, fmt.Errorf("apps: app %q: risk.failover must be error, allow, challenge or deny", a.ID)
		}
		if a.Risk.TimeoutMS < 0 || a.Risk.TimeoutMS > 30_000 {
			return nil, fmt.Errorf("apps: app %q: risk.timeout_ms must be within 0..30000", a.ID)
		}
		r.byID[a.ID] = i
		r.apps = append(r.apps, a)
	}
	return r, nil
}

// Load reads an apps file (YAML or JSON; JSON is valid YAML).
func Load(path string) (*Registry, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("apps: read %s: %w", path, err)
	}
	var f File
	if err := yaml.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("apps: parse %s: %w", path, err)
	}
	r, err := New(f.Apps)
	if err != nil {
		return nil, fmt.Errorf("apps: %s: %w", path, err)
	}
	return r, nil
}

// Authenticate returns the app whose secret is secret. It compares the
// SHA-256 digest of secret with every configured secret's digest in
// constant time and always looks at all of them, so neither the result nor
// the position of a match leaks through timing.
func (r *Registry) Authenticate(secret string) (App, bool) {
	sum := sha256.Sum256([]byte(secret))
	found := -1
	for _, d := range r.digests {
		if subtle.ConstantTimeCompare(sum[:], d.sum[:]) == 1 {
			found = d.app
		}
	}
	if found < 0 || secret == "" {
		return App{}, false
	}
	return r.apps[found], true
}

// Get returns the app with the given id.
func (r *Registry) Get(id string) (App, bool) {
	i, ok := r.byID[id]
	if !ok {
		return App{}, false
	}
	return r.apps[i], true
}

// All returns every app, in configuration order.
func (r *Registry) All() []App { return append([]App(nil), r.apps...) }

// NewSecret returns a random 32-character API secret (128 bits of entropy).
func NewSecret() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("apps: generate secret: %w", err)
	}
	return hex.EncodeToString(b), nil
}
