package schemas

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"os"
	"reflect"
	"testing"
	"time"
)

// fill sets the fields of v (a pointer) from r: with every=true all of them
// (so a field added to a type but forgotten by AppendJSON shows up), else
// each one at random, so that omitempty paths are exercised too.
func fill(t *testing.T, v reflect.Value, r *rand.Rand, every bool) {
	t.Helper()
	set := func() bool { return every || r.IntN(3) > 0 }
	switch v.Kind() {
	case reflect.Struct:
		if v.Type() == reflect.TypeOf(time.Time{}) {
			v.Set(reflect.ValueOf(time.Date(2026, 11, 22, 5, 6, 7, r.IntN(3)*123_456_000, time.UTC)))
			return
		}
		for i := 0; i < v.NumField(); i++ {
			f := v.Type().Field(i)
			if !f.IsExported() || f.Tag.Get("json") == "-" || !set() {
				continue
			}
			fill(t, v.Field(i), r, every)
		}
	case reflect.Pointer:
		p := reflect.New(v.Type().Elem())
		fill(t, p.Elem(), r, every)
		v.Set(p)
	case reflect.String:
		vals := []string{"plain", `quote " back \ slash`, "<html> & co", "tab\tnl\ncr\r\x01", "é ü 日本 \u2028\u2029", "bad \xff utf8"}
		v.SetString(vals[r.IntN(len(vals))])
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int64:
		v.SetInt(int64(r.IntN(1000) + 1))
	case reflect.Uint32:
		v.SetUint(uint64(r.IntN(70000) + 1))
	case reflect.Float64:
		vals := []float64{0.125, 1, 0.3333333333333333, 1e-7, 2.5e21, -13.4, 52.520008}
		v.SetFloat(vals[r.IntN(len(vals))])
	case reflect.Slice:
		if v.Type() == reflect.TypeOf(json.RawMessage(nil)) {
			v.SetBytes([]byte(`{"a":[1,2.5,"x"],"b":{"c":null}}`))
			return
		}
		n := 1 + r.IntN(3)
		s := reflect.MakeSlice(v.Type(), n, n)
		for i := range n {
			fill(t, s.Index(i), r, every)
		}
		v.Set(s)
	case reflect.Map:
		m := reflect.MakeMap(v.Type())
		for i := range 1 + r.IntN(4) {
			k := reflect.New(v.Type().Key()).Elem()
			k.SetString(string(rune('z'-i)) + "-key")
			e := reflect.New(v.Type().Elem()).Elem()
			fill(t, e, r, every)
			m.SetMapIndex(k, e)
		}
		v.Set(m)
	default:
		t.Fatalf("fill: no rule for %s (extend the test and AppendJSON)", v.Type())
	}
}

func TestAppendJSON(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	check := func(name string, v any, got []byte) {
		t.Helper()
		want, err := json.Marshal(v)
		if err != nil {
			t.Fatalf("%s: encoding/json: %v", name, err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("%s: AppendJSON differs from encoding/json\n got: %s\nwant: %s", name, got, want)
		}
	}
	for i := range 400 {
		every := i%4 == 0
		var ev Event
		fill(t, reflect.ValueOf(&ev).Elem(), r, every)
		check("event", &ev, ev.AppendJSON(nil))
		var d Decision
		fill(t, reflect.ValueOf(&d).Elem(), r, every)
		check("decision", &d, d.AppendJSON(nil))
	}
	var ev Event
	check("zero event", &ev, ev.AppendJSON(nil))
	var d Decision
	check("zero decision", &d, d.AppendJSON(nil))
}

func BenchmarkAppendJSON(b *testing.B) {
	raw, err := os.ReadFile("testdata/event.v1/ruby-track.json")
	if err != nil {
		b.Fatal(err)
	}
	var d Decision
	if err := json.Unmarshal(raw, &d.Event); err != nil {
		b.Fatal(err)
	}
	d.Signals = []string{"new_device", "new_country"}
	d.Contributions = []Contribution{{"new_device", "signal", 0.2}, {"country", "feature", 0.1}}
	d.Policy = &PolicyOutcome{"allow", "p1", "Default", "r1"}
	b.Run("event/AppendJSON", func(b *testing.B) {
		buf := make([]byte, 0, 4096)
		for b.Loop() {
			buf = d.Event.AppendJSON(buf[:0])
		}
	})
	b.Run("event/encoding-json", func(b *testing.B) {
		for b.Loop() {
			json.Marshal(&d.Event)
		}
	})
	b.Run("decision/AppendJSON", func(b *testing.B) {
		buf := make([]byte, 0, 4096)
		for b.Loop() {
			buf = d.AppendJSON(buf[:0])
		}
	})
}
