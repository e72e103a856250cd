package risk

import (
	"strings"
	"testing"
	"time"

	"github.com/moat-dev/moat/schemas"
)

// fakeLists holds list -> field -> value -> item id.
type fakeLists map[string]map[string]map[string]string

func (f fakeLists) Match(appID, listID, field string, values schemas.ListValues, _ time.Time) (schemas.ListMatch, bool) {
	if appID != "app1" {
		return schemas.ListMatch{}, false
	}
	byField := f[listID]
	if field == "" {
		field = "default"
	}
	key := field
	if field == "default" {
		key = schemas.ListFieldIPValue
	}
	if id, ok := byField[field][values[key]]; ok {
		return schemas.ListMatch{ListID: listID, ItemID: id, Field: key}, true
	}
	return schemas.ListMatch{}, false
}

func TestPolicyListConditions(t *testing.T) {
	m := fakeLists{
		"blocked": {"default": {"203.0.113.7": "item-ip"}},
		"trusted": {schemas.ListFieldDeviceFingerprint: {"fp-good": "item-dev"}},
	}
	p := NewPolicy("p", "Lists", ActionChallenge,
		Rule{ID: "deny-blocked", Name: "Blocked IPs", Action: ActionDeny, Hard: true, InList: []ListCond{{ListID: "blocked"}}},
		Rule{ID: "allow-trusted", Name: "Trusted devices", Action: ActionAllow,
			InList: []ListCond{{ListID: "trusted", Field: schemas.ListFieldDeviceFingerprint}}},
		Rule{ID: "legacy", Name: "Legacy any_lists", Action: ActionDeny, AnyLists: []string{"blocked"}},
	)
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	if !p.UsesLists() || DefaultPolicy().UsesLists() {
		t.Error("UsesLists")
	}
	e := NewEngine(DefaultConfig())
	ev := func() *schemas.Event {
		return &schemas.Event{ID: "e", AppID: "app1", Type: "$login", Status: "$succeeded", User: schemas.User{ID: "u"},
			ReceivedAt: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	}
	for _, tt := range []struct {
		name, app, ip, fp string
		trusted           bool
		action, rule      string
		matches           []schemas.ListMatch
	}{
		{"blocked ip", "app1", "203.0.113.7", "fp-x", false, ActionDeny, "deny-blocked",
			[]schemas.ListMatch{{ListID: "blocked", ItemID: "item-ip", Field: schemas.ListFieldIPValue}}},
		{"trusted device", "app1", "198.51.100.1", "fp-good", false, ActionAllow, "allow-trusted",
			[]schemas.ListMatch{{ListID: "trusted", ItemID: "item-dev", Field: schemas.ListFieldDeviceFingerprint}}},
		{"both: the hard deny comes first", "app1", "203.0.113.7", "fp-good", false, ActionDeny, "deny-blocked",
			[]schemas.ListMatch{{ListID: "blocked", ItemID: "item-ip", Field: schemas.ListFieldIPValue},
				{ListID: "trusted", ItemID: "item-dev", Field: schemas.ListFieldDeviceFingerprint}}},
		{"approved device, blocked ip: hard rule applies", "app1", "203.0.113.7", "fp-x", true, ActionDeny, "deny-blocked",
			[]schemas.ListMatch{{ListID: "blocked", ItemID: "item-ip", Field: schemas.ListFieldIPValue}}},
		{"on no list", "app1", "198.51.100.1", "fp-x", false, ActionChallenge, "", nil},
		{"another app's lookup", "app2", "203.0.113.7", "fp-good", false, ActionChallenge, "", nil},
	} {
		values := schemas.ListValues{schemas.ListFieldIPValue: tt.ip, schemas.ListFieldDeviceFingerprint: tt.fp}
		lists, matches := p.ListMatches(m, tt.app, values, time.Time{})
		if len(matches) != len(tt.matches) {
			t.Errorf("%s: matches %v, want %v", tt.name, matches, tt.matches)
		}
		for i := range matches {
			if i < len(tt.matches) && matches[i] != tt.matches[i] {
				t.Errorf("%s: match %d %+v, want %+v", tt.name, i, matches[i], tt.matches[i])
			}
		}
		in := Input{Event: ev(), Policy: p, Lists: lists, Trusted: tt.trusted}
		in.Event.AppID = tt.app
		var st UserState
		a := e.Assess(&st, in)
		if a.Policy.Action != tt.action || a.Policy.RuleID != tt.rule {
			t.Errorf("%s: %s by %q (lists %v), want %s by %q", tt.name, a.Policy.Action, a.Policy.RuleID, lists, tt.action, tt.rule)
		}
	}
}

func TestPolicyListValidation(t *testing.T) {
	for _, tt := range []struct {
		rule Rule
		err  string
	}{
		{Rule{Action: ActionDeny, InList: []ListCond{{Field: schemas.ListFieldIPValue}}}, "needs a list_id"},
		{Rule{Action: ActionDeny, InList: []ListCond{{ListID: "l", Field: "ip.city"}}}, "unknown field"},
		{Rule{Action: ActionDeny, AnyLists: []string{""}}, "empty list id"},
	} {
		err := NewPolicy("p", "P", "", tt.rule).Validate()
		if err == nil || !strings.Contains(err.Error(), tt.err) {
			t.Errorf("%+v: %v, want %q", tt.rule, err, tt.err)
		}
	}
	// A list condition is part of the content: it changes the revision.
	a := NewPolicy("p", "P", "", Rule{ID: "r", Action: ActionDeny, InList: []ListCond{{ListID: "l1"}}})
	b := NewPolicy("p", "P", "", Rule{ID: "r", Action: ActionDeny, InList: []ListCond{{ListID: "l2"}}})
	if a.Revision() == b.Revision() {
		t.Error("in_list does not change the revision")
	}
}
