package scorer

import (
	"crypto/sha1"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/moat-dev/moat/schemas"
)

// DefaultSessionTimeout is how long a session lasts without activity.
const DefaultSessionTimeout = 20 * time.Minute

// Bounds of the end-user part of a user's state (endUserState).
const (
	// maxSessions active sessions per user; a login beyond it ends the
	// oldest (reason "evicted").
	maxSessions = 20
	// maxSessionIDLen bytes of an app's session id are kept; a longer id
	// is replaced by its SHA-256 (hex, 64 bytes).
	maxSessionIDLen = 64
	// maxForgotten forgotten devices are remembered; an older one, seen
	// again, gets its first token back.
	maxForgotten = 16
	// maxActivations pending activation tokens per user; a newer one
	// pushes out the oldest.
	maxActivations = 4
)

// sessionNamespace derives session UUIDs from app session ids that are not
// UUIDs.
var sessionNamespace = uuid.MustParse("6f1d3c1e-2b1a-5d4e-9c8b-7a6f5e4d3c2b")

// SetSessionTimeout sets how long a session lasts without activity
// (default DefaultSessionTimeout). Call it before scoring.
func (d *Decider) SetSessionTimeout(t time.Duration) { d.sessionTimeout = t }

func (d *Decider) timeout() int64 {
	if d.sessionTimeout <= 0 {
		return DefaultSessionTimeout.Milliseconds()
	}
	return d.sessionTimeout.Milliseconds()
}

// endUserState is the part of a user's state the end-user features need:
// the active sessions, the forgotten devices and the pending activation
// tokens. Finished sessions are not kept: their last state is in the
// decision that ended them (and so in ClickHouse).
type endUserState struct {
	// sessions are the active sessions, oldest first.
	sessions []session
	// forgotten are the devices the user forgot, most recent last.
	forgotten []forgottenDevice
	// activations are the pending activation tokens, oldest first.
	activations []activation
}

type session struct {
	// id is the app's session id (or the starting event's id).
	id string
	// device is the device token.
	device          string
	startMs, lastMs int64
}

type forgottenDevice struct {
	fp   uint64
	atMs int64
}

type activation struct {
	hash      [sha256.Size]byte
	device    string
	expiresMs int64
}

// Decide derives the decision for one event, folds the event into the
// user's state, and returns the notifications it raises. Around the risk
// decision (decide) it keeps the user's sessions: first the sessions idle
// for longer than the session timeout are finished (the event's
// received_at is the clock: a session's inactivity end is raised by the
// user's next event, dated from its last activity), then an end-user
// command is applied or the event starts, extends or ends sessions.
func (d *Decider) Decide(ev *schemas.Event, st *UserState) (schemas.Decision, []schemas.Notification) {
	var notes []schemas.Notification
	var changes []schemas.SessionChange
	if ev.User.ID != "" {
		changes, notes = d.expireSessions(ev, st)
	}
	var dec schemas.Decision
	var more []schemas.Notification
	if ev.Kind.EndUser() {
		dec, more = d.endUserCommand(ev, st)
	} else {
		dec, more = d.decide(ev, st)
		c, n := d.observeSessions(ev, &dec, st)
		dec.Sessions = concat(dec.Sessions, c)
		more = concat(more, n)
	}
	dec.Sessions = concat(changes, dec.Sessions)
	return dec, concat(notes, more)
}

// concat is append(a, b...), but b itself when a is empty: the slices
// joined here are fresh and owned by the caller, so most events, which
// have one of the two empty, copy nothing.
func concat[T any](a, b []T) []T {
	if len(a) == 0 && len(b) > 0 {
		return b
	}
	return append(a, b...)
}

// deviceToken is the token of a fingerprint for a user: the fingerprint's
// token, or, once the user forgot the device, a token of the fingerprint
// and the time it was forgotten, so that the device comes back as new.
func (d *Decider) deviceToken(appID, userID, fp string, st *UserState) string {
	if fp == "" {
		return ""
	}
	if len(st.eu.forgotten) == 0 {
		return d.fp.Token(appID, userID, fp)
	}
	if at, ok := st.eu.forgottenAt(fpHash(fp)); ok {
		return d.fp.Token(appID, userID, fp+"\x00forgotten:"+strconv.FormatInt(at, 10))
	}
	return d.fp.Token(appID, userID, fp)
}

func (s *endUserState) forgottenAt(fp uint64) (int64, bool) {
	for _, f := range s.forgotten {
		if f.fp == fp {
			return f.atMs, true
		}
	}
	return 0, false
}

// expireSessions finishes the sessions idle for longer than the timeout,
// each as of its last activity plus the timeout.
func (d *Decider) expireSessions(ev *schemas.Event, st *UserState) ([]schemas.SessionChange, []schemas.Notification) {
	now, timeout := ev.ReceivedAt.UnixMilli(), d.timeout()
	var changes []schemas.SessionChange
	var notes []schemas.Notification
	kept := st.eu.sessions[:0]
	for _, s := range st.eu.sessions {
		if now-s.lastMs <= timeout {
			kept = append(kept, s)
			continue
		}
		c := s.change(ev, schemas.SessionFinished, schemas.SessionEndInactivity, s.lastMs+timeout)
		changes = append(changes, c)
		notes = append(notes, sessionNotification(schemas.NotifySessionEnded, ev, c))
	}
	st.eu.sessions = kept
	return changes, notes
}

// observeSessions applies an event to the sessions of its device: a
// successful $login starts one (unless denied), $logout ends the event's
// session (or, without a session id, all of the device's), and anything
// else the device does extends its active sessions.
func (d *Decider) observeSessions(ev *schemas.Event, dec *schemas.Decision, st *UserState) ([]schemas.SessionChange, []schemas.Notification) {
	device := dec.Device.Token
	if ev.User.ID == "" || device == "" || dec.Impersonated || dec.Action == "deny" {
		return nil, nil
	}
	now := ev.ReceivedAt.UnixMilli()
	sid, given := eventSessionID(ev)
	var changes []schemas.SessionChange
	var notes []schemas.Notification
	switch {
	case ev.Type == "$login" && ev.Status == "$succeeded":
		if !given {
			sid = ev.ID
		}
		for i := range st.eu.sessions {
			if s := &st.eu.sessions[i]; s.id == sid {
				s.lastMs = max(s.lastMs, now)
				return []schemas.SessionChange{s.change(ev, schemas.SessionActive, "", 0)}, nil
			}
		}
		changes = make([]schemas.SessionChange, 0, 2)
		notes = make([]schemas.Notification, 0, 2)
		if len(st.eu.sessions) >= maxSessions {
			old := st.eu.sessions[0]
			st.eu.sessions = st.eu.sessions[1:]
			c := old.change(ev, schemas.SessionFinished, schemas.SessionEndEvicted, now)
			changes = append(changes, c)
			notes = append(notes, sessionNotification(schemas.NotifySessionEnded, ev, c))
		}
		// The state outlives the event: a string of the decoded event
		// would keep the whole record's buffer alive (schemas.DecodeEvent
		// shares one copy of it among the event's strings).
		s := session{id: strings.Clone(sid), device: strings.Clone(device), startMs: now, lastMs: now}
		st.eu.sessions = append(st.eu.sessions, s)
		c := s.change(ev, schemas.SessionActive, "", 0)
		changes = append(changes, c)
		notes = append(notes, sessionNotification(schemas.NotifySessionStarted, ev, c))
	case ev.Type == "$logout" && ev.Status != "$failed":
		c, n := st.eu.endSessions(ev, device, sid, given, schemas.SessionFinished, schemas.SessionEndLogout)
		changes, notes = append(changes, c...), append(notes, n...)
	default:
		extends := func(s *session) bool { return s.device == device && (!given || s.id == sid) }
		n := 0
		for i := range st.eu.sessions {
			if extends(&st.eu.sessions[i]) {
				n++
			}
		}
		if n == 0 {
			break
		}
		changes = make([]schemas.SessionChange, 0, n)
		for i := range st.eu.sessions {
			s := &st.eu.sessions[i]
			if !extends(s) {
				continue
			}
			s.lastMs = max(s.lastMs, now)
			changes = append(changes, s.change(ev, schemas.SessionActive, "", 0))
		}
	}
	return changes, notes
}

// endSessions ends the device's active sessions (only the one with id sid
// when byID).
func (s *endUserState) endSessions(ev *schemas.Event, device, sid string, byID bool, status, reason string) ([]schemas.SessionChange, []schemas.Notification) {
	now := ev.ReceivedAt.UnixMilli()
	var changes []schemas.SessionChange
	var notes []schemas.Notification
	kept := s.sessions[:0]
	for _, x := range s.sessions {
		if x.device != device || (byID && x.id != sid) {
			kept = append(kept, x)
			continue
		}
		c := x.change(ev, status, reason, max(now, x.lastMs))
		changes = append(changes, c)
		notes = append(notes, sessionNotification(schemas.NotifySessionEnded, ev, c))
	}
	s.sessions = kept
	return changes, notes
}

func (s session) change(ev *schemas.Event, status, reason string, endMs int64) schemas.SessionChange {
	return schemas.SessionChange{
		UUID: sessionUUID(ev.AppID, ev.User.ID, s.id), ID: s.id, DeviceToken: s.device,
		Status: status, Reason: reason, StartedAtMs: s.startMs, LastActivityAtMs: s.lastMs, EndedAtMs: endMs,
	}
}

// sessionUUID is the session's UUID: the app's session id when it is a
// UUID, else a UUIDv5 of app, user and id.
func sessionUUID(appID, userID, id string) string {
	if len(id) == 36 {
		if _, ok := packUUID(id); ok {
			return id // already what UUID.String gives
		}
		if u, err := uuid.Parse(id); err == nil {
			return u.String()
		}
	}
	return uuidSHA1(sessionNamespace, 0, appID, userID, id)
}

// uuidSHA1 is uuid.NewSHA1(space, []byte(a+string(sep)+b+string(sep)+c)).String(),
// hashed from a stack buffer when the name is short.
func uuidSHA1(space uuid.UUID, sep byte, a, b, c string) string {
	var buf [256]byte
	name := append(buf[:0], space[:]...)
	name = append(name, a...)
	name = append(name, sep)
	name = append(name, b...)
	name = append(name, sep)
	name = append(name, c...)
	h := sha1.Sum(name)
	var u uuid.UUID
	copy(u[:], h[:])
	u[6] = (u[6] & 0x0f) | 0x50 // version 5
	u[8] = (u[8] & 0x3f) | 0x80 // RFC 4122 variant
	return u.String()
}

// eventSessionID is the app's session id from the event's `session`
// object ({"id": ...}, a string or a number), and whether there was one.
func eventSessionID(ev *schemas.Event) (string, bool) {
	raw, ok := ev.Extra["session"]
	if !ok {
		return "", false
	}
	var s struct {
		ID json.RawMessage `json:"id"`
	}
	if json.Unmarshal(raw, &s) != nil || len(s.ID) == 0 {
		return "", false
	}
	var id string
	if json.Unmarshal(s.ID, &id) != nil {
		var n json.Number
		if json.Unmarshal(s.ID, &n) != nil {
			return "", false
		}
		id = n.String()
	}
	if id == "" {
		return "", false
	}
	if len(id) > maxSessionIDLen {
		h := sha256.Sum256([]byte(id))
		id = hex.EncodeToString(h[:])
	}
	return id, true
}

// endUserCommand applies an end-user command. A command naming a device
// whose fingerprint does not give its token (another user's device, or one
// the user forgot since) changes nothing.
func (d *Decider) endUserCommand(ev *schemas.Event, st *UserState) (schemas.Decision, []schemas.Notification) {
	dec := schemas.Decision{V: schemas.DecisionVersion, Event: *ev}
	if ev.User.ID == "" || ev.Device == nil || ev.Device.Token == "" {
		return dec, nil
	}
	dec.Device = schemas.Device{Token: ev.Device.Token, Fingerprint: ev.Device.Fingerprint}
	fp := ev.Device.Fingerprint
	// Commands that change the device's feedback need its fingerprint, and
	// it must be the device's (as of now: not forgotten since).
	valid := fp != "" && d.deviceToken(ev.AppID, ev.User.ID, fp, st) == ev.Device.Token
	now := ev.ReceivedAt.UnixMilli()
	updated := func() []schemas.Notification {
		return []schemas.Notification{NewNotification(schemas.NotifyDeviceUpdated, &dec)}
	}
	switch ev.Kind {
	case schemas.KindDeviceSignout:
		dec.Sessions, _ = st.eu.endSessions(ev, ev.Device.Token, "", false, schemas.SessionFinished, schemas.SessionEndSignout)
		return dec, sessionNotes(ev, dec.Sessions)
	case schemas.KindDeviceVerify:
		if !valid {
			return dec, nil
		}
		st.setFeedback(fp, true, now)
		dec.Trusted = true
		return dec, updated()
	case schemas.KindDeviceHijack:
		if !valid {
			return dec, nil
		}
		st.setFeedback(fp, false, now)
		dec.Risk, dec.Scores.AccountTakeover = 1, 1
		dec.Sessions, _ = st.eu.endSessions(ev, ev.Device.Token, "", false, schemas.SessionBlocked, schemas.SessionEndHijack)
		notes := append(updated(), sessionNotes(ev, dec.Sessions)...)
		if st.notify("report", fp) {
			notes = append(notes, NewNotification(schemas.NotifyIncidentConfirmed, &dec))
		}
		return dec, notes
	case schemas.KindDeviceForget:
		if !valid {
			return dec, nil
		}
		dec.Sessions, _ = st.eu.endSessions(ev, ev.Device.Token, "", false, schemas.SessionFinished, schemas.SessionEndForget)
		// A forgotten device loses its approval; a report stays (forgetting
		// a stolen device must not clear it).
		st.clearApproval(fp)
		st.eu.forget(fpHash(fp), now)
		return dec, append(updated(), sessionNotes(ev, dec.Sessions)...)
	case schemas.KindTrustToken:
		a, ok := eventActivation(ev)
		if !ok || a.expiresMs <= now {
			return dec, nil
		}
		st.eu.addActivation(ev.Device.Token, a, now)
		return dec, nil
	case schemas.KindTrustActivate:
		a, ok := eventActivation(ev)
		if !ok || !valid || !st.eu.consumeActivation(ev.Device.Token, a, now) {
			return dec, nil
		}
		st.setFeedback(fp, true, now)
		dec.Trusted = true
		return dec, updated()
	case schemas.KindTrustRevoke:
		if !valid {
			return dec, nil
		}
		st.clearApproval(fp)
		return dec, updated()
	}
	// trust.skip: the event in the timeline is the record.
	return dec, nil
}

func sessionNotes(ev *schemas.Event, changes []schemas.SessionChange) []schemas.Notification {
	var out []schemas.Notification
	for _, c := range changes {
		out = append(out, sessionNotification(schemas.NotifySessionEnded, ev, c))
	}
	return out
}

// clearApproval withdraws an approval of the device (a report stays).
func (s *UserState) clearApproval(fp string) {
	k := fpHash(fp)
	for i, f := range s.feedback {
		if f.fp == k && f.approved {
			s.feedback = append(s.feedback[:i], s.feedback[i+1:]...)
			return
		}
	}
}

func (s *endUserState) forget(fp uint64, atMs int64) {
	for i, f := range s.forgotten {
		if f.fp == fp {
			s.forgotten = append(s.forgotten[:i], s.forgotten[i+1:]...)
			break
		}
	}
	s.forgotten = append(s.forgotten, forgottenDevice{fp: fp, atMs: atMs})
	if len(s.forgotten) > maxForgotten {
		s.forgotten = s.forgotten[len(s.forgotten)-maxForgotten:]
	}
}

func eventActivation(ev *schemas.Event) (activation, bool) {
	raw, ok := ev.Extra[schemas.ExtraActivation]
	if !ok {
		return activation{}, false
	}
	var a schemas.Activation
	if json.Unmarshal(raw, &a) != nil {
		return activation{}, false
	}
	h, err := hex.DecodeString(a.SHA256)
	if err != nil || len(h) != sha256.Size {
		return activation{}, false
	}
	out := activation{device: strings.Clone(ev.Device.Token), expiresMs: a.ExpiresAtMs}
	copy(out.hash[:], h)
	return out, true
}

// addActivation keeps a pending activation token, dropping expired ones
// and, beyond maxActivations, the oldest.
func (s *endUserState) addActivation(device string, a activation, now int64) {
	s.dropExpired(now)
	a.device = strings.Clone(device)
	s.activations = append(s.activations, a)
	if len(s.activations) > maxActivations {
		s.activations = s.activations[len(s.activations)-maxActivations:]
	}
}

func (s *endUserState) dropExpired(now int64) {
	kept := s.activations[:0]
	for _, a := range s.activations {
		if a.expiresMs > now {
			kept = append(kept, a)
		}
	}
	s.activations = kept
}

// consumeActivation uses up a pending, unexpired activation token issued
// for device and reports whether there was one. Tokens are single use: the
// scorer owning the user applies activations in log order, so of two
// concurrent uses only the first finds the token.
func (s *endUserState) consumeActivation(device string, a activation, now int64) bool {
	s.dropExpired(now)
	for i, p := range s.activations {
		if subtle.ConstantTimeCompare(p.hash[:], a.hash[:]) == 1 && p.device == device {
			s.activations = append(s.activations[:i], s.activations[i+1:]...)
			return true
		}
	}
	return false
}

// sessionNotification is a $session.started or $session.ended
// notification, with an id derived from the event, the type and the
// session (one event can end several sessions).
func sessionNotification(typ string, ev *schemas.Event, c schemas.SessionChange) schemas.Notification {
	id := uuidSHA1(uuid.NameSpaceOID, '/', ev.ID, typ, c.UUID)
	trig := trigger(ev)
	size := 240 + len(c.DeviceToken) + len(id) + len(c.ID) + len(c.Reason) + len(c.Status) + len(c.UUID) + len(trig) + len(ev.User.ID)
	b := appendSessionNotificationData(make([]byte, 0, size), id, ev.User.ID, trig, &c)
	return schemas.Notification{
		V: schemas.NotificationVersion, ID: id, AppID: ev.AppID, Type: typ,
		CreatedAt: ev.ReceivedAt.UTC().Truncate(time.Millisecond), UserID: ev.User.ID,
		DeviceToken: c.DeviceToken, EventID: ev.ID, Data: b,
	}
}

const msRFC3339Layout = "2006-01-02T15:04:05.000Z07:00"

func msRFC3339(ms int64) string {
	return time.UnixMilli(ms).UTC().Format(msRFC3339Layout)
}

// appendSessionNotificationData appends the data of a session notification:
// what encoding/json writes for sessionNotificationData (every session
// start and end raises one, so it is written by hand;
// TestSessionNotificationDataEncoding holds the two to the same bytes).
func appendSessionNotificationData(b []byte, id, userID, trigger string, c *schemas.SessionChange) []byte {
	b = append(b, `{"device_token":`...)
	b = schemas.AppendJSONString(b, c.DeviceToken)
	b = append(b, `,"id":`...)
	b = schemas.AppendJSONString(b, id)
	b = append(b, `,"session":{`...)
	if c.EndedAtMs != 0 {
		b = append(b, `"ended_at":"`...)
		b = time.UnixMilli(c.EndedAtMs).UTC().AppendFormat(b, msRFC3339Layout) // digits and -:.TZ only
		b = append(b, `",`...)
	}
	b = append(b, `"id":`...)
	b = schemas.AppendJSONString(b, c.ID)
	b = append(b, `,"last_activity_at":"`...)
	b = time.UnixMilli(c.LastActivityAtMs).UTC().AppendFormat(b, msRFC3339Layout)
	b = append(b, '"')
	if c.EndedAtMs != 0 {
		b = append(b, `,"reason":`...)
		b = schemas.AppendJSONString(b, c.Reason)
	}
	b = append(b, `,"started_at":"`...)
	b = time.UnixMilli(c.StartedAtMs).UTC().AppendFormat(b, msRFC3339Layout)
	b = append(b, `","status":`...)
	b = schemas.AppendJSONString(b, c.Status)
	b = append(b, `,"uuid":`...)
	b = schemas.AppendJSONString(b, c.UUID)
	b = append(b, `},"trigger":`...)
	b = schemas.AppendJSONString(b, trigger)
	b = append(b, `,"user_id":`...)
	b = schemas.AppendJSONString(b, userID)
	return append(b, '}')
}

// The end-user state's encoding (UserState version 4 and later), appended
// after the version 3 fields:
//
//	uvarint n, then n active sessions: id, device (packed strings),
//	  varint start ms, uvarint last activity - start;
//	uvarint n, then n forgotten devices: u64 fingerprint hash, varint ms;
//	uvarint n, then n activations: 32-byte SHA-256, device, varint expiry.
//
// Packed strings take 17 bytes for a UUID or a device token (tag + 16
// raw bytes), else tag + uvarint length + bytes. A typical session (UUID
// id, device token) is about 45 bytes, so 20 active sessions about 0.9 KB;
// the worst case (64-byte non-UUID ids) is about 100 bytes a session, 2 KB
// for 20. Forgotten devices take at most 16 x 14 bytes, pending activation
// tokens at most 4 x 55 bytes. An empty end-user state is 3 bytes.

const (
	strRaw   = 0
	strUUID  = 1
	strToken = 2
)

func appendPacked(b []byte, s string) []byte {
	if u, ok := packUUID(s); ok {
		return append(append(b, strUUID), u[:]...)
	}
	if t, ok := packToken(s); ok {
		return append(append(b, strToken), t[:]...)
	}
	b = append(b, strRaw)
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// packUUID decodes s when it is a UUID in canonical form (36 characters,
// lower-case hex): the strings uuid.Parse accepts and UUID.String gives
// back unchanged.
func packUUID(s string) (uuid.UUID, bool) {
	if len(s) != 36 || strings.ToLower(s) != s {
		return uuid.UUID{}, false
	}
	u, err := uuid.Parse(s)
	return u, err == nil
}

// strictToken decodes device tokens: unpadded URL-safe base64 whose
// unused low bits are zero, so that a decoded token encodes back to the
// same string.
var strictToken = base64.RawURLEncoding.Strict()

// packToken decodes s when it is 16 bytes in canonical unpadded URL-safe
// base64 (22 characters, the 4 unused low bits of the last one zero): the
// strings base64.RawURLEncoding decodes to 16 bytes and encodes back
// unchanged.
func packToken(s string) (t [16]byte, ok bool) {
	if len(s) != 22 {
		return t, false
	}
	n, err := strictToken.Decode(t[:], []byte(s))
	return t, err == nil && n == len(t)
}

func readPacked(b []byte) (string, []byte, bool) {
	if len(b) < 1 {
		return "", nil, false
	}
	tag, b := b[0], b[1:]
	switch tag {
	case strUUID, strToken:
		if len(b) < 16 {
			return "", nil, false
		}
		if tag == strUUID {
			var u uuid.UUID
			copy(u[:], b[:16])
			return u.String(), b[16:], true
		}
		return base64.RawURLEncoding.EncodeToString(b[:16]), b[16:], true
	case strRaw:
		n, k := binary.Uvarint(b)
		if k <= 0 || n > 256 || uint64(len(b)-k) < n {
			return "", nil, false
		}
		return string(b[k : k+int(n)]), b[k+int(n):], true
	}
	return "", nil, false
}

// sizeHint is at least the size of appendBinary's output.
func (s *endUserState) sizeHint() int {
	n := 3 * binary.MaxVarintLen64
	for i := range s.sessions {
		n += 2*(1+binary.MaxVarintLen64) + len(s.sessions[i].id) + len(s.sessions[i].device) + 2*binary.MaxVarintLen64
	}
	n += len(s.forgotten) * (8 + binary.MaxVarintLen64)
	for i := range s.activations {
		n += 32 + 1 + binary.MaxVarintLen64 + len(s.activations[i].device) + binary.MaxVarintLen64
	}
	return n
}

func (s *endUserState) appendBinary(b []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(s.sessions)))
	for _, x := range s.sessions {
		b = appendPacked(b, x.id)
		b = appendPacked(b, x.device)
		b = binary.AppendVarint(b, x.startMs)
		b = binary.AppendUvarint(b, uint64(x.lastMs-x.startMs))
	}
	b = binary.AppendUvarint(b, uint64(len(s.forgotten)))
	for _, f := range s.forgotten {
		b = binary.LittleEndian.AppendUint64(b, f.fp)
		b = binary.AppendVarint(b, f.atMs)
	}
	b = binary.AppendUvarint(b, uint64(len(s.activations)))
	for _, a := range s.activations {
		b = append(b, a.hash[:]...)
		b = appendPacked(b, a.device)
		b = binary.AppendVarint(b, a.expiresMs)
	}
	return b
}

func (s *endUserState) readBinary(b []byte) ([]byte, error) {
	*s = endUserState{}
	n, k := binary.Uvarint(b)
	if k <= 0 || n > maxSessions {
		return nil, errCorruptState
	}
	b = b[k:]
	for i := uint64(0); i < n; i++ {
		var x session
		var ok bool
		if x.id, b, ok = readPacked(b); !ok {
			return nil, errCorruptState
		}
		if x.device, b, ok = readPacked(b); !ok {
			return nil, errCorruptState
		}
		start, k := binary.Varint(b)
		if k <= 0 {
			return nil, errCorruptState
		}
		b = b[k:]
		d, k := binary.Uvarint(b)
		if k <= 0 {
			return nil, errCorruptState
		}
		b = b[k:]
		x.startMs, x.lastMs = start, start+int64(d)
		s.sessions = append(s.sessions, x)
	}
	n, k = binary.Uvarint(b)
	if k <= 0 || n > maxForgotten {
		return nil, errCorruptState
	}
	b = b[k:]
	for i := uint64(0); i < n; i++ {
		if len(b) < 8 {
			return nil, errCorruptState
		}
		f := forgottenDevice{fp: binary.LittleEndian.Uint64(b)}
		at, k := binary.Varint(b[8:])
		if k <= 0 {
			return nil, errCorruptState
		}
		f.atMs = at
		b = b[8+k:]
		s.forgotten = append(s.forgotten, f)
	}
	n, k = binary.Uvarint(b)
	if k <= 0 || n > maxActivations {
		return nil, errCorruptState
	}
	b = b[k:]
	for i := uint64(0); i < n; i++ {
		if len(b) < sha256.Size {
			return nil, errCorruptState
		}
		var a activation
		copy(a.hash[:], b)
		b = b[sha256.Size:]
		var ok bool
		if a.device, b, ok = readPacked(b); !ok {
			return nil, errCorruptState
		}
		exp, k := binary.Varint(b)
		if k <= 0 {
			return nil, errCorruptState
		}
		a.expiresMs = exp
		b = b[k:]
		s.activations = append(s.activations, a)
	}
	return b, nil
}
