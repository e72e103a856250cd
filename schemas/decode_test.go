package schemas

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf16"

	gojson "github.com/goccy/go-json"
)

// The decoders' property, checked by every test below and by the fuzz
// targets: DecodeX succeeds exactly when goccy's UnmarshalNoEscape (what
// the callers used before) does (a panic of goccy's counts as an error); when the scanner took the input (then
// nothing falls back), the result is what encoding/json's Unmarshal gives;
// when it fell back, the result is goccy's. The two libraries differ on a
// few inputs (goccy keeps invalid UTF-8, matches fewer keys
// case-insensitively, skips unknown values without checking them), so
// "equal to encoding/json" holds exactly on what the scanner takes: all
// valid JSON of the right types but for the few cases DecodeEvent lists.

func checkEvent(t testing.TB, data []byte) (fast, stdOK bool) {
	t.Helper()
	return checkDecode(t, data, DecodeEvent, decodeEvent)
}

func checkDecision(t testing.TB, data []byte) (fast, stdOK bool) {
	t.Helper()
	return checkDecode(t, data, DecodeDecision, decodeDecision)
}

// checkDecode checks the property on data and reports whether the scanner
// took it and whether encoding/json did.
func checkDecode[T any](t testing.TB, data []byte, decode func([]byte, *T) error, scan func(*decoder, *T) bool) (fast, stdOK bool) {
	t.Helper()
	var v T
	d := newDecoder(data)
	fast = scan(&d, &v) && d.end()

	// Decode a copy and clobber it, so that a result aliasing the input
	// (a RawMessage, a string) shows up as a difference.
	in := bytes.Clone(data)
	var got T
	err := decode(in, &got)
	for i := range in {
		in[i] = 'X'
	}

	var gc, std T
	gcErr := fallback(bytes.Clone(data), &gc) // goccy, a panic an error
	stdErr := json.Unmarshal(data, &std)
	switch {
	case (err == nil) != (gcErr == nil):
		t.Fatalf("%q: error %v, goccy's %v", data, err, gcErr)
	case !fast && err == nil && !reflect.DeepEqual(got, gc):
		t.Fatalf("%q: the fallback differs from goccy\n got: %+v\nwant: %+v", data, got, gc)
	case fast && stdErr != nil:
		t.Fatalf("%q: the scanner took what encoding/json refuses: %v", data, stdErr)
	case fast && (err != nil || !reflect.DeepEqual(got, std)):
		t.Fatalf("%q: differs from encoding/json (error %v)\n got: %+v\nwant: %+v", data, err, got, std)
	}
	return fast, stdErr == nil
}

// goldenInputs are the envelopes shipped in testdata, and the API requests
// of ingest's tests (not events, but JSON all the same).
func goldenInputs(t testing.TB) map[string][]byte {
	files, _ := filepath.Glob("testdata/event.v1/*.json")
	requests, _ := filepath.Glob("../ingest/testdata/requests/*.json")
	if len(files) < 5 {
		t.Fatalf("%d golden envelopes, want at least 5", len(files))
	}
	in := map[string][]byte{}
	for _, f := range append(files, requests...) {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		in[f] = b
	}
	return in
}

func TestDecodeGolden(t *testing.T) {
	for name, b := range goldenInputs(t) {
		isEvent := strings.Contains(name, "event.v1")
		if fast, _ := checkEvent(t, b); isEvent && !fast {
			t.Errorf("%s: the golden event fell back", name)
		}
		checkDecision(t, b)
		if !isEvent {
			continue
		}
		var d Decision
		if err := json.Unmarshal(b, &d.Event); err != nil {
			t.Fatal(err)
		}
		d.V = DecisionVersion
		if fast, _ := checkDecision(t, d.AppendJSON(nil)); !fast {
			t.Errorf("%s: the decision of the golden event fell back", name)
		}
	}
}

// TestDecodeGenerated decodes varied values written by AppendJSON, by
// encoding/json, and rewritten: reordered, spaced, escaped, with unknown
// keys, nulls and duplicate keys. The scanner must take all that
// encoding/json takes (escaped times are an error there).
func TestDecodeGenerated(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	check := func(encoded []byte, decode func(testing.TB, []byte) (bool, bool)) {
		t.Helper()
		for _, b := range append([][]byte{encoded}, rewrites(t, encoded)...) {
			if fast, stdOK := decode(t, b); fast != stdOK {
				t.Fatalf("%s: scanner took it: %v, encoding/json: %v", b, fast, stdOK)
			}
		}
	}
	n := 80
	if testing.Short() {
		n = 20
	}
	for i := range n {
		every := i%4 == 0
		var ev Event
		if i > 0 {
			fill(t, reflect.ValueOf(&ev).Elem(), r, every)
		}
		std, _ := json.Marshal(&ev)
		check(ev.AppendJSON(nil), checkEvent)
		check(std, checkEvent)
		var d Decision
		if i > 0 {
			fill(t, reflect.ValueOf(&d).Elem(), r, every)
		}
		std, _ = json.Marshal(&d)
		check(d.AppendJSON(nil), checkDecision)
		check(std, checkDecision)
	}
}

// rewrites returns variants of the JSON document b.
func rewrites(t testing.TB, b []byte) [][]byte {
	doc := parseOrdered(t, b)
	var out [][]byte
	for _, w := range []writer{
		{reverse: true},
		{space: true},
		{escape: true},
		{unknown: true},
		{nullFirst: true},
		{nullAfter: true},
		{twice: true},
		{reverse: true, space: true, escape: true, unknown: true, twice: true},
	} {
		var buf bytes.Buffer
		w.write(&buf, doc)
		out = append(out, buf.Bytes())
	}
	return out
}

// node is a JSON value that keeps its object members in order.
type node struct {
	scalar  any // json.Number, string, bool or nil
	members []pair
	elems   []node
	kind    byte // '{', '[' or 0 for a scalar
}

type pair struct {
	key   string
	value node
}

func parseOrdered(t testing.TB, b []byte) node {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var parse func() node
	parse = func() node {
		tok, err := dec.Token()
		if err != nil {
			t.Fatalf("%s: %v", b, err)
		}
		switch tok {
		case json.Delim('{'):
			n := node{kind: '{'}
			for dec.More() {
				k, _ := dec.Token()
				n.members = append(n.members, pair{k.(string), parse()})
			}
			dec.Token()
			return n
		case json.Delim('['):
			n := node{kind: '['}
			for dec.More() {
				n.elems = append(n.elems, parse())
			}
			dec.Token()
			return n
		}
		return node{scalar: tok}
	}
	n := parse()
	if _, err := dec.Token(); err != io.EOF {
		t.Fatalf("%s: trailing data", b)
	}
	return n
}

// rawJSON is a scalar written as it is.
type rawJSON string

// unknownValue is the value of the unknown keys rewrites adds.
const unknownValue rawJSON = `[-1.5e+3, true,false,null,"x\u00e9\"\\",{"nested":[]},{}]`

// writer writes a node back as JSON, differently from encoding/json.
type writer struct {
	reverse   bool // members in reverse order
	space     bool // whitespace around every token
	escape    bool // every character of every string but times as \uXXXX
	unknown   bool // an unknown key in every object
	nullFirst bool // every member preceded by the same key with null
	nullAfter bool // every member followed by the same key with null
	twice     bool // every member written twice
}

func (w writer) write(buf *bytes.Buffer, n node) {
	sp := func() {
		if w.space {
			buf.WriteString(" \n\t\r ")
		}
	}
	sp()
	switch n.kind {
	case '{':
		buf.WriteByte('{')
		var ms []pair
		for _, m := range n.members {
			if w.nullFirst {
				ms = append(ms, pair{m.key, node{}})
			}
			ms = append(ms, m)
			if w.nullAfter {
				ms = append(ms, pair{m.key, node{}})
			}
			if w.twice {
				ms = append(ms, m)
			}
		}
		if w.unknown {
			ms = append(ms, pair{"zz_unknown", node{scalar: unknownValue}})
		}
		if w.reverse {
			for i, j := 0, len(ms)-1; i < j; i, j = i+1, j-1 {
				ms[i], ms[j] = ms[j], ms[i]
			}
		}
		for i, m := range ms {
			if i > 0 {
				buf.WriteByte(',')
			}
			sp()
			w.writeString(buf, m.key)
			sp()
			buf.WriteByte(':')
			vw := w
			if m.key == "headers" {
				vw.unknown = false // a map of strings
			}
			vw.write(buf, m.value)
		}
		sp()
		buf.WriteByte('}')
	case '[':
		buf.WriteByte('[')
		for i, e := range n.elems {
			if i > 0 {
				buf.WriteByte(',')
			}
			w.write(buf, e)
		}
		sp()
		buf.WriteByte(']')
	default:
		switch v := n.scalar.(type) {
		case string:
			w.writeString(buf, v)
		case nil:
			buf.WriteString("null")
		case rawJSON:
			buf.WriteString(string(v))
		default:
			fmt.Fprint(buf, v)
		}
	}
	sp()
}

func (w writer) writeString(buf *bytes.Buffer, s string) {
	// time.Time's UnmarshalJSON takes no escapes (nor does encoding/json
	// for it), so times are kept as they are.
	if _, err := time.Parse(time.RFC3339Nano, s); !w.escape || err == nil {
		b, _ := json.Marshal(s)
		buf.Write(b)
		return
	}
	buf.WriteByte('"')
	for _, r := range s {
		if r > 0xffff {
			r1, r2 := utf16.EncodeRune(r)
			writeEscape(buf, r1)
			writeEscape(buf, r2)
			continue
		}
		writeEscape(buf, r)
	}
	buf.WriteByte('"')
}

func writeEscape(buf *bytes.Buffer, r rune) {
	buf.WriteString(`\u`)
	for shift := 12; shift >= 0; shift -= 4 {
		buf.WriteByte("0123456789abcDEF"[r>>shift&0xf])
	}
}

// TestDecodeCases are inputs the generated ones do not reach: edge cases
// of the grammar and of encoding/json's rules, and input that must fall
// back.
func TestDecodeCases(t *testing.T) {
	deep := strings.Repeat("[", maxDepth+1) + strings.Repeat("]", maxDepth+1)
	events := []struct {
		json string
		fast bool
	}{
		{`{}`, true},
		{`null`, true},
		{` {"v":1} ` + "\n", true},
		{`{"v":-0,"id":"","kind":"track"}`, true},
		{`{"id":"x","id":null}`, true},
		{`{"properties":null,"params":[],"extra":{"a":null,"b":{}}}`, true},
		{`{"properties":{"a":1},"properties":null}`, true},
		{`{"context":{"headers":{"a":null,"b":"1","b":"2"}}}`, true},
		{`{"context":{"headers":{"a":"1"}},"context":{"headers":{"b":"2"}},"context":null}`, true},
		{`{"context":{"headers":null,"library":null}}`, true},
		{`{"user":{"id":"a","traits":[1]},"user":{"email":"b"}}`, true},
		{`{"options":{"expand":["a","b"]},"options":{"expand":[null,"c",null]}}`, true},
		{`{"options":{"expand":["a","b","c"]},"options":{"expand":["d"]},"options":{"expand":[null,null]}}`, true},
		{`{"options":{"expand":[]}}`, true},
		{`{"options":{"expand":null,"test_app":true,"test_app":null}}`, true},
		{`{"options":{},"device":{},"device":{"token":"t"}}`, true},
		{`{"created_at":null,"sent_at":"2024-01-01T00:00:00+02:00","received_at":null}`, true},
		{`{"created_at":"2024-01-01T00:00:00Z","created_at":null}`, true},
		{`{"received_at":"2024-01-01T00:00:00.123456789Z","received_at":"2025-02-03T04:05:06-07:00"}`, true},
		{`{"user":{"registered_at":"2018-07-10T17:37:39.123Z"}}`, true},
		{`{"id":"\u00e9\ud83d\ude00\/\b\f\n\r\t\"\\","app_id":"日本\u2028"}`, true},
		{`{"id":"a\ud800b","app_id":"\udc00\ud800","name":"\ud800\u0041","type":"\ud800\ud800\udc00"}`, true},
		{"{\"id\":\"a\xffb\xed\xa0\x80c\xe6\x97\",\"extra\":{\"k\xff\":\"\xfe\"}}", true},
		{"{\"context\":{\"headers\":{\"a\xff\":\"\xfe\"}}}", true},
		{`{"\u0069d":"escaped key","zz":{"\u0041":1}}`, true},
		{`{"failover":true,"-":1,"v2":[{"a":[{}]}],"x":-1.5E-7,"y":0.0e+0}`, true},
		{`{"v":123456789012345678}`, true},
		// Left to the fallback.
		{``, false},
		{`[]`, false},
		{`{"v":1}x`, false},
		{"{\"v\":1}\x00", false},
		{`{"v":1,}`, false},
		{`{"v":1.0}`, false},
		{`{"v":1e2}`, false},
		{`{"v":"1"}`, false},
		{`{"v":1234567890123456789}`, false},
		{`{"ID":"case-insensitive"}`, false},
		{`{"\u212aind":"track"}`, false},
		{`{"user":{"Email":"x"}}`, false},
		{`{"zz":{"a" 1 2 ]}`, false},
		{`{"zz":[1,}`, false},
		{`{"zz":01}`, false},
		{`{"zz":1.}`, false},
		{`{"zz":-}`, false},
		{`{"zz":tru}`, false},
		{`{"zz":"\q"}`, false},
		{`{"zz":"\u12"}`, false},
		{`{"id":"a\'b"}`, false},
		{`{"eve\`, false}, // goccy may read past the end, and panic
		{"{\"id\":\"a\x00b\"}", false},
		{`{"received_at":"2024-01-01t00:00:00Z"}`, false},
		{`{"received_at":5}`, false},
		{`{"kind":"track","kind":5}`, false},
		{`{"context":{"headers":{"a":1}}}`, false},
		{`{"options":"x"}`, false},
		{`{"zz":` + deep + `}`, false},
		{`{"properties":` + deep + `}`, false},
	}
	for _, c := range events {
		if fast, _ := checkEvent(t, []byte(c.json)); fast != c.fast {
			t.Errorf("%q: scanner took it: %v, want %v", c.json, fast, c.fast)
		}
	}
	decisions := []struct {
		json string
		fast bool
	}{
		{`{"signals":["a"],"signals":[null,"b"]}`, true},
		{`{"contributions":[{"name":"a","value":1}],"contributions":[{"kind":"k"},{"value":2}]}`, true},
		{`{"sessions":[],"lists":null,"policy":null,"ip":{"asn":4294967295,"lat":-0.0},"email":{"valid":true}}`, true},
		{`{"risk":1e-400,"scores":{"bot":1E+2,"bot":null},"scores":null}`, true},
		{`{"event":{"kind":"risk"},"event":{"id":"x"},"event":null,"device":{"user_agent":{"os":"Linux"}}}`, true},
		{`{"Failover":true}`, false},
		{`{"observations":[1]}`, true},
		{`{"ip":{"asn":-1}}`, false},
		{`{"ip":{"asn":-0}}`, false},
		{`{"ip":{"asn":4294967296}}`, false},
		{`{"risk":1e400}`, false},
		{`{"signals":"a"}`, false},
	}
	for _, c := range decisions {
		if fast, _ := checkDecision(t, []byte(c.json)); fast != c.fast {
			t.Errorf("%q: scanner took it: %v, want %v", c.json, fast, c.fast)
		}
	}
}

// TestPlainEnd checks the eight-byte test against plainString: every byte
// at every place of a word.
func TestPlainEnd(t *testing.T) {
	for c := range 256 {
		for at := range 12 {
			b := []byte(strings.Repeat("a", 12))
			b[at] = byte(c)
			want := len(b)
			if !plainString[c] {
				want = at
			}
			if got := plainEnd(b, 0); got != want {
				t.Fatalf("plainEnd with %#x at %d = %d, want %d", c, at, got, want)
			}
		}
	}
}

// TestDecodeResets: the decoders replace what the value held.
func TestDecodeResets(t *testing.T) {
	d := Decision{Failover: true, Observations: []Observation{{Key: "k"}}, Signals: []string{"old"}}
	d.Event.Context.Headers = map[string]string{"old": "1"}
	if err := DecodeDecision([]byte(`{"signals":["new"],"event":{"context":{"headers":{"new":"2"}}}}`), &d); err != nil {
		t.Fatal(err)
	}
	want := Decision{Signals: []string{"new"}}
	want.Event.Context.Headers = map[string]string{"new": "2"}
	if !reflect.DeepEqual(d, want) {
		t.Fatalf("got %+v", d)
	}
}

func fuzzSeeds(f *testing.F) {
	for _, b := range goldenInputs(f) {
		f.Add(b)
		var d Decision
		json.Unmarshal(b, &d.Event)
		d.Signals = []string{"new_device"}
		d.IP = &IPInfo{CountryCode: "SE", ASN: 1}
		f.Add(d.AppendJSON(nil))
	}
	f.Add([]byte(`{"id":"a\ud800b\u00e9","options":{"expand":[]},"extra":{"a":null}}`))
	f.Add([]byte(`{"ID":1,"v":1.5,"zz":[{"a":"\u0041"}]}`))
}

// FuzzDecodeEvent checks the decoders' property (see checkDecode) on any
// input.
func FuzzDecodeEvent(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) { checkEvent(t, data) })
}

// FuzzDecodeDecision checks the decoders' property (see checkDecode) on
// any input.
func FuzzDecodeDecision(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) { checkDecision(t, data) })
}

// benchDecision is a realistic decision: the 0.9 KB golden event with
// the device, scores, signals, policy, contributions, enrichments and a
// session the scorer adds.
func benchDecision(tb testing.TB) *Decision {
	raw, err := os.ReadFile("testdata/event.v1/ruby-track.json")
	if err != nil {
		tb.Fatal(err)
	}
	d := Decision{V: DecisionVersion, Risk: 0.42, Action: "allow"}
	if err := json.Unmarshal(raw, &d.Event); err != nil {
		tb.Fatal(err)
	}
	d.Device = Device{Token: "eyJhbGciOiJIUzI1NiJ9.dGVzdA.k3Lq", Fingerprint: "4f0e9a1b2c3d4e5f",
		UserAgent: UserAgent{Raw: d.Event.Context.Headers["user-agent"], Browser: "Safari", BrowserVersion: "17.4",
			BrowserMajor: "17", BrowserType: "browser", Engine: "WebKit", OS: "Mac OS X", OSVersion: "10.15.7",
			OSMajor: "10", Platform: "macOS", DeviceFamily: "Mac", DeviceBrand: "Apple", DeviceType: "desktop"}}
	d.Scores = Scores{AccountTakeover: 0.42, AccountAbuse: 0.05, Bot: 0.01}
	d.Signals = []string{"new_country", "new_device"}
	d.Policy = &PolicyOutcome{"allow", "p1", "Default", "r1"}
	d.Contributions = []Contribution{{"new_device", "signal", 0.2}, {"new_country", "signal", 0.15}, {"velocity", "feature", 0.07}}
	d.IP = &IPInfo{CountryCode: "SE", Region: "Stockholm", City: "Stockholm", Lat: 59.3293, Lon: 18.0686, ASN: 8473, ISP: "Bahnhof AB"}
	d.Email = &EmailInfo{Normalized: "johan@castle.io", Domain: "castle.io", Valid: true}
	d.Sessions = []SessionChange{{UUID: "0193f0aa-0000-7000-8000-000000000001", ID: "s1", DeviceToken: d.Device.Token,
		Status: SessionActive, StartedAtMs: 1_795_000_000_000, LastActivityAtMs: 1_795_000_000_123}}
	return &d
}

func BenchmarkDecodeEvent(b *testing.B) {
	d := benchDecision(b)
	data := d.Event.AppendJSON(nil)
	benchDecode(b, data, DecodeEvent)
}

func BenchmarkDecodeDecision(b *testing.B) {
	d := benchDecision(b)
	data := d.AppendJSON(nil)
	benchDecode(b, data, DecodeDecision)
}

func benchDecode[T any](b *testing.B, data []byte, decode func([]byte, *T) error) {
	b.Run("Decode", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		b.ReportAllocs()
		for b.Loop() {
			var v T
			if err := decode(data, &v); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("goccy", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		b.ReportAllocs()
		for b.Loop() {
			var v T
			if err := gojson.UnmarshalNoEscape(data, &v); err != nil {
				b.Fatal(err)
			}
		}
	})
}
