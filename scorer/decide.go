package scorer

import (
	"strconv"
	"strings"

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
	dec := schemas.Decision{
		V:     schemas.DecisionVersion,
		Event: *ev,
		Device: schemas.Device{
			Token:       d.fp.Token(ev.AppID, ev.User.ID, fp),
			Fingerprint: fp,
			UserAgent:   ua,
		},
	}
	if scored(ev.Kind) {
		dec.Action = "allow"
		dec.Policy = &schemas.PolicyOutcome{Action: "allow", ID: DefaultPolicyID, Name: "Default", RevisionID: DefaultPolicyID}
		if ev.Options != nil && ev.Options.TestApp {
			applyTestToken(&dec, ev.Context.RequestToken)
		}
	}
	return dec
}

// DefaultPolicyID names the built-in policy.
const DefaultPolicyID = "moat-default"

// scored reports whether calls of kind get a policy decision.
func scored(k schemas.Kind) bool {
	return k == schemas.KindRisk || k == schemas.KindFilter || k == schemas.KindAuthenticate
}

// applyTestToken honours Castle's sandbox request tokens
// ("test|policy.action:deny|risk:0.9"): for test apps only, the token
// forces the action and the risk. Unknown parameters are ignored.
func applyTestToken(d *schemas.Decision, token string) {
	rest, ok := strings.CutPrefix(token, "test|")
	if !ok {
		return
	}
	for _, kv := range strings.Split(rest, "|") {
		k, v, _ := strings.Cut(kv, ":")
		switch k {
		case "policy.action":
			switch v {
			case "allow", "challenge", "deny":
				d.Action = v
				d.Policy = &schemas.PolicyOutcome{Action: v, ID: "test-token", Name: "Test token", RevisionID: "test-token"}
			}
		case "risk":
			if f, err := strconv.ParseFloat(v, 64); err == nil && f >= 0 && f <= 1 {
				d.Risk = f
				d.Scores.AccountTakeover = f
			}
		}
	}
}
