package scorer_test

import (
	"encoding/json"
	"testing"

	"github.com/moat-dev/moat/schemas"
	"github.com/moat-dev/moat/scorer"
	"github.com/moat-dev/moat/scorer/risk"
)

// TestPolicyMatchedNotification: a rule with notify raises $policy.matched
// on every decision it makes (not once per device like the security
// webhooks), carrying the rule, the scores and the signals; rules without
// notify raise nothing of the kind, and track events are never policy
// decisions.
func TestPolicyMatchedNotification(t *testing.T) {
	pol := risk.NewPolicy("p", "P", risk.ActionAllow,
		risk.Rule{ID: "watch-login", Name: "Watch logins", Action: risk.ActionAllow, Notify: true, Types: []string{"$login"}},
		risk.Rule{ID: "quiet", Name: "Quiet", Action: risk.ActionAllow, Types: []string{"$registration"}},
	)
	d := newDeciderWith(t, scorer.Enrichment{}, map[string]*risk.Policy{"app": pol})
	st := &scorer.UserState{}
	matched := func(kind schemas.Kind, typ string, seq int) []schemas.Notification {
		ev := event(seq)
		ev.AppID, ev.Kind, ev.Type, ev.Status = "app", kind, typ, "$succeeded"
		_, notes := d.Decide(&ev, st)
		var out []schemas.Notification
		for _, n := range notes {
			if n.Type == schemas.NotifyPolicyMatched {
				out = append(out, n)
			}
		}
		return out
	}
	for seq := 1; seq <= 2; seq++ {
		notes := matched(schemas.KindRisk, "$login", seq)
		if len(notes) != 1 {
			t.Fatalf("login %d: %d $policy.matched, want 1", seq, len(notes))
		}
		var data struct {
			RuleID string `json:"rule_id"`
			UserID string `json:"user_id"`
			Policy struct {
				Action, ID, Name string
			} `json:"policy"`
			Scores map[string]struct {
				Score *float64 `json:"score"`
			} `json:"scores"`
			Signals map[string]any `json:"signals"`
			Event   struct{ ID, Type string }
		}
		if err := json.Unmarshal(notes[0].Data, &data); err != nil {
			t.Fatal(err)
		}
		if data.RuleID != "watch-login" || data.Policy.Name != "Watch logins" || data.Policy.Action != "allow" ||
			data.Scores["account_takeover"].Score == nil || data.Signals == nil || data.Event.Type != "$login" || data.Event.ID == "" {
			t.Errorf("login %d: data %s", seq, notes[0].Data)
		}
	}
	if notes := matched(schemas.KindRisk, "$registration", 3); len(notes) != 0 {
		t.Errorf("rule without notify raised %d $policy.matched", len(notes))
	}
	if notes := matched(schemas.KindTrack, "$login", 4); len(notes) != 0 {
		t.Errorf("track event raised %d $policy.matched", len(notes))
	}
}
