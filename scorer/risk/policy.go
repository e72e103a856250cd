package risk

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/moat-dev/moat/schemas"
)

// ScoreCond compares one score with a value: Score is risk,
// account_takeover, account_abuse or bot; Op is >=, >, <= or <.
type ScoreCond struct {
	Score string  `json:"score"`
	Op    string  `json:"op"`
	Value float64 `json:"value"`
}

// Rule is one ordered rule of a policy. Every non-empty condition must
// hold (an empty rule matches everything); within a list, any element
// matches (except AllSignals and Scores, where all must).
type Rule struct {
	ID     string `json:"id"`
	Name   string `json:"name"`
	Action string `json:"action"` // allow, challenge or deny
	// Hard rules also apply to trusted (approved) devices; other rules are
	// skipped for them unless their action is allow.
	Hard bool `json:"hard,omitempty"`
	// Notify raises $policy.matched on the incidents topic every time the
	// rule decides an event (Castle's per-policy webhooks).
	Notify bool `json:"notify,omitempty"`

	Types      []string    `json:"types,omitempty"`    // event types ($login, ...)
	Statuses   []string    `json:"statuses,omitempty"` // $succeeded, $failed, ...
	Scores     []ScoreCond `json:"scores,omitempty"`
	AnySignals []string    `json:"any_signals,omitempty"`
	AllSignals []string    `json:"all_signals,omitempty"`
	NoSignals  []string    `json:"no_signals,omitempty"` // none of these fired
	AnyLists   []string    `json:"any_lists,omitempty"`  // list ids (Input.Lists)
	// InList holds when any of its conditions does: the event's value of
	// the condition's field is on the list.
	InList []ListCond `json:"in_list,omitempty"`
}

// ListCond tests whether one of the event's values is on one of the app's
// lists (an active item of list ListID holds it).
type ListCond struct {
	ListID string `json:"list_id"`
	// Field is the event value looked up (schemas.ListField*: ip.value,
	// user.email, device.fingerprint, ...). Empty: the list's own
	// primary_field.
	Field string `json:"field,omitempty"`
}

// key is the entry of Input.Lists that says the condition holds: the list
// id when the condition looks up the list's own field (so any_lists and
// in_list share it), else list id, "#" and field.
func (c ListCond) key() string {
	if c.Field == "" {
		return c.ListID
	}
	return c.ListID + "#" + c.Field
}

// Membership looks an event's values up in an app's lists. The scorer
// passes its in-memory copy of the lists topic (internal/lists), so that
// this package stays free of I/O. Implementations must be safe for
// concurrent use.
type Membership interface {
	// Match returns the active item of the app's list listID that values
	// match: the value of field (the list's primary_field when field is
	// empty) equals the item's primary value (or lies in its CIDR range),
	// and the item's secondary value, if any, equals the value of the
	// list's secondary_field. at decides which items have archived
	// themselves. ok is false when no item matches or the list does not
	// exist.
	Match(appID, listID, field string, values schemas.ListValues, at time.Time) (m schemas.ListMatch, ok bool)
}

// UsesLists reports whether any rule of p has a list condition.
func (p *Policy) UsesLists() bool {
	for i := range p.Rules {
		if len(p.Rules[i].AnyLists) > 0 || len(p.Rules[i].InList) > 0 {
			return true
		}
	}
	return false
}

// ListMatches evaluates every list condition of p's rules (any_lists and
// in_list) against m, as of at. It returns the Input.Lists entries of the
// conditions that hold (sorted) and the items that matched (sorted,
// deduplicated), which the scorer records in the decision.
func (p *Policy) ListMatches(m Membership, appID string, values schemas.ListValues, at time.Time) (lists []string, matches []schemas.ListMatch) {
	seen := map[string]bool{}
	test := func(c ListCond) {
		k := c.key()
		if c.ListID == "" || seen[k] {
			return
		}
		seen[k] = true
		if lm, ok := m.Match(appID, c.ListID, c.Field, values, at); ok {
			lists = append(lists, k)
			matches = append(matches, lm)
		}
	}
	for i := range p.Rules {
		for _, l := range p.Rules[i].AnyLists {
			test(ListCond{ListID: l})
		}
		for _, c := range p.Rules[i].InList {
			test(c)
		}
	}
	sort.Strings(lists)
	sort.Slice(matches, func(i, j int) bool {
		a, b := matches[i], matches[j]
		if a.ListID != b.ListID {
			return a.ListID < b.ListID
		}
		if a.ItemID != b.ItemID {
			return a.ItemID < b.ItemID
		}
		return a.Field < b.Field
	})
	out := matches[:0]
	for i, lm := range matches {
		if i == 0 || lm != matches[i-1] {
			out = append(out, lm)
		}
	}
	return lists, out
}

// Policy is an app's ordered rules: the first matching rule gives the
// action; none matching gives Default (allow when empty).
//
// The revision id is derived from the content (a SHA-256 of its canonical
// JSON), so a changed policy gets a new revision deterministically. Build
// policies with NewPolicy, which computes the revision once; a Policy
// literal works too but hashes on every Evaluate. Do not mutate a policy
// after NewPolicy: build a new one.
type Policy struct {
	ID      string `json:"id"`
	Name    string `json:"name"`
	Default string `json:"default,omitempty"`
	Rules   []Rule `json:"rules"`

	rev string
}

// PolicyResult is the policy outcome of one assessment.
type PolicyResult struct {
	Action     string `json:"action"`
	ID         string `json:"id"`
	Name       string `json:"name"`
	RevisionID string `json:"revision_id"`
	// RuleID and RuleName name the matching rule ("default" when none).
	RuleID   string `json:"rule_id,omitempty"`
	RuleName string `json:"rule_name"`
	// Notify is the matching rule's Notify.
	Notify bool `json:"-"`
}

// NewPolicy returns a policy with its revision computed.
func NewPolicy(id, name, def string, rules ...Rule) *Policy {
	p := &Policy{ID: id, Name: name, Default: def, Rules: rules}
	p.rev = p.computeRevision()
	return p
}

// DefaultPolicy follows Castle's bands: risk >= 0.9 deny, >= 0.6
// challenge, otherwise allow.
func DefaultPolicy() *Policy {
	return NewPolicy("moat-default", "Default risk bands", ActionAllow,
		Rule{ID: "deny-threats", Name: "Deny threats", Action: ActionDeny,
			Scores: []ScoreCond{{Score: ScoreRisk, Op: ">=", Value: 0.9}}},
		Rule{ID: "challenge-anomalies", Name: "Challenge anomalies", Action: ActionChallenge,
			Scores: []ScoreCond{{Score: ScoreRisk, Op: ">=", Value: 0.6}}},
	)
}

// Revision is the content-derived revision id, UUID-shaped.
func (p *Policy) Revision() string {
	if p.rev != "" {
		return p.rev
	}
	return p.computeRevision()
}

func (p *Policy) computeRevision() string {
	b, _ := json.Marshal(struct {
		ID      string `json:"id"`
		Name    string `json:"name"`
		Default string `json:"default"`
		Rules   []Rule `json:"rules"`
	}{p.ID, p.Name, p.defaultAction(), p.Rules})
	s := sha256.Sum256(b)
	h := hex.EncodeToString(s[:16])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

func (p *Policy) defaultAction() string {
	if p.Default == "" {
		return ActionAllow
	}
	return p.Default
}

func validAction(a string) bool {
	return a == ActionAllow || a == ActionChallenge || a == ActionDeny
}

// Validate checks the actions, score names, operators and list conditions.
func (p *Policy) Validate() error {
	if !validAction(p.defaultAction()) {
		return fmt.Errorf("risk: policy %q: invalid default action %q", p.ID, p.Default)
	}
	for i, r := range p.Rules {
		if !validAction(r.Action) {
			return fmt.Errorf("risk: policy %q rule %d: invalid action %q", p.ID, i, r.Action)
		}
		for _, l := range r.AnyLists {
			if l == "" {
				return fmt.Errorf("risk: policy %q rule %d: empty list id in any_lists", p.ID, i)
			}
		}
		for _, c := range r.InList {
			if c.ListID == "" {
				return fmt.Errorf("risk: policy %q rule %d: in_list needs a list_id", p.ID, i)
			}
			if c.Field != "" && !schemas.KnownListField(c.Field) {
				return fmt.Errorf("risk: policy %q rule %d: in_list: unknown field %q", p.ID, i, c.Field)
			}
		}
		for _, c := range r.Scores {
			switch c.Score {
			case ScoreRisk, ScoreAccountTakeover, ScoreAccountAbuse, ScoreBot:
			default:
				return fmt.Errorf("risk: policy %q rule %d: unknown score %q", p.ID, i, c.Score)
			}
			switch c.Op {
			case ">=", ">", "<=", "<":
			default:
				return fmt.Errorf("risk: policy %q rule %d: unknown op %q", p.ID, i, c.Op)
			}
		}
	}
	return nil
}

func scoreOf(a *Assessment, name string) float64 {
	switch name {
	case ScoreRisk:
		return a.Risk
	case ScoreAccountTakeover:
		return a.Scores.AccountTakeover
	case ScoreAccountAbuse:
		return a.Scores.AccountAbuse
	case ScoreBot:
		return a.Scores.Bot
	}
	return 0
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func (r *Rule) matches(a *Assessment, ev *schemas.Event) bool {
	if len(r.Types) > 0 && (ev == nil || !contains(r.Types, ev.Type)) {
		return false
	}
	if len(r.Statuses) > 0 && (ev == nil || !contains(r.Statuses, ev.Status)) {
		return false
	}
	for _, c := range r.Scores {
		s := scoreOf(a, c.Score)
		ok := false
		switch c.Op {
		case ">=":
			ok = s >= c.Value
		case ">":
			ok = s > c.Value
		case "<=":
			ok = s <= c.Value
		case "<":
			ok = s < c.Value
		}
		if !ok {
			return false
		}
	}
	if len(r.AnySignals) > 0 {
		ok := false
		for _, s := range r.AnySignals {
			if a.Has(s) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	for _, s := range r.AllSignals {
		if !a.Has(s) {
			return false
		}
	}
	for _, s := range r.NoSignals {
		if a.Has(s) {
			return false
		}
	}
	if len(r.AnyLists) > 0 {
		ok := false
		for _, l := range r.AnyLists {
			if contains(a.Lists, l) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	if len(r.InList) > 0 {
		ok := false
		for _, c := range r.InList {
			if contains(a.Lists, c.key()) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

// Evaluate returns the action of the first matching rule (or the default)
// for an assessment of ev. For a trusted device (a.Feedback == "trusted")
// only hard rules and allow rules apply.
func (p *Policy) Evaluate(a Assessment, ev *schemas.Event) PolicyResult {
	res := PolicyResult{ID: p.ID, Name: p.Name, RevisionID: p.Revision(), Action: p.defaultAction(), RuleName: "default"}
	trusted := a.Feedback == "trusted"
	for i := range p.Rules {
		r := &p.Rules[i]
		if trusted && !r.Hard && r.Action != ActionAllow {
			continue
		}
		if r.matches(&a, ev) {
			res.Action, res.RuleID, res.RuleName, res.Notify = r.Action, r.ID, r.Name, r.Notify
			return res
		}
	}
	if trusted { // no rule matched: a trusted device is allowed
		res.Action = ActionAllow
	}
	return res
}
