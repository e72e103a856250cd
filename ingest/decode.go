package ingest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/moat-dev/moat/schemas"
)

// Limits enforced by Decode.
const (
	// MaxJSONDepth is the deepest nesting of objects and arrays accepted in a
	// body (the default max_nesting of Ruby's JSON.parse).
	MaxJSONDepth = 100
	// MaxIDLen bounds user ids and matching_user_id, in bytes.
	MaxIDLen = 1024
	// MaxEmailLen bounds email addresses, in bytes.
	MaxEmailLen = 1024
	// MaxRequestTokenLen bounds request tokens, in bytes.
	MaxRequestTokenLen = 8 << 10
)

// Decode parses one Castle API call body into an Event. It fills every field
// except V, ID, AppID and ReceivedAt (the handler sets those). hdr is the
// HTTP request's headers (for the legacy X-Castle-* headers); it may be nil.
// Client errors are *APIError (400 or 422); an unknown kind is a plain error.
// It never panics, keeps no reference to body, and is safe for concurrent use.
//
// Decode is lenient like Castle: unknown fields are ignored everywhere, ids
// may be numbers, headers may be an object or [name, value] pairs, and any
// type/status combination is accepted. Decisions where Castle's behaviour is
// not documented:
//   - "$custom" (or a legacy non-"$" event) without a name is accepted on
//     every kind; Castle asks for a name but the SDKs do not enforce it, and
//     rejecting it would lose the event.
//   - Member names are case-sensitive ("Type" is an unknown field).
//   - user.* wins over the legacy user_id/user_traits (and the older
//     top-level traits); type wins over event. email, name, phone and
//     registered_at are lifted from legacy user_traits only when they are
//     valid (traits are free-form, so a bad value there is kept in Traits,
//     never rejected). Phones, like ids, may be numbers.
//   - client_id "", "?", "_", "false", "null", "undefined" and non-strings
//     mean no client id.
//   - request_token is validated (printable ASCII, at most 8 KiB, surrounding
//     whitespace trimmed) wherever it is sent; on risk/filter with
//     skip_request_token_validation an invalid token is dropped instead.
//   - IPs are stored in canonical form (IPv4-mapped IPv6 unmapped, zone and
//     port removed).
//   - Cookie, Authorization and Proxy-Authorization header values are
//     replaced by "true" (the SDKs' scrub marker) so end users' credentials
//     never reach the log; ClientID falls back to the end user's
//     X-Castle-Client-Id header, then the __cid cookie, as Castle resolves it
//     server-side for SDKs that stopped sending client_id.
//   - Bodies nested deeper than MaxJSONDepth are 400 bad_request.
func Decode(kind schemas.Kind, body []byte, hdr http.Header) (schemas.Event, error) {
	if !kind.Known() {
		return schemas.Event{}, fmt.Errorf("ingest: decode: unknown kind %q", kind)
	}
	b, err := checkBody(body)
	if err != nil {
		return schemas.Event{}, err
	}
	// One copy of the body as a string: every string the event keeps is a
	// substring of it (or, when it had to be unescaped, its own copy), so
	// the event never references body, which the caller may reuse.
	d := decoder{ev: schemas.Event{Kind: kind}}
	if err := d.scan(string(b)); err != nil {
		return schemas.Event{}, err
	}
	if err := d.eventName(); err != nil {
		return schemas.Event{}, err
	}
	if err := d.user(); err != nil {
		return schemas.Event{}, err
	}
	if err := d.properties(); err != nil {
		return schemas.Event{}, err
	}
	if err := d.context(hdr); err != nil {
		return schemas.Event{}, err
	}
	if err := d.requestToken(); err != nil {
		return schemas.Event{}, err
	}
	if err := d.timestamps(); err != nil {
		return schemas.Event{}, err
	}
	if err := d.filter(); err != nil {
		return schemas.Event{}, err
	}
	if err := d.options(); err != nil {
		return schemas.Event{}, err
	}
	if err := d.extra(); err != nil {
		return schemas.Event{}, err
	}
	if err := d.required(); err != nil {
		return schemas.Event{}, err
	}
	return d.ev, nil
}

// fields holds the raw JSON values of the top-level members Decode knows,
// in body order with the last duplicate winning. A null or absent member is
// "" (a present JSON value is never empty).
type fields struct {
	typ, status, name, event                 string
	user, userID, userTraits, traits         string
	properties, context, requestToken        string
	createdAt, sentAt, timestamp             string
	params, matchingUserID                   string
	skipToken, skipContext, expand           string
	session, product, authMethod, changeset  string
	transaction, address, reviewID, devToken string
}

type decoder struct {
	ev schemas.Event
	f  fields
	// hasContext records that the body carried a context object.
	hasContext bool
	// ctxToken is context.request_token (uwgo), used when the top-level
	// request_token is absent.
	ctxToken string
}

// checkBody returns body without leading whitespace once it is known to be
// one valid JSON object nested at most MaxJSONDepth deep.
func checkBody(body []byte) ([]byte, error) {
	b := bytes.TrimLeft(body, " \t\r\n")
	switch {
	case len(b) == 0:
		return nil, BadRequest("Request body is empty")
	case b[0] != '{':
		if json.Valid(b) {
			return nil, BadRequest("Request body must be a JSON object")
		}
		return nil, malformed(b)
	}
	if valid, deep := checkJSON(b, MaxJSONDepth); !valid {
		if deep && json.Valid(b) {
			return nil, BadRequest(fmt.Sprintf("Request body is nested deeper than %d levels", MaxJSONDepth))
		}
		return nil, malformed(b)
	}
	return b, nil
}

// scan records the top-level members of the checked body b.
func (d *decoder) scan(b string) error {
	f := &d.f
	it := members(b)
	for k, v, ok := it.next(); ok; k, v, ok = it.next() {
		if isNull(v) {
			v = ""
		}
		switch k {
		case "type":
			f.typ = v
		case "status":
			f.status = v
		case "name":
			f.name = v
		case "event":
			f.event = v
		case "user":
			f.user = v
		case "user_id":
			f.userID = v
		case "user_traits":
			f.userTraits = v
		case "traits":
			f.traits = v
		case "properties":
			f.properties = v
		case "context":
			f.context = v
		case "request_token":
			f.requestToken = v
		case "created_at":
			f.createdAt = v
		case "sent_at":
			f.sentAt = v
		case "timestamp":
			f.timestamp = v
		case "params":
			f.params = v
		case "matching_user_id":
			f.matchingUserID = v
		case "skip_request_token_validation":
			f.skipToken = v
		case "skip_context_validation":
			f.skipContext = v
		case "expand":
			f.expand = v
		case "session":
			f.session = v
		case "product":
			f.product = v
		case "authentication_method":
			f.authMethod = v
		case "changeset":
			f.changeset = v
		case "transaction":
			f.transaction = v
		case "address":
			f.address = v
		case "review_id":
			f.reviewID = v
		case "device_token":
			f.devToken = v
		}
	}
	if it.err {
		return BadRequest("Malformed JSON body")
	}
	return nil
}

// malformed reports a body that is not valid JSON, with encoding/json's
// description of the first syntax error.
func malformed(b []byte) error {
	var raw json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return BadRequest("Malformed JSON body: " + err.Error())
	}
	return BadRequest("Malformed JSON body")
}

func (d *decoder) eventName() error {
	typ, err := optString(d.f.typ, "type")
	if err != nil {
		return err
	}
	status, err := optString(d.f.status, "status")
	if err != nil {
		return err
	}
	name, err := optString(d.f.name, "name")
	if err != nil {
		return err
	}
	legacy, err := optString(d.f.event, "event")
	if err != nil {
		return err
	}
	ev := &d.ev
	ev.LegacyEvent = legacy
	ev.Type, ev.Status, ev.Name = typ, status, name
	if typ == "" && legacy != "" {
		t, s := schemas.SplitLegacyEvent(legacy)
		if !strings.HasPrefix(legacy, "$") {
			ev.Name = legacy
		}
		ev.Type = t
		if s != "" {
			ev.Status = s
		}
	}
	return nil
}

func (d *decoder) user() error {
	u := &d.ev.User
	var id, idField string
	var traits string
	if raw := d.f.user; raw != "" {
		if !isObject(raw) {
			return InvalidParameters("user must be an object")
		}
		it := members(raw)
		for k, v, ok := it.next(); ok; k, v, ok = it.next() {
			if isNull(v) {
				continue
			}
			var err error
			switch k {
			case "id":
				id, err = idString(v, "user.id")
				idField = "user.id"
			case "email":
				u.Email, err = email(v, "user.email")
			case "phone":
				u.Phone, err = stringOrNumber(v, "user.phone")
			case "name":
				u.Name, err = optString(v, "user.name")
			case "registered_at":
				u.RegisteredAt, err = timestamp(v, "user.registered_at")
			case "traits":
				if !isObject(v) {
					return InvalidParameters("user.traits must be an object")
				}
				traits = v
			}
			if err != nil {
				return err
			}
		}
	}
	if id == "" && d.f.userID != "" {
		var err error
		if id, err = idString(d.f.userID, "user_id"); err != nil {
			return err
		}
		idField = "user_id"
	}
	if len(id) > MaxIDLen {
		return InvalidParameters(fmt.Sprintf("%s is too long (max %d bytes)", idField, MaxIDLen))
	}
	u.ID = id

	legacy, field := d.f.userTraits, "user_traits"
	if legacy == "" {
		legacy, field = d.f.traits, "traits"
	}
	if legacy != "" {
		if !isObject(legacy) {
			return InvalidParameters(field + " must be an object")
		}
		liftTraits(u, legacy)
		if traits == "" {
			traits = legacy
		}
	}
	if traits != "" {
		u.Traits = rawCopy(traits)
	}
	return nil
}

// liftTraits copies the valid email, name, phone and registered_at of a
// legacy user_traits object into the still empty User fields.
func liftTraits(u *schemas.User, traits string) {
	it := members(traits)
	for k, v, ok := it.next(); ok; k, v, ok = it.next() {
		switch k {
		case "email":
			if s, err := email(v, ""); err == nil && u.Email == "" {
				u.Email = s
			}
		case "name":
			if s, ok := decodeString(v); ok && u.Name == "" {
				u.Name = s
			}
		case "phone":
			if s, err := stringOrNumber(v, ""); err == nil && u.Phone == "" {
				u.Phone = s
			}
		case "registered_at":
			if t, err := timestamp(v, ""); err == nil && u.RegisteredAt == nil {
				u.RegisteredAt = t
			}
		}
	}
}

func (d *decoder) properties() error {
	if raw := d.f.properties; raw != "" {
		if !isObject(raw) {
			return InvalidParameters("properties must be an object")
		}
		d.ev.Properties = rawCopy(raw)
	}
	return nil
}

func (d *decoder) context(hdr http.Header) error {
	c := &d.ev.Context
	var userAgent string
	if raw := d.f.context; raw != "" {
		if !isObject(raw) {
			return InvalidParameters("context must be an object")
		}
		d.hasContext = true
		it := members(raw)
		for k, v, ok := it.next(); ok; k, v, ok = it.next() {
			if isNull(v) {
				continue
			}
			switch k {
			case "ip":
				s, ok := decodeString(v)
				if !ok {
					return InvalidParameters("context.ip must be a string")
				}
				if strings.TrimSpace(s) == "" {
					c.IP = ""
					continue
				}
				if c.IP, ok = parseIP(s); !ok {
					return InvalidParameters("context.ip is not a valid IP address")
				}
			case "headers":
				h, ok := parseHeaders(v)
				if !ok {
					return InvalidParameters("context.headers must be an object or an array of [name, value] pairs")
				}
				c.Headers = h
			case "client_id":
				// string, false, "" or a placeholder; anything else is ignored.
				s, _ := decodeString(v)
				c.ClientID = cleanClientID(s)
			case "library":
				c.Library = parseLibrary(v)
			case "user_agent":
				userAgent, _ = decodeString(v)
			case "request_token":
				d.ctxToken, _ = decodeString(v)
			}
		}
	}

	// Very old SDKs sent the context as headers of the API call.
	if hdr != nil {
		if c.ClientID == "" {
			c.ClientID = cleanClientID(hdr.Get("X-Castle-Client-Id"))
		}
		if c.IP == "" {
			if ip, ok := parseIP(hdr.Get("X-Castle-Ip")); ok {
				c.IP = ip
			}
		}
		if xh := hdr.Get("X-Castle-Headers"); xh != "" && validJSON([]byte(xh)) {
			if h, ok := parseHeaders(strings.TrimSpace(xh)); ok {
				for name, v := range h {
					if _, dup := c.Headers[name]; !dup {
						if c.Headers == nil {
							c.Headers = make(map[string]string, len(h))
						}
						c.Headers[name] = v
					}
				}
			}
		}
		if userAgent == "" {
			userAgent = hdr.Get("X-Castle-User-Agent")
		}
	}
	if _, ok := c.Headers["user-agent"]; !ok && userAgent != "" {
		if c.Headers == nil {
			c.Headers = make(map[string]string, 1)
		}
		c.Headers["user-agent"] = userAgent
	}

	if c.ClientID == "" {
		c.ClientID = cleanClientID(c.Headers["x-castle-client-id"])
	}
	if c.ClientID == "" {
		c.ClientID = cleanClientID(cookieValue(c.Headers["cookie"], "__cid"))
	}
	for _, name := range [...]string{"cookie", "authorization", "proxy-authorization"} {
		if _, ok := c.Headers[name]; ok {
			c.Headers[name] = "true"
		}
	}
	return nil
}

func (d *decoder) requestToken() error {
	tok := d.ctxToken
	if raw := d.f.requestToken; raw != "" {
		s, ok := decodeString(raw)
		if !ok {
			return InvalidRequestToken("request_token must be a string")
		}
		if strings.TrimSpace(s) != "" {
			tok = s
		}
	}
	tok = strings.Trim(tok, " \t\r\n")
	if tok == "" {
		return nil
	}
	if !validToken(tok) {
		if d.skipTokenValidation() {
			return nil
		}
		return InvalidRequestToken(ErrInvalidRequestToken.Message)
	}
	d.ev.Context.RequestToken = tok
	return nil
}

// skipTokenValidation reports a risk or filter call that set
// skip_request_token_validation to true.
func (d *decoder) skipTokenValidation() bool {
	k := d.ev.Kind
	return (k == schemas.KindRisk || k == schemas.KindFilter) && isTrue(d.f.skipToken)
}

func validToken(tok string) bool {
	if len(tok) > MaxRequestTokenLen {
		return false
	}
	for i := 0; i < len(tok); i++ {
		if tok[i] < 0x20 || tok[i] > 0x7e {
			return false
		}
	}
	return true
}

func (d *decoder) timestamps() error {
	var err error
	created, field := d.f.createdAt, "created_at"
	if created == "" || isBlankString(created) {
		created, field = d.f.timestamp, "timestamp"
	}
	if d.ev.CreatedAt, err = timestamp(created, field); err != nil {
		return err
	}
	d.ev.SentAt, err = timestamp(d.f.sentAt, "sent_at")
	return err
}

func (d *decoder) filter() error {
	if d.ev.Kind != schemas.KindFilter {
		return nil
	}
	if raw := d.f.params; raw != "" {
		if !isObject(raw) {
			return InvalidParameters("params must be an object")
		}
		it := members(raw)
		for k, v, ok := it.next(); ok; k, v, ok = it.next() {
			if k != "email" || isNull(v) {
				continue
			}
			s, err := email(v, "params.email")
			if err != nil {
				return err
			}
			if s != "" {
				d.ev.User.Email = s
			}
		}
		d.ev.Params = rawCopy(raw)
	}
	if raw := d.f.matchingUserID; raw != "" {
		id, err := idString(raw, "matching_user_id")
		if err != nil {
			return err
		}
		if len(id) > MaxIDLen {
			return InvalidParameters(fmt.Sprintf("matching_user_id is too long (max %d bytes)", MaxIDLen))
		}
		d.ev.MatchingUserID = id
	}
	return nil
}

func (d *decoder) options() error {
	if k := d.ev.Kind; k != schemas.KindRisk && k != schemas.KindFilter {
		return nil
	}
	o := &schemas.Options{}
	var err error
	if o.SkipRequestTokenValidation, err = optBool(d.f.skipToken, "skip_request_token_validation"); err != nil {
		return err
	}
	if o.SkipContextValidation, err = optBool(d.f.skipContext, "skip_context_validation"); err != nil {
		return err
	}
	if raw := d.f.expand; raw != "" {
		const msg = "expand must be an array of strings"
		switch raw[0] {
		case '"': // lenient: "all" is read as ["all"]
			s, _ := decodeString(raw)
			o.Expand = []string{s}
		case '[':
			it := elements(raw)
			for v, ok := it.next(); ok; v, ok = it.next() {
				s, ok := decodeString(v)
				if !ok {
					return InvalidParameters(msg)
				}
				o.Expand = append(o.Expand, s)
			}
		default:
			return InvalidParameters(msg)
		}
	}
	d.ev.Options = o
	return nil
}

func (d *decoder) extra() error {
	f := &d.f
	for _, x := range [...]struct {
		key string
		raw string
	}{
		{"session", f.session},
		{"product", f.product},
		{"authentication_method", f.authMethod},
		{"changeset", f.changeset},
		{"transaction", f.transaction},
		{"address", f.address},
		{"review_id", f.reviewID},
		{"device_token", f.devToken},
	} {
		if x.raw == "" {
			continue
		}
		if d.ev.Extra == nil {
			d.ev.Extra = make(map[string]json.RawMessage, 2)
		}
		d.ev.Extra[x.key] = rawCopy(x.raw)
	}
	return nil
}

// required checks the per-kind required fields, after every field parsed.
func (d *decoder) required() error {
	ev := &d.ev
	switch ev.Kind {
	case schemas.KindIdentify:
		if ev.User.ID == "" {
			return InvalidParameters("user_id is missing")
		}
		return nil
	case schemas.KindTrack, schemas.KindAuthenticate:
		if ev.Type == "" {
			return InvalidParameters("event (or type) is missing")
		}
		return nil
	case schemas.KindLog:
		if ev.Type == "" {
			return InvalidParameters("type is missing")
		}
		return nil
	}
	// risk and filter
	if ev.Type == "" {
		return InvalidParameters("type is missing")
	}
	if ev.Kind == schemas.KindRisk && ev.User.ID == "" {
		return InvalidParameters("user.id is missing")
	}
	if ev.Context.RequestToken == "" && !ev.Options.SkipRequestTokenValidation {
		return InvalidRequestToken(ErrRequestTokenMissing.Message)
	}
	if !ev.Options.SkipContextValidation {
		if !d.hasContext {
			return InvalidParameters("context is missing")
		}
		if ev.Context.IP == "" {
			return InvalidParameters("context.ip is missing")
		}
	}
	return nil
}

// ---- field helpers ---------------------------------------------------------

// optString decodes a string member; "" (absent or null) is "".
func optString(raw string, field string) (string, error) {
	if raw == "" {
		return "", nil
	}
	s, ok := decodeString(raw)
	if !ok {
		return "", InvalidParameters(field + " must be a string")
	}
	return s, nil
}

// stringOrNumber decodes a string, or a number as the text it was sent as.
func stringOrNumber(raw string, field string) (string, error) {
	if raw == "" {
		return "", nil
	}
	if s, ok := decodeString(raw); ok {
		return s, nil
	}
	if isNumber(raw) {
		return raw, nil
	}
	return "", InvalidParameters(field + " must be a string")
}

func idString(raw string, field string) (string, error) {
	return stringOrNumber(raw, field)
}

func email(raw string, field string) (string, error) {
	s, err := optString(raw, field)
	if err == nil && len(s) > MaxEmailLen {
		err = InvalidParameters(fmt.Sprintf("%s is too long (max %d bytes)", field, MaxEmailLen))
	}
	return s, err
}

func optBool(raw string, field string) (bool, error) {
	switch {
	case raw == "":
		return false, nil
	case raw == "true":
		return true, nil
	case raw == "false":
		return false, nil
	}
	return false, InvalidParameters(field + " must be a boolean")
}

func isTrue(raw string) bool { return raw == "true" }

func isBlankString(raw string) bool {
	s, ok := decodeString(raw)
	return ok && strings.TrimSpace(s) == ""
}

// timestamp decodes an ISO 8601 string; absent, null, "" and blanks are
// absent.
func timestamp(raw string, field string) (*time.Time, error) {
	if raw == "" {
		return nil, nil
	}
	s, ok := decodeString(raw)
	if !ok {
		return nil, InvalidParameters(field + " must be an ISO 8601 timestamp string")
	}
	if s = strings.TrimSpace(s); s == "" {
		return nil, nil
	}
	t, ok := parseTime(s)
	if !ok {
		return nil, InvalidParameters(field + " is not a valid ISO 8601 timestamp")
	}
	return &t, nil
}

// timeLayouts are tried in order. Go accepts a fractional second of any
// length after the seconds even when the layout has none.
var timeLayouts = [...]string{
	"2006-01-02T15:04:05Z07:00", // ruby, node, java, .NET, uwgo (RFC 3339)
	"2006-01-02T15:04:05",       // python utcnow().isoformat(): naive UTC
	"2006-01-02T15:04:05Z0700",
	"2006-01-02T15:04Z07:00", // java OffsetDateTime with zero seconds
	"2006-01-02T15:04",
	"2006-01-02",
}

// parseTime parses the timestamp forms the SDKs send into UTC, truncated to
// milliseconds. Naive times are UTC. Years outside 1..9999 (after the
// offset) are rejected, because JSON cannot carry them.
func parseTime(s string) (time.Time, bool) {
	if len(s) > 10 && s[10] == ' ' { // Python str(datetime)
		s = s[:10] + "T" + s[11:]
	}
	for _, layout := range timeLayouts {
		t, err := time.Parse(layout, s)
		if err != nil {
			continue
		}
		t = t.UTC().Truncate(time.Millisecond)
		if y := t.Year(); y < 1 || y > 9999 {
			return time.Time{}, false
		}
		return t, true
	}
	return time.Time{}, false
}

// parseIP accepts an IPv4 or IPv6 address, optionally as host:port or
// [v6]:port, and returns its canonical text.
func parseIP(s string) (string, bool) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", false
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		ap, err := netip.ParseAddrPort(s)
		switch {
		case err == nil:
			a = ap.Addr()
		case len(s) > 2 && s[0] == '[' && s[len(s)-1] == ']':
			if a, err = netip.ParseAddr(s[1 : len(s)-1]); err != nil {
				return "", false
			}
		default:
			return "", false
		}
	}
	a = a.WithZone("").Unmap()
	// Most clients send the canonical text already: keep s then rather
	// than allocating the same text again.
	var buf [64]byte
	if t := a.AppendTo(buf[:0]); string(t) != s {
		return string(t), true
	}
	return s, true
}

// parseHeaders reads end-user headers sent as an object of name → value or
// as an array of [name, value] pairs (castle-java). Values may be strings,
// booleans (true marks a scrubbed header) or numbers; null, objects, arrays
// and malformed pairs are skipped. Names are normalized; later duplicates
// win. ok is false when raw is neither an object nor an array.
func parseHeaders(raw string) (h map[string]string, ok bool) {
	// The headers are collected first so that the map is made once, at
	// its final size.
	type header struct{ name, val string }
	var buf [32]header
	hs := buf[:0]
	add := func(name string, v string) {
		val, ok := headerValue(v)
		if !ok {
			return
		}
		if n := normalizeHeaderName(name); n != "" {
			hs = append(hs, header{n, val})
		}
	}
	switch {
	case isObject(raw):
		it := members(raw)
		for k, v, ok := it.next(); ok; k, v, ok = it.next() {
			add(k, v)
		}
	case len(raw) > 0 && raw[0] == '[':
		it := elements(raw)
		for pair, ok := it.next(); ok; pair, ok = it.next() {
			if pair[0] != '[' {
				continue
			}
			p := elements(pair)
			rawName, ok1 := p.next()
			val, ok2 := p.next()
			if name, ok3 := decodeString(rawName); ok1 && ok2 && ok3 {
				add(name, val)
			}
		}
	default:
		return nil, false
	}
	if len(hs) == 0 {
		return nil, true
	}
	h = make(map[string]string, len(hs))
	for _, x := range hs {
		h[x.name] = x.val
	}
	return h, true
}

// normalizeHeaderName is schemas.NormalizeHeaderName without allocating
// for ASCII names that are already normalized or are common headers.
func normalizeHeaderName(name string) string {
	// Trim ASCII whitespace as strings.TrimSpace does; the schemas
	// function trims the rest of Unicode's.
	isSpace := func(c byte) bool { return c == ' ' || c >= '\t' && c <= '\r' }
	i, j := 0, len(name)
	for i < j && isSpace(name[i]) {
		i++
	}
	for j > i && isSpace(name[j-1]) {
		j--
	}
	name = name[i:j]
	var buf [64]byte
	if len(name) > len(buf) {
		return schemas.NormalizeHeaderName(name)
	}
	changed := false
	for k := 0; k < len(name); k++ {
		c := name[k]
		switch {
		case c >= utf8.RuneSelf:
			return schemas.NormalizeHeaderName(name)
		case c >= 'A' && c <= 'Z':
			c += 'a' - 'A'
			changed = true
		case c == '_':
			c = '-'
			changed = true
		}
		buf[k] = c
	}
	if !changed {
		return name
	}
	b := buf[:len(name)]
	if n, ok := commonHeaders[string(b)]; ok {
		return n
	}
	return string(b)
}

// commonHeaders interns the normalized names of the headers SDKs send most,
// so that normalizing them does not allocate.
var commonHeaders = func() map[string]string {
	m := make(map[string]string)
	for _, n := range [...]string{
		"accept", "accept-charset", "accept-encoding", "accept-language", "authorization",
		"cache-control", "cf-connecting-ip", "cf-ipcountry", "connection", "content-length",
		"content-type", "cookie", "dnt", "forwarded", "host", "if-modified-since",
		"if-none-match", "origin", "pragma", "proxy-authorization", "referer", "remote-addr",
		"sec-ch-ua", "sec-ch-ua-mobile", "sec-ch-ua-platform", "sec-fetch-dest",
		"sec-fetch-mode", "sec-fetch-site", "sec-fetch-user", "te", "true-client-ip",
		"upgrade-insecure-requests", "user-agent", "via", "x-castle-client-id",
		"x-client-ip", "x-forwarded-for", "x-forwarded-host", "x-forwarded-port",
		"x-forwarded-proto", "x-real-ip", "x-request-id", "x-requested-with",
	} {
		m[n] = n
	}
	return m
}()

func headerValue(v string) (string, bool) {
	switch {
	case len(v) == 0:
		return "", false
	case v[0] == '"':
		return decodeString(v)
	case v == "true", v == "false":
		return v, true
	case isNumber(v):
		return v, true
	}
	return "", false // null, object, array
}

func parseLibrary(raw string) *schemas.Library {
	if !isObject(raw) {
		return nil
	}
	var l schemas.Library
	it := members(raw)
	for k, v, ok := it.next(); ok; k, v, ok = it.next() {
		switch k {
		case "name":
			l.Name, _ = decodeString(v)
		case "version":
			l.Version, _ = decodeString(v)
		}
	}
	if l == (schemas.Library{}) {
		return nil
	}
	return &l
}

// cleanClientID drops the placeholders SDKs send for "no client id".
func cleanClientID(s string) string {
	switch s = strings.TrimSpace(s); s {
	case "?", "_", "false", "null", "undefined":
		return ""
	}
	return s
}

func cookieValue(cookies, name string) string {
	for part := range strings.SplitSeq(cookies, ";") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if ok && k == name {
			return strings.Trim(v, `"`)
		}
	}
	return ""
}

// rawCopy copies a raw JSON value out of the request body, replacing invalid
// UTF-8 (which valid JSON can only hold inside strings) with U+FFFD.
func rawCopy(raw string) json.RawMessage {
	if !utf8.ValidString(raw) {
		return json.RawMessage(strings.ToValidUTF8(raw, "\uFFFD"))
	}
	return json.RawMessage(raw)
}

// ---- raw JSON scanning -----------------------------------------------------
//
// The body is checked with checkJSON once and copied into one string; the
// helpers below then walk that string without decoding into maps, so member order is kept, keys
// match exactly, and huge numbers stay text. They stay defensive (bounds
// checked, never panic) in case they are handed invalid input.

// validJSON reports whether b is valid JSON nested at most MaxJSONDepth deep.
func validJSON(b []byte) bool {
	valid, _ := checkJSON(b, MaxJSONDepth)
	return valid
}

func isNull(raw string) bool   { return raw == "null" }
func isObject(raw string) bool { return len(raw) > 0 && raw[0] == '{' }

func isNumber(raw string) bool {
	return len(raw) > 0 && (raw[0] == '-' || raw[0] >= '0' && raw[0] <= '9')
}

// decodeString decodes a JSON string value; ok is false for other values.
// A string without escapes is returned as a substring of raw.
func decodeString(raw string) (string, bool) {
	if len(raw) < 2 || raw[0] != '"' || raw[len(raw)-1] != '"' {
		return "", false
	}
	inner := raw[1 : len(raw)-1]
	if plain(inner) || strings.IndexByte(inner, '\\') < 0 && utf8.ValidString(inner) {
		return inner, true
	}
	var s string
	if json.Unmarshal([]byte(raw), &s) != nil {
		return "", false
	}
	return s, true
}

// plain reports whether s is ASCII without backslashes: the contents of a
// JSON string that decode to themselves. It looks at 8 bytes at a time.
func plain(s string) bool {
	for len(s) >= 8 {
		if w := load64(s[:8]); w&hiBits != 0 || hasByte(w, '\\') != 0 {
			return false
		}
		s = s[8:]
	}
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf || s[i] == '\\' {
			return false
		}
	}
	return true
}

// Word-at-a-time byte tests: w holds 8 bytes of text, little-endian.
const (
	loBits = 0x0101010101010101
	hiBits = 0x8080808080808080
)

// load64 returns the 8 bytes of s (len(s) == 8) as a word.
func load64(s string) uint64 {
	_ = s[7]
	return uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
		uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
}

// hasByte is nonzero when one of the bytes of w is c.
func hasByte(w uint64, c byte) uint64 {
	x := w ^ (loBits * uint64(c))
	return (x - loBits) &^ x & hiBits
}

// hasLess is nonzero when one of the bytes of w is less than n (n <= 128).
func hasLess(w uint64, n byte) uint64 {
	return (w - loBits*uint64(n)) &^ w & hiBits
}

func skipSpace(b string, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// stringEnd returns the index just past the string starting at b[i] == '"',
// or -1.
func stringEnd(b string, i int) int {
	for j := i + 1; j < len(b); {
		q := strings.IndexByte(b[j:], '"')
		if q < 0 {
			return -1
		}
		q += j
		// The quote is escaped when an odd run of backslashes precedes it.
		n := 0
		for k := q - 1; k > i && b[k] == '\\'; k-- {
			n++
		}
		if n%2 == 0 {
			return q + 1
		}
		j = q + 1
	}
	return -1
}

// valueEnd returns the index just past the value starting at b[i], or -1.
func valueEnd(b string, i int) int {
	if i >= len(b) {
		return -1
	}
	switch b[i] {
	case '"':
		return stringEnd(b, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				e := stringEnd(b, j)
				if e < 0 {
					return -1
				}
				j = e - 1
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return j + 1
				}
			}
		}
		return -1
	}
	j := i
	for j < len(b) {
		switch b[j] {
		case ',', '}', ']', ' ', '\t', '\n', '\r':
			return j
		}
		j++
	}
	return j
}

// memberIter walks the members of a JSON object.
type memberIter struct {
	b   string
	i   int
	err bool
}

func members(b string) memberIter {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return memberIter{i: len(b), err: true}
	}
	return memberIter{b: b, i: i + 1}
}

// next returns the next member: its key (unescaped) and raw value.
func (it *memberIter) next() (key, val string, ok bool) {
	b := it.b
	i := skipSpace(b, it.i)
	if i >= len(b) {
		it.stop(true)
		return "", "", false
	}
	if b[i] == ',' {
		i = skipSpace(b, i+1)
	}
	if i < len(b) && b[i] == '}' {
		it.stop(false)
		return "", "", false
	}
	if i >= len(b) || b[i] != '"' {
		it.stop(true)
		return "", "", false
	}
	ke := stringEnd(b, i)
	if ke < 0 {
		it.stop(true)
		return "", "", false
	}
	key = b[i+1 : ke-1]
	if !plain(key) && (strings.IndexByte(key, '\\') >= 0 || !utf8.ValidString(key)) {
		key, _ = decodeString(b[i:ke])
	}
	i = skipSpace(b, ke)
	if i >= len(b) || b[i] != ':' {
		it.stop(true)
		return "", "", false
	}
	i = skipSpace(b, i+1)
	ve := valueEnd(b, i)
	if ve < 0 || ve == i {
		it.stop(true)
		return "", "", false
	}
	it.i = ve
	return key, b[i:ve], true
}

func (it *memberIter) stop(bad bool) {
	it.i = len(it.b)
	it.b = ""
	it.err = it.err || bad
}

// elemIter walks the elements of a JSON array.
type elemIter struct {
	b string
	i int
}

func elements(b string) elemIter {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '[' {
		return elemIter{}
	}
	return elemIter{b: b, i: i + 1}
}

func (it *elemIter) next() (val string, ok bool) {
	b := it.b
	i := skipSpace(b, it.i)
	if i < len(b) && b[i] == ',' {
		i = skipSpace(b, i+1)
	}
	if i >= len(b) || b[i] == ']' {
		it.b = ""
		return "", false
	}
	ve := valueEnd(b, i)
	if ve < 0 || ve == i {
		it.b = ""
		return "", false
	}
	it.i = ve
	return b[i:ve], true
}
