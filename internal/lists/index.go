// Package lists keeps the apps' lists (Castle's Lists API) as an
// event-sourced table: every change of a list or a list item is a record
// on the compacted topic moat.lists.v1 (schemas.ListRecord, the entity's
// whole new state; a tombstone deletes it), written in a Kafka transaction
// together with its $list_item.* notification (Writer). A Follower reads
// the topic from the start into an in-memory, per-app Index and keeps
// following it, like a Kafka Streams GlobalKTable; every api and scorer
// instance runs one. Service serves the API's commands and reads from it,
// waiting until the index holds its own writes (read-your-writes) and the
// topic's committed end (so a read after a write on another instance sees
// it too). Index implements risk.Membership for policy list conditions.
package lists

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/moat-dev/moat/schemas"
)

// Index is the in-memory state of the lists topic: each app's lists and
// their items, with the items indexed by primary value. It is safe for
// concurrent use; reads return copies.
type Index struct {
	mu   sync.RWMutex
	apps map[string]map[string]*listState
}

type listState struct {
	list  schemas.List
	items map[string]*schemas.ListItem
	// byPrimary indexes every item (archived ones included) by its
	// normalized primary value.
	byPrimary map[string][]*schemas.ListItem
	// prefixes counts the CIDR prefix lengths used by the items of an IP
	// list, so a lookup tries only those.
	prefixes map[prefixLen]int
}

type prefixLen struct {
	v6   bool
	bits int
}

// NewIndex returns an empty index.
func NewIndex() *Index { return &Index{apps: map[string]map[string]*listState{}} }

// Apply folds one record of the lists topic into the index: a list or an
// item upserted with its new state, or deleted by a tombstone (empty
// value). An item of a list the index does not hold is ignored (its list
// was deleted). Applying a record twice is harmless.
func (x *Index) Apply(key, value []byte) error {
	appID, listID, itemID, ok := schemas.ParseListKey(key)
	if !ok {
		return fmt.Errorf("lists: malformed record key %q", key)
	}
	var rec schemas.ListRecord
	if len(value) > 0 {
		if err := json.Unmarshal(value, &rec); err != nil {
			return fmt.Errorf("lists: decode record: %w", err)
		}
		switch {
		case rec.AppID != appID:
			return fmt.Errorf("lists: record of app %q under key of app %q", rec.AppID, appID)
		case itemID == "" && (rec.List == nil || rec.List.ID != listID):
			return errors.New("lists: list key without its list")
		case itemID != "" && (rec.Item == nil || rec.Item.ID != itemID || rec.Item.ListID != listID):
			return errors.New("lists: item key without its item")
		}
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	lists := x.apps[appID]
	switch {
	case itemID == "" && len(value) == 0:
		delete(lists, listID)
		if len(lists) == 0 {
			delete(x.apps, appID)
		}
	case itemID == "":
		if lists == nil {
			lists = map[string]*listState{}
			x.apps[appID] = lists
		}
		if ls, ok := lists[listID]; ok {
			ls.list = *rec.List
		} else {
			lists[listID] = &listState{list: *rec.List, items: map[string]*schemas.ListItem{},
				byPrimary: map[string][]*schemas.ListItem{}, prefixes: map[prefixLen]int{}}
		}
	default:
		ls := lists[listID]
		if ls == nil {
			return nil
		}
		if old, ok := ls.items[itemID]; ok {
			ls.unindex(old)
			delete(ls.items, itemID)
		}
		if len(value) > 0 {
			it := *rec.Item
			ls.items[itemID] = &it
			ls.index(&it)
		}
	}
	return nil
}

func cidrLen(v string) (prefixLen, bool) {
	if !strings.Contains(v, "/") {
		return prefixLen{}, false
	}
	p, err := netip.ParsePrefix(v)
	if err != nil {
		return prefixLen{}, false
	}
	return prefixLen{v6: p.Addr().Is6(), bits: p.Bits()}, true
}

func (ls *listState) index(it *schemas.ListItem) {
	ls.byPrimary[it.PrimaryValue] = append(ls.byPrimary[it.PrimaryValue], it)
	if pl, ok := cidrLen(it.PrimaryValue); ok && ipField(ls.list.PrimaryField) {
		ls.prefixes[pl]++
	}
}

func (ls *listState) unindex(it *schemas.ListItem) {
	s := ls.byPrimary[it.PrimaryValue]
	for i, x := range s {
		if x == it {
			s = append(s[:i], s[i+1:]...)
			break
		}
	}
	if len(s) == 0 {
		delete(ls.byPrimary, it.PrimaryValue)
	} else {
		ls.byPrimary[it.PrimaryValue] = s
	}
	if pl, ok := cidrLen(it.PrimaryValue); ok && ipField(ls.list.PrimaryField) {
		if ls.prefixes[pl]--; ls.prefixes[pl] <= 0 {
			delete(ls.prefixes, pl)
		}
	}
}

// earlier orders items by creation, then id (the order Match prefers and
// queries sort by).
func earlier(a, b *schemas.ListItem) bool {
	if !a.CreatedAt.Equal(b.CreatedAt) {
		return a.CreatedAt.Before(b.CreatedAt)
	}
	return a.ID < b.ID
}

// Lists returns the app's lists, oldest first.
func (x *Index) Lists(appID string) []schemas.List {
	x.mu.RLock()
	defer x.mu.RUnlock()
	out := make([]schemas.List, 0, len(x.apps[appID]))
	for _, ls := range x.apps[appID] {
		out = append(out, ls.list)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].CreatedAt.Equal(out[j].CreatedAt) {
			return out[i].CreatedAt.Before(out[j].CreatedAt)
		}
		return out[i].ID < out[j].ID
	})
	return out
}

// List returns one of the app's lists and how many items it holds.
func (x *Index) List(appID, listID string) (l schemas.List, items int, ok bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	ls := x.apps[appID][listID]
	if ls == nil {
		return schemas.List{}, 0, false
	}
	return ls.list, len(ls.items), true
}

// Item returns one item of one of the app's lists.
func (x *Index) Item(appID, listID, itemID string) (schemas.ListItem, bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	ls := x.apps[appID][listID]
	if ls == nil {
		return schemas.ListItem{}, false
	}
	it, ok := ls.items[itemID]
	if !ok {
		return schemas.ListItem{}, false
	}
	return *it, true
}

// Items returns every item of one of the app's lists, oldest first.
func (x *Index) Items(appID, listID string) ([]schemas.ListItem, bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	ls := x.apps[appID][listID]
	if ls == nil {
		return nil, false
	}
	ptrs := make([]*schemas.ListItem, 0, len(ls.items))
	for _, it := range ls.items {
		ptrs = append(ptrs, it)
	}
	sort.Slice(ptrs, func(i, j int) bool { return earlier(ptrs[i], ptrs[j]) })
	out := make([]schemas.ListItem, len(ptrs))
	for i, p := range ptrs {
		out[i] = *p
	}
	return out, true
}

// ItemsWithPrimary returns the items (archived ones included) whose
// primary value is exactly v (normalized), oldest first.
func (x *Index) ItemsWithPrimary(appID, listID, v string) []schemas.ListItem {
	x.mu.RLock()
	defer x.mu.RUnlock()
	ls := x.apps[appID][listID]
	if ls == nil {
		return nil
	}
	ptrs := append([]*schemas.ListItem(nil), ls.byPrimary[v]...)
	sort.Slice(ptrs, func(i, j int) bool { return earlier(ptrs[i], ptrs[j]) })
	out := make([]schemas.ListItem, len(ptrs))
	for i, p := range ptrs {
		out[i] = *p
	}
	return out
}

// Match implements risk.Membership: the oldest item of the app's list
// listID that is active at at and holds the event's value of field (the
// list's primary_field when empty), exactly or, for IP lists, as a CIDR
// range containing it; an item with a secondary value must also match the
// event's value of the list's secondary_field.
func (x *Index) Match(appID, listID, field string, values schemas.ListValues, at time.Time) (schemas.ListMatch, bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	ls := x.apps[appID][listID]
	if ls == nil {
		return schemas.ListMatch{}, false
	}
	if field == "" {
		field = ls.list.PrimaryField
	}
	raw, ok := values[field]
	if !ok {
		return schemas.ListMatch{}, false
	}
	v, err := Normalize(field, raw)
	if err != nil {
		return schemas.ListMatch{}, false
	}
	secondary := ""
	if f := ls.list.SecondaryField; f != "" {
		if raw, ok := values[f]; ok {
			secondary, _ = Normalize(f, raw)
		}
	}
	var best *schemas.ListItem
	consider := func(cands []*schemas.ListItem) {
		for _, c := range cands {
			if c.Archived(at) || (c.SecondaryValue != "" && c.SecondaryValue != secondary) {
				continue
			}
			if best == nil || earlier(c, best) {
				best = c
			}
		}
	}
	consider(ls.byPrimary[v])
	if len(ls.prefixes) > 0 {
		if a, err := netip.ParseAddr(v); err == nil {
			for pl := range ls.prefixes {
				if pl.v6 == a.Is6() && pl.bits <= a.BitLen() {
					consider(ls.byPrimary[netip.PrefixFrom(a, pl.bits).Masked().String()])
				}
			}
		}
	}
	if best == nil {
		return schemas.ListMatch{}, false
	}
	return schemas.ListMatch{ListID: listID, ItemID: best.ID, Field: field}, true
}
