package webhooker

import (
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"time"

	"github.com/moat-dev/moat/internal/apps"
	"github.com/moat-dev/moat/internal/endpoints"
)

// endpoint is one app's webhook with its health. Its fields other than the
// health state are immutable: a changed endpoint (through the API) is a new
// endpoint value, which keeps the health of the old one when its URL did
// not change. The secrets and the full URL (whose path or query may hold a
// token) are never logged: logs name the app, the endpoint id and the
// host.
type endpoint struct {
	appID   string
	id      string
	url     string
	host    string
	confErr error           // set: every delivery is dead-lettered with it
	types   map[string]bool // nil: every type
	secrets []string
	client  *http.Client
	private bool
	// enabled is false for an endpoint disabled through the API: new
	// notifications skip it and its pending retries are dead-lettered.
	enabled bool
	// managed is true for an endpoint of the registry (the API), false
	// for one of the apps file.
	managed bool

	*health
}

// health is an endpoint's circuit breaker and bound of requests in flight.
type health struct {
	// sem bounds the requests in flight to this endpoint.
	sem chan struct{}

	threshold int
	cooldown  time.Duration

	mu        sync.Mutex
	failures  int       // consecutive retryable failures
	openUntil time.Time // the circuit is open (deliveries deferred) until then
	probing   bool      // a probe is in flight while half-open
	lastErr   string
}

func endpointKey(appID, endpointID string) string { return appID + "\x00" + endpointID }

func newEndpoint(cfg Config, app apps.App, h apps.Webhook, strict, private *http.Client) *endpoint {
	e := &endpoint{
		appID:   app.ID,
		id:      h.ID,
		url:     h.URL,
		client:  strict,
		enabled: true,
		health: &health{
			sem:       make(chan struct{}, cfg.MaxConcurrencyPerEndpoint),
			threshold: cfg.BreakerThreshold,
			cooldown:  cfg.BreakerCooldown,
		},
	}
	if h.AllowPrivate {
		e.client, e.private = private, true
	}
	e.secrets = h.Secrets
	if len(e.secrets) == 0 {
		e.secrets = []string{app.Secret}
	}
	if len(h.Types) > 0 {
		e.types = make(map[string]bool, len(h.Types))
		for _, t := range h.Types {
			e.types[t] = true
		}
	}
	u, err := url.Parse(h.URL)
	switch {
	case err != nil:
		e.confErr = fmt.Errorf("webhooker: endpoint %s/%s: invalid url", app.ID, h.ID)
	case u.Scheme != "http" && u.Scheme != "https":
		e.confErr = fmt.Errorf("webhooker: endpoint %s/%s: url scheme must be http or https", app.ID, h.ID)
	case u.Host == "":
		e.confErr = fmt.Errorf("webhooker: endpoint %s/%s: url has no host", app.ID, h.ID)
	default:
		e.host = u.Hostname()
	}
	return e
}

// newManagedEndpoint returns the endpoint of an API-managed endpoint of
// app. Its deliveries may reach private addresses when the app allows
// private endpoints. prev is the endpoint it replaces (nil: none): its
// health carries over when the URL and address policy are unchanged.
func newManagedEndpoint(cfg Config, app apps.App, m endpoints.Endpoint, strict, private *http.Client, prev *endpoint) *endpoint {
	e := newEndpoint(cfg, app, apps.Webhook{
		ID: m.ID, URL: m.URL, Types: m.Types, Secrets: m.Secrets, AllowPrivate: app.AllowPrivateEndpoints,
	}, strict, private)
	e.managed, e.enabled = true, m.Enabled
	if len(m.Secrets) == 0 {
		// Never fall back to the app's API secret: the receiver expects
		// the endpoint's own.
		e.secrets = nil
		err := m.SecretsErr
		if err == nil {
			err = endpoints.ErrNoKey
		}
		if e.confErr == nil {
			e.confErr = fmt.Errorf("webhooker: endpoint %s/%s: signing secrets unavailable: %w", app.ID, m.ID, err)
		}
	}
	if prev != nil && prev.url == e.url && prev.private == e.private {
		e.health = prev.health
	}
	return e
}

// sameAs reports whether e and o deliver identically (same target, secrets,
// subscription and state), so that o can be kept in place of e.
func (e *endpoint) sameAs(o *endpoint) bool {
	return e.appID == o.appID && e.id == o.id && e.url == o.url && e.private == o.private &&
		e.enabled == o.enabled && e.managed == o.managed && errString(e.confErr) == errString(o.confErr) &&
		slices.Equal(e.secrets, o.secrets) && maps.Equal(e.types, o.types)
}

// wants reports whether the endpoint subscribed to notification type typ.
func (e *endpoint) wants(typ string) bool { return e.types == nil || e.types[typ] }

// admit decides whether an attempt may be made now. A closed circuit admits
// everything. An open one admits nothing until its cooldown ends; then one
// attempt, the probe, is admitted at a time (half-open) and its outcome
// closes or reopens the circuit. reason says why an attempt is refused.
func (e *health) admit(now time.Time) (ok, probe bool, reason string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	switch {
	case e.failures < e.threshold && !now.Before(e.openUntil):
		return true, false, ""
	case now.Before(e.openUntil):
		return false, false, fmt.Sprintf("endpoint unhealthy (circuit open for %s after %d consecutive failures; last: %s)",
			e.openUntil.Sub(now).Round(time.Millisecond), e.failures, e.lastErr)
	case e.probing:
		return false, false, fmt.Sprintf("endpoint unhealthy (probe in flight after %d consecutive failures; last: %s)", e.failures, e.lastErr)
	default:
		e.probing = true
		return true, true, ""
	}
}

// report records the outcome of an admitted attempt. healthy is true when
// the endpoint answered with anything but a retryable failure; pause
// (Retry-After) keeps the circuit open at least that long.
func (e *health) report(now time.Time, probe, healthy bool, errMsg string, pause time.Duration) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if probe {
		e.probing = false
	}
	if healthy {
		e.failures, e.openUntil, e.lastErr = 0, time.Time{}, ""
		return
	}
	e.failures++
	e.lastErr = errMsg
	if e.failures >= e.threshold {
		e.openUntil = now.Add(e.cooldown)
	}
	if pause > 0 {
		e.failures = max(e.failures, e.threshold)
		if until := now.Add(pause); until.After(e.openUntil) {
			e.openUntil = until
		}
	}
}

// release ends a probe that was admitted but never sent.
func (e *health) release(probe bool) {
	if !probe {
		return
	}
	e.mu.Lock()
	e.probing = false
	e.mu.Unlock()
}
