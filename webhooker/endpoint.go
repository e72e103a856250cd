package webhooker

import (
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/moat-dev/moat/internal/apps"
)

// endpoint is one app's webhook with its health. Its fields other than the
// health state are immutable. The secrets and the full URL (whose path or
// query may hold a token) are never logged: logs name the app, the
// endpoint id and the host.
type endpoint struct {
	appID   string
	id      string
	url     string
	host    string
	urlErr  error
	types   map[string]bool // nil: every type
	secrets []string
	client  *http.Client
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
		appID:     app.ID,
		id:        h.ID,
		url:       h.URL,
		client:    strict,
		sem:       make(chan struct{}, cfg.MaxConcurrencyPerEndpoint),
		threshold: cfg.BreakerThreshold,
		cooldown:  cfg.BreakerCooldown,
	}
	if h.AllowPrivate {
		e.client = private
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
		e.urlErr = fmt.Errorf("webhooker: endpoint %s/%s: invalid url", app.ID, h.ID)
	case u.Scheme != "http" && u.Scheme != "https":
		e.urlErr = fmt.Errorf("webhooker: endpoint %s/%s: url scheme must be http or https", app.ID, h.ID)
	case u.Host == "":
		e.urlErr = fmt.Errorf("webhooker: endpoint %s/%s: url has no host", app.ID, h.ID)
	default:
		e.host = u.Hostname()
	}
	return e
}

// wants reports whether the endpoint subscribed to notification type typ.
func (e *endpoint) wants(typ string) bool { return e.types == nil || e.types[typ] }

// admit decides whether an attempt may be made now. A closed circuit admits
// everything. An open one admits nothing until its cooldown ends; then one
// attempt, the probe, is admitted at a time (half-open) and its outcome
// closes or reopens the circuit. reason says why an attempt is refused.
func (e *endpoint) admit(now time.Time) (ok, probe bool, reason string) {
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
func (e *endpoint) report(now time.Time, probe, healthy bool, errMsg string, pause time.Duration) {
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
func (e *endpoint) release(probe bool) {
	if !probe {
		return
	}
	e.mu.Lock()
	e.probing = false
	e.mu.Unlock()
}
