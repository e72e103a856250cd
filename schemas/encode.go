package schemas

import (
	"bytes"
	"encoding/json"
	"math"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"
)

// AppendJSON appends the JSON encoding of the event to b. It is the hot
// path's encoder (every accepted call is encoded once by ingest and again,
// inside its decision, by the scorer): it writes exactly what encoding/json
// writes for Event, field for field, without reflection and without the
// re-validation reflective encoders do for time.Time and json.RawMessage.
// Map keys are sorted, so the encoding is deterministic. TestAppendJSON
// checks it against encoding/json on values with every field set.
func (e *Event) AppendJSON(b []byte) []byte {
	b = append(b, `{"v":`...)
	b = strconv.AppendInt(b, int64(e.V), 10)
	b = appendField(b, "id", e.ID)
	b = appendField(b, "app_id", e.AppID)
	b = appendField(b, "kind", string(e.Kind))
	b = appendOptField(b, "type", e.Type)
	b = appendOptField(b, "status", e.Status)
	b = appendOptField(b, "name", e.Name)
	b = appendOptField(b, "legacy_event", e.LegacyEvent)
	b = append(b, `,"user":`...)
	b = e.User.appendJSON(b)
	b = append(b, `,"context":`...)
	b = e.Context.appendJSON(b)
	b = appendOptRaw(b, "properties", e.Properties)
	b = appendOptRaw(b, "params", e.Params)
	b = appendOptField(b, "matching_user_id", e.MatchingUserID)
	if len(e.Extra) > 0 {
		b = append(b, `,"extra":`...)
		b = appendSortedObject(b, e.Extra, appendRaw)
	}
	if o := e.Options; o != nil {
		b = append(b, `,"options":{`...)
		n := len(b)
		b = appendOptBool(b, "skip_request_token_validation", o.SkipRequestTokenValidation)
		b = appendOptBool(b, "skip_context_validation", o.SkipContextValidation)
		if len(o.Expand) > 0 {
			b = append(b, `,"expand":`...)
			b = appendStrings(b, o.Expand)
		}
		b = appendOptBool(b, "test_app", o.TestApp)
		b = closeObject(b, n)
	}
	b = appendOptTime(b, "created_at", e.CreatedAt)
	b = appendOptTime(b, "sent_at", e.SentAt)
	b = append(b, `,"received_at":`...)
	b = appendTime(b, e.ReceivedAt)
	if d := e.Device; d != nil {
		b = append(b, `,"device":{"token":`...)
		b = appendString(b, d.Token)
		b = appendField(b, "fingerprint", d.Fingerprint)
		b = append(b, '}')
	}
	b = appendOptField(b, "reply_to", e.ReplyTo)
	return append(b, '}')
}

func (u *User) appendJSON(b []byte) []byte {
	b = append(b, '{')
	n := len(b)
	b = appendOptField(b, "id", u.ID)
	b = appendOptField(b, "email", u.Email)
	b = appendOptField(b, "phone", u.Phone)
	b = appendOptField(b, "name", u.Name)
	b = appendOptTime(b, "registered_at", u.RegisteredAt)
	b = appendOptRaw(b, "traits", u.Traits)
	return closeObject(b, n)
}

func (c *Context) appendJSON(b []byte) []byte {
	b = append(b, '{')
	n := len(b)
	b = appendOptField(b, "ip", c.IP)
	if len(c.Headers) > 0 {
		b = append(b, `,"headers":`...)
		b = appendSortedObject(b, c.Headers, appendString)
	}
	b = appendOptField(b, "request_token", c.RequestToken)
	b = appendOptField(b, "client_id", c.ClientID)
	if l := c.Library; l != nil {
		b = append(b, `,"library":{`...)
		m := len(b)
		b = appendOptField(b, "name", l.Name)
		b = appendOptField(b, "version", l.Version)
		b = closeObject(b, m)
	}
	return closeObject(b, n)
}

// AppendJSON appends the JSON encoding of the decision to b: what
// encoding/json writes for Decision, without reflection (see
// Event.AppendJSON).
func (d *Decision) AppendJSON(b []byte) []byte {
	b = append(b, `{"v":`...)
	b = strconv.AppendInt(b, int64(d.V), 10)
	b = append(b, `,"event":`...)
	b = d.Event.AppendJSON(b)
	b = append(b, `,"device":{`...)
	n := len(b)
	b = appendOptField(b, "token", d.Device.Token)
	b = appendOptField(b, "fingerprint", d.Device.Fingerprint)
	b = append(b, `,"user_agent":`...)
	b = d.Device.UserAgent.appendJSON(b)
	b = closeObject(b, n)
	b = append(b, `,"risk":`...)
	b = appendFloat(b, d.Risk)
	b = appendOptField(b, "action", d.Action)
	b = append(b, `,"scores":{"account_takeover":`...)
	b = appendFloat(b, d.Scores.AccountTakeover)
	b = append(b, `,"account_abuse":`...)
	b = appendFloat(b, d.Scores.AccountAbuse)
	b = append(b, `,"bot":`...)
	b = appendFloat(b, d.Scores.Bot)
	b = append(b, '}')
	if len(d.Signals) > 0 {
		b = append(b, `,"signals":`...)
		b = appendStrings(b, d.Signals)
	}
	if p := d.Policy; p != nil {
		b = append(b, `,"policy":{"action":`...)
		b = appendString(b, p.Action)
		b = appendField(b, "id", p.ID)
		b = appendField(b, "name", p.Name)
		b = appendField(b, "revision_id", p.RevisionID)
		b = append(b, '}')
	}
	if len(d.Contributions) > 0 {
		b = append(b, `,"contributions":`...)
		b = appendArray(b, d.Contributions, func(b []byte, c *Contribution) []byte {
			b = append(b, `{"name":`...)
			b = appendString(b, c.Name)
			b = appendField(b, "kind", c.Kind)
			b = append(b, `,"value":`...)
			b = appendFloat(b, c.Value)
			return append(b, '}')
		})
	}
	if ip := d.IP; ip != nil {
		b = append(b, `,"ip":{`...)
		m := len(b)
		b = appendOptField(b, "country_code", ip.CountryCode)
		b = appendOptField(b, "region", ip.Region)
		b = appendOptField(b, "city", ip.City)
		b = appendOptFloat(b, "lat", ip.Lat)
		b = appendOptFloat(b, "lon", ip.Lon)
		if ip.ASN != 0 {
			b = append(b, `,"asn":`...)
			b = strconv.AppendUint(b, uint64(ip.ASN), 10)
		}
		b = appendOptField(b, "isp", ip.ISP)
		b = appendOptBool(b, "datacenter", ip.Datacenter)
		b = appendOptBool(b, "proxy", ip.Proxy)
		b = appendOptBool(b, "tor", ip.Tor)
		b = closeObject(b, m)
	}
	if em := d.Email; em != nil {
		b = append(b, `,"email":{`...)
		m := len(b)
		b = appendOptField(b, "normalized", em.Normalized)
		b = appendOptField(b, "domain", em.Domain)
		b = appendOptBool(b, "disposable", em.Disposable)
		b = appendOptBool(b, "valid", em.Valid)
		b = closeObject(b, m)
	}
	b = appendOptBool(b, "trusted", d.Trusted)
	if len(d.Lists) > 0 {
		b = append(b, `,"lists":`...)
		b = appendArray(b, d.Lists, func(b []byte, m *ListMatch) []byte {
			b = append(b, `{"list_id":`...)
			b = appendString(b, m.ListID)
			b = appendField(b, "item_id", m.ItemID)
			b = appendField(b, "field", m.Field)
			return append(b, '}')
		})
	}
	b = appendOptBool(b, "impersonated", d.Impersonated)
	if len(d.Sessions) > 0 {
		b = append(b, `,"sessions":`...)
		b = appendArray(b, d.Sessions, func(b []byte, c *SessionChange) []byte {
			b = append(b, `{"uuid":`...)
			b = appendString(b, c.UUID)
			b = appendField(b, "id", c.ID)
			b = appendField(b, "device_token", c.DeviceToken)
			b = appendField(b, "status", c.Status)
			b = appendOptField(b, "reason", c.Reason)
			b = append(b, `,"started_at_ms":`...)
			b = strconv.AppendInt(b, c.StartedAtMs, 10)
			b = append(b, `,"last_activity_at_ms":`...)
			b = strconv.AppendInt(b, c.LastActivityAtMs, 10)
			b = appendOptInt(b, "ended_at_ms", c.EndedAtMs)
			return append(b, '}')
		})
	}
	return append(b, '}')
}

// AppendJSON appends the JSON encoding of the notification to b: what
// encoding/json writes for Notification, without reflection (see
// Event.AppendJSON). Data is trusted to be valid JSON, as appendRaw trusts
// raw values (Moat's notifications carry what its encoders wrote): it is
// written as it is when it is compact and holds nothing encoding/json
// escapes in raw values (<, >, &, U+2028, U+2029), else compacted and
// escaped as encoding/json does.
func (n *Notification) AppendJSON(b []byte) ([]byte, error) {
	b = append(b, `{"v":`...)
	b = strconv.AppendInt(b, int64(n.V), 10)
	b = appendField(b, "id", n.ID)
	b = appendField(b, "app_id", n.AppID)
	b = appendField(b, "type", n.Type)
	b = append(b, `,"created_at":`...)
	t, err := appendTimeJSON(b, n.CreatedAt)
	if err != nil {
		return nil, err
	}
	b = t
	b = appendOptField(b, "user_id", n.UserID)
	b = appendOptField(b, "device_token", n.DeviceToken)
	b = appendOptField(b, "event_id", n.EventID)
	b = append(b, `,"data":`...)
	if b, err = appendRawJSON(b, n.Data); err != nil {
		return nil, err
	}
	b = appendOptField(b, "endpoint_id", n.EndpointID)
	return append(b, '}'), nil
}

// appendTimeJSON writes t as time.Time's MarshalJSON does, with its error
// for a year outside 0..9999.
func appendTimeJSON(b []byte, t time.Time) ([]byte, error) {
	if y := t.Year(); y < 0 || y >= 10000 {
		_, err := t.MarshalJSON()
		return nil, err
	}
	return appendTime(b, t), nil
}

// appendRawJSON writes a json.RawMessage as encoding/json does: compacted,
// with <, >, &, U+2028 and U+2029 escaped; nil is null.
func appendRawJSON(b []byte, v json.RawMessage) ([]byte, error) {
	if v == nil {
		return append(b, "null"...), nil
	}
	plain := len(v) > 0
	for i := 0; i < len(v); i++ {
		if !rawSpecial[v[i]] {
			continue
		}
		// U+2028 and U+2029 are e2 80 a8 and e2 80 a9
		if v[i] != 0xe2 || i+2 < len(v) && v[i+1] == 0x80 && (v[i+2] == 0xa8 || v[i+2] == 0xa9) {
			plain = false
			break
		}
	}
	if plain {
		return append(b, v...), nil
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, v); err != nil {
		return nil, err
	}
	var escaped bytes.Buffer
	json.HTMLEscape(&escaped, compact.Bytes())
	return append(b, escaped.Bytes()...), nil
}

// rawSpecial marks the bytes after which a raw value may need compacting
// or escaping: whitespace, <, >, & and the first byte of U+2028/U+2029.
var rawSpecial = func() (t [256]bool) {
	for _, c := range []byte(" \t\n\r<>&\xe2") {
		t[c] = true
	}
	return t
}()

func appendOptInt(b []byte, name string, v int64) []byte {
	if v == 0 {
		return b
	}
	b = append(b, ',', '"')
	b = append(b, name...)
	b = append(b, '"', ':')
	return strconv.AppendInt(b, v, 10)
}

func (u *UserAgent) appendJSON(b []byte) []byte {
	b = append(b, '{')
	n := len(b)
	b = appendOptField(b, "raw", u.Raw)
	b = appendOptField(b, "browser", u.Browser)
	b = appendOptField(b, "browser_version", u.BrowserVersion)
	b = appendOptField(b, "browser_major", u.BrowserMajor)
	b = appendOptField(b, "browser_type", u.BrowserType)
	b = appendOptField(b, "engine", u.Engine)
	b = appendOptField(b, "os", u.OS)
	b = appendOptField(b, "os_version", u.OSVersion)
	b = appendOptField(b, "os_major", u.OSMajor)
	b = appendOptField(b, "platform", u.Platform)
	b = appendOptField(b, "device_family", u.DeviceFamily)
	b = appendOptField(b, "device_brand", u.DeviceBrand)
	b = appendOptField(b, "device_model", u.DeviceModel)
	b = appendOptField(b, "device_type", u.DeviceType)
	return closeObject(b, n)
}

// appendSortedObject writes m as a JSON object with its keys sorted, as
// encoding/json does, each value written by value.
func appendSortedObject[V any](b []byte, m map[string]V, value func([]byte, V) []byte) []byte {
	var small [16]string // headers and extras are few: no allocation
	keys := small[:0]
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	b = append(b, '{')
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, k)
		b = append(b, ':')
		b = value(b, m[k])
	}
	return append(b, '}')
}

// The helpers below write `,"name":value`; an object whose first member was
// written this way has a leading comma that closeObject removes.

// closeObject ends an object opened at b[n-1] ('{'), dropping the comma
// before its first member.
func closeObject(b []byte, n int) []byte {
	if len(b) > n && b[n] == ',' {
		b = append(b[:n], b[n+1:]...)
	}
	return append(b, '}')
}

func appendField(b []byte, name, v string) []byte {
	b = append(b, ',', '"')
	b = append(b, name...)
	b = append(b, '"', ':')
	return appendString(b, v)
}

func appendOptField(b []byte, name, v string) []byte {
	if v == "" {
		return b
	}
	return appendField(b, name, v)
}

func appendOptBool(b []byte, name string, v bool) []byte {
	if !v {
		return b
	}
	b = append(b, ',', '"')
	b = append(b, name...)
	return append(b, `":true`...)
}

func appendOptFloat(b []byte, name string, v float64) []byte {
	if v == 0 {
		return b
	}
	b = append(b, ',', '"')
	b = append(b, name...)
	b = append(b, '"', ':')
	return appendFloat(b, v)
}

func appendOptRaw(b []byte, name string, v json.RawMessage) []byte {
	if len(v) == 0 {
		return b
	}
	b = append(b, ',', '"')
	b = append(b, name...)
	b = append(b, '"', ':')
	return appendRaw(b, v)
}

// appendRaw writes a raw JSON value; nil is null. The value is trusted to
// be valid JSON (the decoders only keep validated bytes).
func appendRaw(b []byte, v json.RawMessage) []byte {
	if len(v) == 0 {
		return append(b, "null"...)
	}
	return append(b, v...)
}

func appendOptTime(b []byte, name string, t *time.Time) []byte {
	if t == nil {
		return b
	}
	b = append(b, ',', '"')
	b = append(b, name...)
	b = append(b, '"', ':')
	return appendTime(b, *t)
}

// appendTime writes t as time.Time's MarshalJSON does (RFC 3339 with
// nanoseconds, trailing zeros trimmed).
func appendTime(b []byte, t time.Time) []byte {
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"')
}

func appendStrings(b []byte, ss []string) []byte {
	return appendArray(b, ss, func(b []byte, s *string) []byte { return appendString(b, *s) })
}

// appendArray writes xs as a JSON array, each element written by elem.
func appendArray[T any](b []byte, xs []T, elem func([]byte, *T) []byte) []byte {
	b = append(b, '[')
	for i := range xs {
		if i > 0 {
			b = append(b, ',')
		}
		b = elem(b, &xs[i])
	}
	return append(b, ']')
}

// appendFloat writes f as encoding/json does. NaN and infinities, which
// JSON cannot carry and Moat never produces, are written as 0.
func appendFloat(b []byte, f float64) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(b, '0')
	}
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		// clean up e-09 to e-9
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}

const hexDigits = "0123456789abcdef"

// plainASCII marks the bytes a JSON string carries unescaped.
var plainASCII = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\' && c != '<' && c != '>' && c != '&'
	}
	return t
}()

// AppendJSONString appends s as a JSON string exactly as encoding/json
// writes a string value (HTML-escaping on), for encoders outside this
// package that must match it byte for byte.
func AppendJSONString(b []byte, s string) []byte { return appendString(b, s) }

// appendString writes s as a JSON string the way encoding/json does:
// control characters, quotes, backslashes, <, > and & escaped, invalid
// UTF-8 replaced by U+FFFD, and U+2028/U+2029 escaped.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if plainASCII[c] {
			i++
			continue
		}
		if c < utf8.RuneSelf {
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
