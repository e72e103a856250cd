package schemas

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"math/bits"
	"strconv"
	"strings"
	"time"
	"unicode/utf16"
	"unicode/utf8"

	gojson "github.com/goccy/go-json"
)

// DecodeEvent decodes a JSON Event into e, which it resets first. It is the
// hot path's decoder (the scorer decodes every event of the log) and the
// counterpart of AppendJSON.
//
// A single-pass scanner without reflection decodes the JSON grammar in
// full: any key order, whitespace, escapes, null, unknown keys (validated
// and skipped), duplicate keys. It gives exactly what encoding/json's
// Unmarshal gives: strings unescaped with invalid UTF-8 and lone surrogates
// replaced by U+FFFD, json.RawMessage fields a copy of the value's bytes,
// times through time.Time's UnmarshalJSON, pointers, maps and slices set
// only when their key is there ([] an empty slice, null a nil one), null
// leaving other fields as they are, duplicate keys merging into what an
// earlier one set. (goccy, which the callers used before, differs in
// places: it keeps invalid UTF-8 as it is, for one.) It is fastest on
// AppendJSON's output, whose keys it expects in AppendJSON's order (see
// decodeStruct). The decoded strings share one copy of data, as goccy's
// share its copy.
//
// Anything else (malformed JSON, a value of the wrong type, an integer
// of more than 18 digits, a key that matches a field only
// case-insensitively, nesting deeper than maxDepth) is left to a fallback:
// goccy/go-json's UnmarshalNoEscape into a zeroed Event, which is what the
// callers used before and whose error (or lax success) is returned as is;
// a panic of goccy's is returned as an error (see fallback).
func DecodeEvent(data []byte, e *Event) error {
	*e = Event{}
	d := newDecoder(data)
	if decodeEvent(&d, e) && d.end() {
		return nil
	}
	return fallback(data, e)
}

// DecodeDecision decodes a JSON Decision into x, which it resets first, as
// DecodeEvent does: a scanner for the JSON grammar that gives what
// encoding/json gives, and goccy/go-json for anything it leaves. The json:"-"
// fields stay zero.
func DecodeDecision(data []byte, x *Decision) error {
	*x = Decision{}
	d := newDecoder(data)
	if decodeDecision(&d, x) && d.end() {
		return nil
	}
	return fallback(data, x)
}

// fallback decodes data into v, zeroed first, with goccy/go-json. goccy
// reads past the end of some malformed input (FuzzDecodeDecision found
// {"eve\) and may then panic, depending on what lies there; the panic is
// returned as an error.
func fallback[T any](data []byte, v *T) (err error) {
	var zero T
	*v = zero
	defer func() {
		if r := recover(); r != nil {
			*v = zero
			err = fmt.Errorf("schemas: malformed JSON (goccy/go-json panicked: %v)", r)
		}
	}()
	return gojson.UnmarshalNoEscape(data, v)
}

// maxDepth is the deepest nesting of objects and arrays the scanner
// decodes; deeper input (encoding/json and goccy allow 10000) is left to
// the fallback.
const maxDepth = 1000

// decoder scans JSON. Its methods, and the decode functions below, decode
// the value at the cursor (which is past any whitespace) and report false
// for input they do not handle; the caller then falls back. Like
// encoding/json, they decode into what is already there: a struct's
// fields are set one by one, so that a duplicate key merges into what the
// first one set.
type decoder struct {
	data []byte
	// text is a copy of data that the decoded strings share.
	text  string
	pos   int
	depth int
	// buf holds the last string that needed unescaping.
	buf []byte
}

// newDecoder returns a decoder with its cursor on the first token of data.
func newDecoder(data []byte) decoder {
	d := decoder{data: data, text: string(data)}
	d.space()
	return d
}

// The struct decoders, each field listed in the order AppendJSON writes
// it, with the decoder of its value.
var (
	decodeDecision = structOf(
		field("v", func(d *decoder, x *Decision) bool { return d.int(&x.V) }),
		field("event", func(d *decoder, x *Decision) bool { return decodeEvent(d, &x.Event) }),
		field("device", func(d *decoder, x *Decision) bool { return decodeDevice(d, &x.Device) }),
		field("risk", func(d *decoder, x *Decision) bool { return d.float(&x.Risk) }),
		field("action", func(d *decoder, x *Decision) bool { return d.str(&x.Action) }),
		field("scores", func(d *decoder, x *Decision) bool { return decodeScores(d, &x.Scores) }),
		field("signals", func(d *decoder, x *Decision) bool { return sliceOf(d, &x.Signals, (*decoder).str) }),
		field("policy", func(d *decoder, x *Decision) bool { return ptr(d, &x.Policy, decodePolicy) }),
		field("contributions", func(d *decoder, x *Decision) bool {
			return sliceOf(d, &x.Contributions, decodeContribution)
		}),
		field("ip", func(d *decoder, x *Decision) bool { return ptr(d, &x.IP, decodeIPInfo) }),
		field("email", func(d *decoder, x *Decision) bool { return ptr(d, &x.Email, decodeEmailInfo) }),
		field("trusted", func(d *decoder, x *Decision) bool { return d.bool(&x.Trusted) }),
		field("lists", func(d *decoder, x *Decision) bool { return sliceOf(d, &x.Lists, decodeListMatch) }),
		field("impersonated", func(d *decoder, x *Decision) bool { return d.bool(&x.Impersonated) }),
		field("sessions", func(d *decoder, x *Decision) bool { return sliceOf(d, &x.Sessions, decodeSessionChange) }),
	)
	decodeEvent = structOf(
		field("v", func(d *decoder, e *Event) bool { return d.int(&e.V) }),
		field("id", func(d *decoder, e *Event) bool { return d.str(&e.ID) }),
		field("app_id", func(d *decoder, e *Event) bool { return d.str(&e.AppID) }),
		field("kind", func(d *decoder, e *Event) bool { return d.str((*string)(&e.Kind)) }),
		field("type", func(d *decoder, e *Event) bool { return d.str(&e.Type) }),
		field("status", func(d *decoder, e *Event) bool { return d.str(&e.Status) }),
		field("name", func(d *decoder, e *Event) bool { return d.str(&e.Name) }),
		field("legacy_event", func(d *decoder, e *Event) bool { return d.str(&e.LegacyEvent) }),
		field("user", func(d *decoder, e *Event) bool { return decodeUser(d, &e.User) }),
		field("context", func(d *decoder, e *Event) bool { return decodeContext(d, &e.Context) }),
		field("properties", func(d *decoder, e *Event) bool { return d.raw(&e.Properties) }),
		field("params", func(d *decoder, e *Event) bool { return d.raw(&e.Params) }),
		field("matching_user_id", func(d *decoder, e *Event) bool { return d.str(&e.MatchingUserID) }),
		field("extra", func(d *decoder, e *Event) bool { return mapOf(d, &e.Extra, (*decoder).rawValue) }),
		field("options", func(d *decoder, e *Event) bool { return ptr(d, &e.Options, decodeOptions) }),
		field("created_at", func(d *decoder, e *Event) bool { return ptr(d, &e.CreatedAt, (*decoder).time) }),
		field("sent_at", func(d *decoder, e *Event) bool { return ptr(d, &e.SentAt, (*decoder).time) }),
		field("received_at", func(d *decoder, e *Event) bool { return d.time(&e.ReceivedAt) }),
		field("device", func(d *decoder, e *Event) bool { return ptr(d, &e.Device, decodeDeviceRef) }),
		field("reply_to", func(d *decoder, e *Event) bool { return d.str(&e.ReplyTo) }),
	)
	decodeUser = structOf(
		field("id", func(d *decoder, u *User) bool { return d.str(&u.ID) }),
		field("email", func(d *decoder, u *User) bool { return d.str(&u.Email) }),
		field("phone", func(d *decoder, u *User) bool { return d.str(&u.Phone) }),
		field("name", func(d *decoder, u *User) bool { return d.str(&u.Name) }),
		field("registered_at", func(d *decoder, u *User) bool { return ptr(d, &u.RegisteredAt, (*decoder).time) }),
		field("traits", func(d *decoder, u *User) bool { return d.raw(&u.Traits) }),
	)
	decodeContext = structOf(
		field("ip", func(d *decoder, c *Context) bool { return d.str(&c.IP) }),
		field("headers", func(d *decoder, c *Context) bool { return mapOf(d, &c.Headers, (*decoder).stringValue) }),
		field("request_token", func(d *decoder, c *Context) bool { return d.str(&c.RequestToken) }),
		field("client_id", func(d *decoder, c *Context) bool { return d.str(&c.ClientID) }),
		field("library", func(d *decoder, c *Context) bool { return ptr(d, &c.Library, decodeLibrary) }),
	)
	decodeLibrary = structOf(
		field("name", func(d *decoder, l *Library) bool { return d.str(&l.Name) }),
		field("version", func(d *decoder, l *Library) bool { return d.str(&l.Version) }),
	)
	decodeOptions = structOf(
		field("skip_request_token_validation", func(d *decoder, o *Options) bool {
			return d.bool(&o.SkipRequestTokenValidation)
		}),
		field("skip_context_validation", func(d *decoder, o *Options) bool { return d.bool(&o.SkipContextValidation) }),
		field("expand", func(d *decoder, o *Options) bool { return sliceOf(d, &o.Expand, (*decoder).str) }),
		field("test_app", func(d *decoder, o *Options) bool { return d.bool(&o.TestApp) }),
	)
	decodeDeviceRef = structOf(
		field("token", func(d *decoder, r *DeviceRef) bool { return d.str(&r.Token) }),
		field("fingerprint", func(d *decoder, r *DeviceRef) bool { return d.str(&r.Fingerprint) }),
	)
	decodeDevice = structOf(
		field("token", func(d *decoder, v *Device) bool { return d.str(&v.Token) }),
		field("fingerprint", func(d *decoder, v *Device) bool { return d.str(&v.Fingerprint) }),
		field("user_agent", func(d *decoder, v *Device) bool { return decodeUserAgent(d, &v.UserAgent) }),
	)
	decodeUserAgent = structOf(
		field("raw", func(d *decoder, u *UserAgent) bool { return d.str(&u.Raw) }),
		field("browser", func(d *decoder, u *UserAgent) bool { return d.str(&u.Browser) }),
		field("browser_version", func(d *decoder, u *UserAgent) bool { return d.str(&u.BrowserVersion) }),
		field("browser_major", func(d *decoder, u *UserAgent) bool { return d.str(&u.BrowserMajor) }),
		field("browser_type", func(d *decoder, u *UserAgent) bool { return d.str(&u.BrowserType) }),
		field("engine", func(d *decoder, u *UserAgent) bool { return d.str(&u.Engine) }),
		field("os", func(d *decoder, u *UserAgent) bool { return d.str(&u.OS) }),
		field("os_version", func(d *decoder, u *UserAgent) bool { return d.str(&u.OSVersion) }),
		field("os_major", func(d *decoder, u *UserAgent) bool { return d.str(&u.OSMajor) }),
		field("platform", func(d *decoder, u *UserAgent) bool { return d.str(&u.Platform) }),
		field("device_family", func(d *decoder, u *UserAgent) bool { return d.str(&u.DeviceFamily) }),
		field("device_brand", func(d *decoder, u *UserAgent) bool { return d.str(&u.DeviceBrand) }),
		field("device_model", func(d *decoder, u *UserAgent) bool { return d.str(&u.DeviceModel) }),
		field("device_type", func(d *decoder, u *UserAgent) bool { return d.str(&u.DeviceType) }),
	)
	decodeScores = structOf(
		field("account_takeover", func(d *decoder, s *Scores) bool { return d.float(&s.AccountTakeover) }),
		field("account_abuse", func(d *decoder, s *Scores) bool { return d.float(&s.AccountAbuse) }),
		field("bot", func(d *decoder, s *Scores) bool { return d.float(&s.Bot) }),
	)
	decodePolicy = structOf(
		field("action", func(d *decoder, p *PolicyOutcome) bool { return d.str(&p.Action) }),
		field("id", func(d *decoder, p *PolicyOutcome) bool { return d.str(&p.ID) }),
		field("name", func(d *decoder, p *PolicyOutcome) bool { return d.str(&p.Name) }),
		field("revision_id", func(d *decoder, p *PolicyOutcome) bool { return d.str(&p.RevisionID) }),
	)
	decodeContribution = structOf(
		field("name", func(d *decoder, c *Contribution) bool { return d.str(&c.Name) }),
		field("kind", func(d *decoder, c *Contribution) bool { return d.str(&c.Kind) }),
		field("value", func(d *decoder, c *Contribution) bool { return d.float(&c.Value) }),
	)
	decodeIPInfo = structOf(
		field("country_code", func(d *decoder, ip *IPInfo) bool { return d.str(&ip.CountryCode) }),
		field("region", func(d *decoder, ip *IPInfo) bool { return d.str(&ip.Region) }),
		field("city", func(d *decoder, ip *IPInfo) bool { return d.str(&ip.City) }),
		field("lat", func(d *decoder, ip *IPInfo) bool { return d.float(&ip.Lat) }),
		field("lon", func(d *decoder, ip *IPInfo) bool { return d.float(&ip.Lon) }),
		field("asn", func(d *decoder, ip *IPInfo) bool { return d.uint32(&ip.ASN) }),
		field("isp", func(d *decoder, ip *IPInfo) bool { return d.str(&ip.ISP) }),
		field("datacenter", func(d *decoder, ip *IPInfo) bool { return d.bool(&ip.Datacenter) }),
		field("proxy", func(d *decoder, ip *IPInfo) bool { return d.bool(&ip.Proxy) }),
		field("tor", func(d *decoder, ip *IPInfo) bool { return d.bool(&ip.Tor) }),
	)
	decodeEmailInfo = structOf(
		field("normalized", func(d *decoder, e *EmailInfo) bool { return d.str(&e.Normalized) }),
		field("domain", func(d *decoder, e *EmailInfo) bool { return d.str(&e.Domain) }),
		field("disposable", func(d *decoder, e *EmailInfo) bool { return d.bool(&e.Disposable) }),
		field("valid", func(d *decoder, e *EmailInfo) bool { return d.bool(&e.Valid) }),
	)
	decodeListMatch = structOf(
		field("list_id", func(d *decoder, m *ListMatch) bool { return d.str(&m.ListID) }),
		field("item_id", func(d *decoder, m *ListMatch) bool { return d.str(&m.ItemID) }),
		field("field", func(d *decoder, m *ListMatch) bool { return d.str(&m.Field) }),
	)
	decodeSessionChange = structOf(
		field("uuid", func(d *decoder, c *SessionChange) bool { return d.str(&c.UUID) }),
		field("id", func(d *decoder, c *SessionChange) bool { return d.str(&c.ID) }),
		field("device_token", func(d *decoder, c *SessionChange) bool { return d.str(&c.DeviceToken) }),
		field("status", func(d *decoder, c *SessionChange) bool { return d.str(&c.Status) }),
		field("reason", func(d *decoder, c *SessionChange) bool { return d.str(&c.Reason) }),
		field("started_at_ms", func(d *decoder, c *SessionChange) bool { return d.int64(&c.StartedAtMs) }),
		field("last_activity_at_ms", func(d *decoder, c *SessionChange) bool { return d.int64(&c.LastActivityAtMs) }),
		field("ended_at_ms", func(d *decoder, c *SessionChange) bool { return d.int64(&c.EndedAtMs) }),
	)
)

// A structField is a JSON key of a struct type T and the decoder of its
// value.
type structField[T any] struct {
	name string
	// member is the key as AppendJSON writes it: quoted, with its colon.
	member string
	decode func(*decoder, *T) bool
}

func field[T any](name string, decode func(*decoder, *T) bool) structField[T] {
	return structField[T]{name, `"` + name + `":`, decode}
}

// structOf returns the decoder of the struct type T that has the fields
// listed, in AppendJSON's order.
func structOf[T any](fields ...structField[T]) func(*decoder, *T) bool {
	return func(d *decoder, v *T) bool { return decodeStruct(d, v, fields) }
}

// decodeStruct decodes a JSON object into v, a struct with the fields
// listed; null leaves v as it is. Each key is looked for first among the
// fields after the last one decoded, comparing the input with their
// quoted keys in turn: AppendJSON's output, which writes the fields in
// that order, is decoded without scanning any key. Any other key is
// scanned and looked up.
func decodeStruct[T any](d *decoder, v *T, fields []structField[T]) bool {
	if d.peek() == 'n' {
		return d.null()
	}
	if !d.enter('{') {
		return false
	}
	if d.peek() == '}' {
		return d.leave()
	}
	for next := 0; ; {
		i, ok := member(d, fields, next)
		if !ok {
			return false
		}
		if i >= 0 {
			if !fields[i].decode(d, v) {
				return false
			}
			next = i + 1
		}
		if more, ok := d.more('}'); !more {
			return ok
		}
	}
}

// member consumes the key of an object's member and returns the index of
// its field, looking among fields[next:] first; for a key the struct does
// not have, it skips the value and returns -1.
func member[T any](d *decoder, fields []structField[T], next int) (int, bool) {
	rest := d.text[d.pos:]
	for i := next; i < len(fields); i++ {
		if strings.HasPrefix(rest, fields[i].member) {
			d.pos += len(fields[i].member)
			d.space()
			return i, true
		}
	}
	key, ok := d.key()
	if !ok {
		return -1, false
	}
	for i := range fields {
		if fields[i].name == key {
			return i, true
		}
	}
	return -1, d.unknown(key)
}

// unknown skips the value of a key the struct has no field for. A key
// with an upper-case letter or a non-ASCII character may still match a
// field (encoding/json matches keys case-insensitively, with Unicode
// folding: "\u212aind" is "kind"); such keys are left to the fallback.
// Every field name is lower-case ASCII, so no other key can match one.
func (d *decoder) unknown(key string) bool {
	for _, c := range []byte(key) {
		if 'A' <= c && c <= 'Z' || c >= utf8.RuneSelf {
			return false
		}
	}
	return d.skip()
}

// Composite values.

// object decodes a JSON object, calling member with each key and the
// cursor on the key's value, which member must consume.
func (d *decoder) object(member func(key string) bool) bool {
	if !d.enter('{') {
		return false
	}
	if d.peek() == '}' {
		return d.leave()
	}
	for {
		key, ok := d.key()
		if !ok || !member(key) {
			return false
		}
		if more, ok := d.more('}'); !more {
			return ok
		}
	}
}

// array decodes a JSON array, calling elem with the cursor on each
// element, which elem must consume.
func (d *decoder) array(elem func() bool) bool {
	if !d.enter('[') {
		return false
	}
	if d.peek() == ']' {
		return d.leave()
	}
	for {
		if !elem() {
			return false
		}
		if more, ok := d.more(']'); !more {
			return ok
		}
	}
}

// key consumes an object's key, the colon after it and the whitespace
// after that.
func (d *decoder) key() (string, bool) {
	if d.peek() != '"' {
		return "", false
	}
	key, ok := d.stringText()
	d.space()
	if d.peek() != ':' {
		return "", false
	}
	d.pos++
	d.space()
	return key, ok
}

// more consumes what follows an object's member or an array's element: a
// comma (more is true) or close, the end of the object or array.
func (d *decoder) more(close byte) (more, ok bool) {
	d.space()
	switch d.peek() {
	case ',':
		d.pos++
		d.space()
		return true, true
	case close:
		return false, d.leave()
	}
	return false, false
}

// enter consumes open, the '{' or '[' of an object or array, and the
// whitespace after it.
func (d *decoder) enter(open byte) bool {
	if d.peek() != open || d.depth >= maxDepth {
		return false
	}
	d.pos++
	d.depth++
	d.space()
	return true
}

// leave consumes the '}' or ']' that closes an object or array.
func (d *decoder) leave() bool {
	d.pos++
	d.depth--
	return true
}

// ptr decodes into *p, allocating it first if it is nil; null sets it to
// nil. These are encoding/json's rules for pointers.
func ptr[T any](d *decoder, p **T, decode func(*decoder, *T) bool) bool {
	if d.peek() == 'n' {
		*p = nil
		return d.null()
	}
	if *p == nil {
		*p = new(T)
	}
	return decode(d, *p)
}

// mapOf decodes a JSON object into the map *p, making it first if it is
// nil; null sets it to nil. Each value is decoded by value into a zero V,
// which replaces any value the key had (encoding/json's rules for maps).
func mapOf[V any](d *decoder, p *map[string]V, value func(*decoder) (V, bool)) bool {
	if d.peek() == 'n' {
		*p = nil
		return d.null()
	}
	if d.peek() != '{' {
		return false
	}
	if *p == nil {
		*p = make(map[string]V)
	}
	m := *p
	return d.object(func(k string) bool {
		v, ok := value(d)
		m[k] = v
		return ok
	})
}

// sliceOf decodes a JSON array into the slice *p as encoding/json does:
// element i is decoded by elem into the slice's element i when the slice
// has one (duplicate keys merge), the slice is cut to the array's length,
// [] gives an empty slice and null a nil one.
func sliceOf[T any](d *decoder, p *[]T, elem func(*decoder, *T) bool) bool {
	if d.peek() == 'n' {
		*p = nil
		return d.null()
	}
	s := *p
	i := 0
	ok := d.array(func() bool {
		if i == len(s) {
			switch {
			case i < cap(s):
				s = s[:i+1] // encoding/json, too, reuses what is there
			case i == 0:
				// A few elements is the rule; the capacity never
				// shows in the elements.
				s = make([]T, 1, 4)
			default:
				var zero T
				s = append(s, zero)
			}
		}
		i++
		return elem(d, &s[i-1])
	})
	if i == 0 {
		s = []T{}
	}
	*p = s[:i]
	return ok
}

// skip consumes any JSON value, checking its syntax as encoding/json does
// (strings may hold invalid UTF-8).
func (d *decoder) skip() bool {
	switch d.peek() {
	case '{':
		return d.object(func(string) bool { return d.skip() })
	case '[':
		return d.array(d.skip)
	case '"':
		_, _, ok := d.stringBytes()
		return ok
	case 't':
		return d.literal("true")
	case 'f':
		return d.literal("false")
	case 'n':
		return d.null()
	}
	_, ok := d.number()
	return ok
}

// Scalars. null leaves them as they are (encoding/json's rule).

// raw decodes any value into a RawMessage: a copy of its bytes (null
// included, as RawMessage's UnmarshalJSON keeps it).
func (d *decoder) raw(p *json.RawMessage) bool {
	v, ok := d.rawValue()
	*p = v
	return ok
}

func (d *decoder) rawValue() (json.RawMessage, bool) {
	start := d.pos
	if !d.skip() {
		return nil, false
	}
	return append(json.RawMessage(nil), d.data[start:d.pos]...), true
}

// time decodes a JSON string with time.Time's UnmarshalJSON, given the
// quoted bytes as encoding/json gives them.
func (d *decoder) time(t *time.Time) bool {
	switch d.peek() {
	case 'n':
		return d.null()
	case '"':
		start := d.pos
		if _, _, ok := d.stringBytes(); !ok {
			return false
		}
		return t.UnmarshalJSON(d.data[start:d.pos]) == nil
	}
	return false
}

func (d *decoder) str(p *string) bool {
	switch d.peek() {
	case '"':
		s, ok := d.stringText()
		*p = s
		return ok
	case 'n':
		return d.null()
	}
	return false
}

// stringValue decodes a JSON string; null is "".
func (d *decoder) stringValue() (string, bool) {
	switch d.peek() {
	case 'n':
		return "", d.null()
	case '"':
		return d.stringText()
	}
	return "", false
}

func (d *decoder) bool(p *bool) bool {
	switch d.peek() {
	case 't':
		*p = true
		return d.literal("true")
	case 'f':
		*p = false
		return d.literal("false")
	case 'n':
		return d.null()
	}
	return false
}

func (d *decoder) float(p *float64) bool {
	if d.peek() == 'n' {
		return d.null()
	}
	lit, ok := d.number()
	if !ok {
		return false
	}
	f, err := strconv.ParseFloat(string(lit), 64)
	*p = f
	return err == nil
}

func (d *decoder) int(p *int) bool {
	if d.peek() == 'n' {
		return d.null()
	}
	n, _, ok := d.integer()
	*p = int(n)
	return ok && int64(*p) == n
}

func (d *decoder) int64(p *int64) bool {
	if d.peek() == 'n' {
		return d.null()
	}
	n, _, ok := d.integer()
	*p = n
	return ok
}

func (d *decoder) uint32(p *uint32) bool {
	if d.peek() == 'n' {
		return d.null()
	}
	n, neg, ok := d.integer()
	*p = uint32(n)
	// encoding/json parses unsigned fields with strconv.ParseUint, which
	// refuses a sign even on 0.
	return ok && !neg && n <= math.MaxUint32
}

// integer decodes a JSON number that is an integer of at most 18 digits,
// which cannot overflow an int64; longer ones are left to the fallback.
// neg reports a minus sign.
func (d *decoder) integer() (n int64, neg, ok bool) {
	lit, ok := d.number()
	if !ok {
		return 0, false, false
	}
	if neg = lit[0] == '-'; neg {
		lit = lit[1:]
	}
	if len(lit) > 18 {
		return 0, neg, false
	}
	for _, c := range lit {
		if c < '0' || c > '9' {
			return 0, neg, false // a fraction or an exponent: not an integer
		}
		n = n*10 + int64(c-'0')
	}
	if neg {
		n = -n
	}
	return n, neg, true
}

// Tokens.

// peek returns the byte at the cursor, 0 at the end of the input (no JSON
// value starts with 0, so the callers' checks fail there).
func (d *decoder) peek() byte {
	if d.pos < len(d.data) {
		return d.data[d.pos]
	}
	return 0
}

// space skips whitespace.
func (d *decoder) space() {
	for d.pos < len(d.data) {
		if c := d.data[d.pos]; c > ' ' || c != ' ' && c != '\t' && c != '\n' && c != '\r' {
			return
		}
		d.pos++
	}
}

// end reports whether only whitespace is left.
func (d *decoder) end() bool {
	d.space()
	return d.pos == len(d.data)
}

func (d *decoder) null() bool { return d.literal("null") }

func (d *decoder) literal(lit string) bool {
	if len(d.data)-d.pos < len(lit) || string(d.data[d.pos:d.pos+len(lit)]) != lit {
		return false
	}
	d.pos += len(lit)
	return true
}

// number consumes a JSON number and returns its text.
func (d *decoder) number() ([]byte, bool) {
	data, i := d.data, d.pos
	if i < len(data) && data[i] == '-' {
		i++
	}
	switch {
	case i < len(data) && data[i] == '0':
		i++
	case i < len(data) && '1' <= data[i] && data[i] <= '9':
		i = digits(data, i+1)
	default:
		return nil, false
	}
	if i < len(data) && data[i] == '.' {
		if i = digits(data, i+1); data[i-1] == '.' {
			return nil, false
		}
	}
	if i < len(data) && (data[i] == 'e' || data[i] == 'E') {
		i++
		if i < len(data) && (data[i] == '+' || data[i] == '-') {
			i++
		}
		j := digits(data, i)
		if j == i {
			return nil, false
		}
		i = j
	}
	lit := data[d.pos:i]
	d.pos = i
	return lit, true
}

// digits returns the index of the first byte at or after i that is not
// a decimal digit.
func digits(data []byte, i int) int {
	for i < len(data) && '0' <= data[i] && data[i] <= '9' {
		i++
	}
	return i
}

// plainString marks the bytes a JSON string holds as they are: ASCII
// other than control characters, the quote and the backslash.
var plainString = func() (t [256]bool) {
	for c := ' '; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// stringText consumes a JSON string and returns its value: a slice of
// d.text when the string is plain ASCII, else a new string.
func (d *decoder) stringText() (string, bool) {
	start := d.pos + 1 // past the quote
	if end := plainEnd(d.data, start); end < len(d.data) && d.data[end] == '"' {
		d.pos = end + 1
		return d.text[start:end], true
	}
	b, plain, ok := d.stringBytes()
	if plain {
		return d.text[start : start+len(b)], ok
	}
	return string(b), ok
}

// stringBytes consumes a JSON string and returns its value. A plain
// string (no escapes, valid UTF-8) is returned as a slice of the input;
// any other is decoded into d.buf.
func (d *decoder) stringBytes() (value []byte, plain, ok bool) {
	data := d.data
	start := d.pos + 1 // past the quote
	for i := plainEnd(data, start); i < len(data); i = plainEnd(data, i) {
		switch c := data[i]; {
		case c == '"':
			d.pos = i + 1
			return data[start:i], true, true
		case c >= utf8.RuneSelf:
			r, size := utf8.DecodeRune(data[i:])
			if r == utf8.RuneError && size == 1 {
				value, ok = d.unquote(start, i)
				return value, false, ok
			}
			i += size
		default: // a backslash or a control character
			value, ok = d.unquote(start, i)
			return value, false, ok
		}
	}
	return nil, false, false
}

// plainEnd returns the index of the first byte at or after i that is not
// plain ASCII (see plainString), or len(data). It looks at eight bytes at
// a time.
func plainEnd(data []byte, i int) int {
	for ; i+8 <= len(data); i += 8 {
		if m := special(binary.LittleEndian.Uint64(data[i:])); m != 0 {
			return i + bits.TrailingZeros64(m)/8
		}
	}
	for i < len(data) && plainString[data[i]] {
		i++
	}
	return i
}

// special returns a mask with the high bit set in each of the eight
// bytes of w (little-endian) that is not plain: a quote, a backslash, a
// control character or a non-ASCII byte. These are the classic SWAR tests
// for a zero byte and for a byte less than n; a byte above a flagged one
// may be flagged wrongly, but the lowest flagged byte is always right.
func special(w uint64) uint64 {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	quote := w ^ ones*'"'
	backslash := w ^ ones*'\\'
	return ((quote-ones)&^quote | (backslash-ones)&^backslash | (w - ones*' ') | w) & highs
}

// unquote decodes the string that starts at start into d.buf as
// encoding/json does; data[start:i] needs no decoding.
func (d *decoder) unquote(start, i int) ([]byte, bool) {
	b := append(d.buf[:0], d.data[start:i]...)
	for i < len(d.data) {
		switch c := d.data[i]; {
		case c == '"':
			d.pos = i + 1
			d.buf = b
			return b, true
		case c == '\\':
			var ok bool
			if b, i, ok = d.escape(b, i); !ok {
				return nil, false
			}
		case c < ' ':
			return nil, false
		case c < utf8.RuneSelf:
			b = append(b, c)
			i++
		default:
			r, size := utf8.DecodeRune(d.data[i:])
			b = utf8.AppendRune(b, r) // invalid UTF-8 is U+FFFD
			i += size
		}
	}
	return nil, false
}

// escape decodes the escape sequence at data[i] (a backslash) onto b and
// returns the index after it.
func (d *decoder) escape(b []byte, i int) ([]byte, int, bool) {
	if i+1 >= len(d.data) {
		return nil, 0, false
	}
	switch c := d.data[i+1]; c {
	case '"', '\\', '/':
		return append(b, c), i + 2, true
	case 'b':
		return append(b, '\b'), i + 2, true
	case 'f':
		return append(b, '\f'), i + 2, true
	case 'n':
		return append(b, '\n'), i + 2, true
	case 'r':
		return append(b, '\r'), i + 2, true
	case 't':
		return append(b, '\t'), i + 2, true
	case 'u':
		r := hex4(d.data[i:])
		if r < 0 {
			return nil, 0, false
		}
		i += 6
		if utf16.IsSurrogate(r) {
			// A valid pair is one rune; anything else is U+FFFD, and the
			// next escape, if any, is decoded on its own.
			if dec := utf16.DecodeRune(r, hex4(d.data[i:])); dec != utf8.RuneError {
				return utf8.AppendRune(b, dec), i + 6, true
			}
			r = utf8.RuneError
		}
		return utf8.AppendRune(b, r), i, true
	}
	return nil, 0, false
}

// hex4 returns the code of the \uXXXX escape at the start of s, or -1.
func hex4(s []byte) rune {
	if len(s) < 6 || s[0] != '\\' || s[1] != 'u' {
		return -1
	}
	var r rune
	for _, c := range s[2:6] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return -1
		}
		r = r<<4 | rune(c)
	}
	return r
}
