package lists

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/moat-dev/moat/schemas"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func mustApply(t *testing.T, x *Index, key []byte, rec any) {
	t.Helper()
	var b []byte
	if rec != nil {
		var err error
		if b, err = json.Marshal(rec); err != nil {
			t.Fatal(err)
		}
	}
	if err := x.Apply(key, b); err != nil {
		t.Fatal(err)
	}
}

func putList(t *testing.T, x *Index, app string, l schemas.List) {
	t.Helper()
	mustApply(t, x, schemas.ListKey(app, l.ID), schemas.ListRecord{V: 1, AppID: app, List: &l})
}

func putItem(t *testing.T, x *Index, app string, it schemas.ListItem) {
	t.Helper()
	mustApply(t, x, schemas.ListItemKey(app, it.ListID, it.ID), schemas.ListRecord{V: 1, AppID: app, Item: &it})
}

func TestNormalize(t *testing.T) {
	for _, tt := range []struct{ field, in, want, err string }{
		{schemas.ListFieldIPValue, " 203.0.113.7 ", "203.0.113.7", ""},
		{schemas.ListFieldIPValue, "2001:DB8::0001", "2001:db8::1", ""},
		{schemas.ListFieldIPValue, "::ffff:203.0.113.7", "203.0.113.7", ""},
		{schemas.ListFieldIPValue, "203.0.113.99/24", "203.0.113.0/24", ""},
		{schemas.ListFieldIPValue, "203.0.113.7/32", "203.0.113.7", ""},
		{schemas.ListFieldIPAddress, "not-an-ip", "", "is not an IP address or CIDR range"},
		{schemas.ListFieldIPASN, "AS15169", "15169", ""},
		{schemas.ListFieldIPASN, "x1", "", "is not an AS number"},
		{schemas.ListFieldIPCountryCode, "se", "SE", ""},
		{schemas.ListFieldIPCountryCode, "SWE", "", "is not a two-letter country code"},
		{schemas.ListFieldUserEmail, "Alice@Example.COM", "alice@example.com", ""},
		{schemas.ListFieldUserEmail, "alice", "", "is not an email address"},
		{schemas.ListFieldEmailNormalized, "Al.ice+promo@gmail.com", "alice@gmail.com", ""},
		{schemas.ListFieldEmailDomain, "@Mailinator.com", "mailinator.com", ""},
		{schemas.ListFieldUserID, " u-1 ", "u-1", ""},
		{schemas.ListFieldDeviceFingerprint, "", "", "is required"},
		{schemas.ListFieldUserID, strings.Repeat("x", MaxValueLen+1), "", "is longer than 512 bytes"},
	} {
		got, err := Normalize(tt.field, tt.in)
		if tt.err != "" {
			if err == nil || err.Error() != tt.err {
				t.Errorf("Normalize(%s, %q) = %q, %v; want error %q", tt.field, tt.in, got, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("Normalize(%s, %q) = %q, %v; want %q", tt.field, tt.in, got, err, tt.want)
		}
	}
}

func TestIndexMatch(t *testing.T) {
	x := NewIndex()
	ips := schemas.List{ID: "ips", Name: "Blocked", Color: "$red", PrimaryField: schemas.ListFieldIPValue, CreatedAt: t0}
	putList(t, x, "a", ips)
	putList(t, x, "b", schemas.List{ID: "ips", Name: "Other app", Color: "$red", PrimaryField: schemas.ListFieldIPValue, CreatedAt: t0})
	pair := schemas.List{ID: "pair", Name: "Pairs", Color: "$blue", PrimaryField: schemas.ListFieldUserID, SecondaryField: schemas.ListFieldDeviceFingerprint, CreatedAt: t0}
	putList(t, x, "a", pair)
	later := t0.Add(time.Hour)
	putItem(t, x, "a", schemas.ListItem{ID: "exact", ListID: "ips", PrimaryValue: "203.0.113.7", CreatedAt: t0.Add(time.Minute)})
	putItem(t, x, "a", schemas.ListItem{ID: "range", ListID: "ips", PrimaryValue: "198.51.100.0/24", CreatedAt: t0})
	putItem(t, x, "a", schemas.ListItem{ID: "range6", ListID: "ips", PrimaryValue: "2001:db8::/32", CreatedAt: t0})
	putItem(t, x, "a", schemas.ListItem{ID: "expiring", ListID: "ips", PrimaryValue: "192.0.2.1", CreatedAt: t0, AutoArchivesAt: &later})
	putItem(t, x, "a", schemas.ListItem{ID: "archived", ListID: "ips", PrimaryValue: "192.0.2.2", CreatedAt: t0, ArchivedAt: &t0})
	putItem(t, x, "a", schemas.ListItem{ID: "pair1", ListID: "pair", PrimaryValue: "u1", SecondaryValue: "fp1", CreatedAt: t0})
	putItem(t, x, "a", schemas.ListItem{ID: "anydev", ListID: "pair", PrimaryValue: "u2", CreatedAt: t0})

	vals := func(kv ...string) schemas.ListValues {
		v := schemas.ListValues{}
		for i := 0; i+1 < len(kv); i += 2 {
			v[kv[i]] = kv[i+1]
		}
		return v
	}
	ip := schemas.ListFieldIPValue
	for _, tt := range []struct {
		name, app, list, field string
		values                 schemas.ListValues
		at                     time.Time
		want                   string // item id, "" for no match
	}{
		{"exact", "a", "ips", "", vals(ip, "203.0.113.7"), t0, "exact"},
		{"in range", "a", "ips", "", vals(ip, "198.51.100.200"), t0, "range"},
		{"in v6 range", "a", "ips", "", vals(ip, "2001:db8:1::5"), t0, "range6"},
		{"not listed", "a", "ips", "", vals(ip, "203.0.113.8"), t0, ""},
		{"no value", "a", "ips", "", vals(schemas.ListFieldUserID, "u1"), t0, ""},
		{"field override", "a", "ips", schemas.ListFieldIPAddress, vals(schemas.ListFieldIPAddress, "203.0.113.7"), t0, "exact"},
		{"before auto archive", "a", "ips", "", vals(ip, "192.0.2.1"), later.Add(-time.Millisecond), "expiring"},
		{"auto archived", "a", "ips", "", vals(ip, "192.0.2.1"), later, ""},
		{"archived", "a", "ips", "", vals(ip, "192.0.2.2"), t0, ""},
		{"other app's list", "b", "ips", "", vals(ip, "203.0.113.7"), t0, ""},
		{"unknown list", "a", "nope", "", vals(ip, "203.0.113.7"), t0, ""},
		{"secondary matches", "a", "pair", "", vals(schemas.ListFieldUserID, "u1", schemas.ListFieldDeviceFingerprint, "fp1"), t0, "pair1"},
		{"secondary differs", "a", "pair", "", vals(schemas.ListFieldUserID, "u1", schemas.ListFieldDeviceFingerprint, "fp2"), t0, ""},
		{"no secondary on item", "a", "pair", "", vals(schemas.ListFieldUserID, "u2", schemas.ListFieldDeviceFingerprint, "fp9"), t0, "anydev"},
	} {
		m, ok := x.Match(tt.app, tt.list, tt.field, tt.values, tt.at)
		if got := m.ItemID; ok != (tt.want != "") || got != tt.want {
			t.Errorf("%s: match %+v %v, want %q", tt.name, m, ok, tt.want)
		}
		if ok && (m.ListID != tt.list || m.Field == "") {
			t.Errorf("%s: match %+v", tt.name, m)
		}
	}

	// The oldest active item wins when several hold the value.
	putItem(t, x, "a", schemas.ListItem{ID: "older", ListID: "ips", PrimaryValue: "203.0.113.0/28", CreatedAt: t0.Add(-time.Hour)})
	if m, _ := x.Match("a", "ips", "", vals(ip, "203.0.113.7"), t0); m.ItemID != "older" {
		t.Errorf("oldest match: %+v", m)
	}
	// Deleting the range item removes its prefix from the lookup.
	mustApply(t, x, schemas.ListItemKey("a", "ips", "older"), nil)
	mustApply(t, x, schemas.ListItemKey("a", "ips", "range"), nil)
	if _, ok := x.Match("a", "ips", "", vals(ip, "198.51.100.200"), t0); ok {
		t.Error("a deleted range still matches")
	}
	if m, _ := x.Match("a", "ips", "", vals(ip, "203.0.113.7"), t0); m.ItemID != "exact" {
		t.Errorf("after delete: %+v", m)
	}
	// Deleting a list deletes its items; a late item record is ignored.
	mustApply(t, x, schemas.ListKey("a", "ips"), nil)
	putItem(t, x, "a", schemas.ListItem{ID: "late", ListID: "ips", PrimaryValue: "203.0.113.7", CreatedAt: t0})
	if _, ok := x.Match("a", "ips", "", vals(ip, "203.0.113.7"), t0); ok {
		t.Error("a deleted list still matches")
	}
	if _, _, ok := x.List("a", "ips"); ok {
		t.Error("deleted list still listed")
	}
	if _, _, ok := x.List("b", "ips"); !ok {
		t.Error("deleting app a's list deleted app b's")
	}
}

func TestIndexRejectsMalformedRecords(t *testing.T) {
	x := NewIndex()
	l := schemas.List{ID: "l1", PrimaryField: schemas.ListFieldUserID}
	for _, tt := range []struct {
		name  string
		key   []byte
		value string
	}{
		{"bad key", []byte("no-separator"), `{}`},
		{"bad json", schemas.ListKey("a", "l1"), `{`},
		{"other app", schemas.ListKey("a", "l1"), `{"v":1,"app_id":"b","list":{"id":"l1"}}`},
		{"list key, item value", schemas.ListKey("a", "l1"), `{"v":1,"app_id":"a","item":{"id":"i","list_id":"l1"}}`},
		{"item key, other item", schemas.ListItemKey("a", "l1", "i1"), `{"v":1,"app_id":"a","item":{"id":"i2","list_id":"l1"}}`},
	} {
		if err := x.Apply(tt.key, []byte(tt.value)); err == nil {
			t.Errorf("%s: applied", tt.name)
		}
	}
	putList(t, x, "a", l)
	if _, _, ok := x.List("a", "l1"); !ok {
		t.Error("valid list not applied")
	}
}
