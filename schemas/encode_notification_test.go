package schemas

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	gojson "github.com/goccy/go-json"
)

// TestNotificationAppendJSON holds Notification.AppendJSON to encoding/json
// and to goccy/go-json (which the scorer used for notifications before),
// including raw data that needs compacting or escaping.
func TestNotificationAppendJSON(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	datas := []json.RawMessage{nil, json.RawMessage(`{}`), json.RawMessage(`{"a":"<b> & c"}`), json.RawMessage("{\"a\":\"\u2028\u2029\"}"),
		json.RawMessage("{ \"a\" :\n\t1 }"), json.RawMessage(`{"a":"\u003cb\u003e","n":[1,2.5,null,true]}`), json.RawMessage("\"é\xe2\x80 \xe2\x80\xa8\""), json.RawMessage("{\"a\":\"…\"}")}
	check := func(n *Notification) {
		t.Helper()
		got, err := n.AppendJSON(nil)
		if err != nil {
			t.Fatal(err)
		}
		want, err := json.Marshal(n)
		if err != nil {
			t.Fatal(err)
		}
		goccy, err := gojson.Marshal(n)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) || !bytes.Equal(got, goccy) {
			t.Fatalf("AppendJSON differs\n got: %s\nwant: %s\ngoccy: %s", got, want, goccy)
		}
	}
	for i := range 400 {
		var n Notification
		fill(t, reflect.ValueOf(&n).Elem(), r, i%4 == 0)
		if i%3 == 0 {
			n.Data = datas[r.IntN(len(datas))]
		}
		if i%5 == 0 {
			n.CreatedAt = time.Date(2026, 11, 22, 5, 6, 7, 120_000_000, time.FixedZone("", -7*3600))
		}
		check(&n)
	}
	check(&Notification{})
	n := Notification{CreatedAt: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}
	if _, err := n.AppendJSON(nil); err == nil {
		t.Fatal("a year past 9999 encoded")
	}
}
