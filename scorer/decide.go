package scorer

import (
	"github.com/moat-dev/moat/internal/useragent"
	"github.com/moat-dev/moat/schemas"
	"github.com/moat-dev/moat/scorer/fingerprint"
)

// Decider turns events into decisions. It is a pure function of the event
// and its keys (no clock, no randomness, no map-order dependence), so
// replaying the log reproduces every decision. It is safe for concurrent use.
type Decider struct {
	ua *useragent.Parser
	fp *fingerprint.Hasher
}

// NewDecider returns a Decider.
func NewDecider(ua *useragent.Parser, fp *fingerprint.Hasher) *Decider {
	return &Decider{ua: ua, fp: fp}
}

// Decide derives the decision for one event.
func (d *Decider) Decide(ev *schemas.Event) schemas.Decision {
	raw, _ := ev.Context.Header("user-agent")
	if raw == "true" { // scrubbed by the SDK
		raw = ""
	}
	ua := d.ua.Parse(raw)
	fp := d.fp.Fingerprint(ev.AppID, fingerprint.AttributesOf(ev, ua))
	return schemas.Decision{
		V:     schemas.DecisionVersion,
		Event: *ev,
		Device: schemas.Device{
			Token:       d.fp.Token(ev.AppID, ev.User.ID, fp),
			Fingerprint: fp,
			UserAgent:   ua,
		},
	}
}
