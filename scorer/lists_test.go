package scorer_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/moat-dev/moat/internal/lists"
	"github.com/moat-dev/moat/schemas"
	"github.com/moat-dev/moat/scorer"
	"github.com/moat-dev/moat/scorer/risk"
)

// TestDecideListConditions: a policy's list conditions are looked up in
// the lists index with the event's received_at as the clock, decide the
// action, and the matched items are recorded in the decision.
func TestDecideListConditions(t *testing.T) {
	idx := lists.NewIndex()
	at := time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)
	expires := at.Add(time.Hour)
	apply := func(key []byte, rec schemas.ListRecord) {
		b, _ := json.Marshal(rec)
		if err := idx.Apply(key, b); err != nil {
			t.Fatal(err)
		}
	}
	apply(schemas.ListKey("app", "blocked"), schemas.ListRecord{V: 1, AppID: "app", List: &schemas.List{ID: "blocked", PrimaryField: schemas.ListFieldIPValue, CreatedAt: at}})
	apply(schemas.ListItemKey("app", "blocked", "i1"), schemas.ListRecord{V: 1, AppID: "app",
		Item: &schemas.ListItem{ID: "i1", ListID: "blocked", PrimaryValue: "192.0.2.0/24", CreatedAt: at, AutoArchivesAt: &expires}})
	apply(schemas.ListKey("app", "vip"), schemas.ListRecord{V: 1, AppID: "app", List: &schemas.List{ID: "vip", PrimaryField: schemas.ListFieldUserEmail, CreatedAt: at}})
	apply(schemas.ListItemKey("app", "vip", "i2"), schemas.ListRecord{V: 1, AppID: "app",
		Item: &schemas.ListItem{ID: "i2", ListID: "vip", PrimaryValue: "boss@example.com", CreatedAt: at}})

	pol := risk.NewPolicy("p", "P", risk.ActionAllow,
		risk.Rule{ID: "blocked", Name: "Blocked networks", Action: risk.ActionDeny, Hard: true, InList: []risk.ListCond{{ListID: "blocked", Field: schemas.ListFieldIPValue}}},
		risk.Rule{ID: "vip", Name: "VIPs", Action: risk.ActionChallenge, InList: []risk.ListCond{{ListID: "vip"}}},
	)
	d := newDeciderWith(t, scorer.Enrichment{}, map[string]*risk.Policy{"app": pol})
	d.SetLists(idx)
	decide := func(ip, email string, when time.Time) schemas.Decision {
		ev := event(1)
		ev.Kind, ev.Context.IP, ev.User.Email, ev.ReceivedAt = schemas.KindRisk, ip, email, when
		dec, _ := d.Decide(&ev, &scorer.UserState{})
		return dec
	}
	dec := decide("192.0.2.9", "Boss@Example.com", at)
	if dec.Action != "deny" || dec.Policy.Name != "Blocked networks" || len(dec.Lists) != 2 ||
		dec.Lists[0] != (schemas.ListMatch{ListID: "blocked", ItemID: "i1", Field: schemas.ListFieldIPValue}) ||
		dec.Lists[1] != (schemas.ListMatch{ListID: "vip", ItemID: "i2", Field: schemas.ListFieldUserEmail}) {
		t.Errorf("blocked + vip: %s %+v %+v", dec.Action, dec.Policy, dec.Lists)
	}
	// After the block archives itself (by the event's clock) only the VIP
	// rule matches.
	if dec := decide("192.0.2.9", "boss@example.com", expires); dec.Action != "challenge" || len(dec.Lists) != 1 {
		t.Errorf("after auto-archive: %s %+v", dec.Action, dec.Lists)
	}
	if dec := decide("198.51.100.1", "someone@example.com", at); dec.Action != "allow" || dec.Lists != nil {
		t.Errorf("on no list: %s %+v", dec.Action, dec.Lists)
	}
	// Without lists, no list condition holds.
	d.SetLists(nil)
	if dec := decide("192.0.2.9", "boss@example.com", at); dec.Action != "allow" {
		t.Errorf("without lists: %s", dec.Action)
	}
}
