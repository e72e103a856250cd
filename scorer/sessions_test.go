package scorer

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/google/uuid"
	"github.com/moat-dev/moat/schemas"
	"github.com/moat-dev/moat/scorer/fingerprint"
)

const (
	chromeUA  = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/118.0.5993.88 Safari/537.36"
	firefoxUA = "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0"
)

var t0 = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

type sessionsFixture struct {
	t  *testing.T
	d  *Decider
	fp *fingerprint.Hasher
	st *UserState
	n  int
}

func newSessionsFixture(t *testing.T) *sessionsFixture {
	ua, fp := testParts(t)
	return &sessionsFixture{t: t, d: NewDecider(ua, fp, Enrichment{}, nil), fp: fp, st: &UserState{}}
}

func (f *sessionsFixture) id() string {
	f.n++
	return fmt.Sprintf("0190a000-0000-7000-8000-%012d", f.n)
}

// event is a track call of bob's at t0+at from a browser.
func (f *sessionsFixture) event(typ, status, ua string, at time.Duration, session string) *schemas.Event {
	ev := &schemas.Event{
		V: 1, ID: f.id(), AppID: "app", Kind: schemas.KindTrack, Type: typ, Status: status,
		User:       schemas.User{ID: "bob"},
		Context:    schemas.Context{IP: "192.0.2.1", Headers: map[string]string{"user-agent": ua}},
		ReceivedAt: t0.Add(at),
	}
	if session != "" {
		ev.Extra = map[string]json.RawMessage{"session": json.RawMessage(`{"id":` + session + `}`)}
	}
	return ev
}

func (f *sessionsFixture) command(kind schemas.Kind, dev schemas.Device, at time.Duration, extra any) *schemas.Event {
	ev := &schemas.Event{
		V: 1, ID: f.id(), AppID: "app", Kind: kind, User: schemas.User{ID: "bob"},
		Device: &schemas.DeviceRef{Token: dev.Token, Fingerprint: dev.Fingerprint}, ReceivedAt: t0.Add(at),
	}
	if extra != nil {
		b, _ := json.Marshal(extra)
		ev.Extra = map[string]json.RawMessage{schemas.ExtraActivation: b}
	}
	return ev
}

func (f *sessionsFixture) decide(ev *schemas.Event) (schemas.Decision, []schemas.Notification) {
	f.t.Helper()
	d, n := f.d.Decide(ev, f.st)
	// Every step's state survives the changelog.
	b, err := f.st.MarshalBinary()
	if err != nil {
		f.t.Fatal(err)
	}
	var back UserState
	if err := back.UnmarshalBinary(b); err != nil {
		f.t.Fatalf("decode state: %v", err)
	}
	if !euEqual(back.eu, f.st.eu) {
		f.t.Fatalf("state round trip: %+v, want %+v", back.eu, f.st.eu)
	}
	return d, n
}

func euEqual(a, b endUserState) bool {
	return slices.Equal(a.sessions, b.sessions) && slices.Equal(a.forgotten, b.forgotten) && slices.Equal(a.activations, b.activations)
}

func types(notes []schemas.Notification) []string {
	var out []string
	for _, n := range notes {
		out = append(out, n.Type)
	}
	return out
}

func sessionData(t *testing.T, n schemas.Notification) map[string]any {
	t.Helper()
	var d struct {
		Session map[string]any `json:"session"`
	}
	if err := json.Unmarshal(n.Data, &d); err != nil {
		t.Fatal(err)
	}
	return d.Session
}

func TestSessionLifecycle(t *testing.T) {
	f := newSessionsFixture(t)
	login := f.event("$login", "$succeeded", chromeUA, 0, `"s-1"`)
	dec, notes := f.decide(login)
	if !reflect.DeepEqual(types(notes), []string{schemas.NotifySessionStarted}) {
		t.Fatalf("login notes = %v", types(notes))
	}
	if len(dec.Sessions) != 1 || dec.Sessions[0].ID != "s-1" || dec.Sessions[0].Status != schemas.SessionActive || dec.Sessions[0].DeviceToken != dec.Device.Token {
		t.Fatalf("login sessions = %+v", dec.Sessions)
	}
	want := uuid.NewSHA1(sessionNamespace, []byte("app\x00bob\x00s-1")).String()
	if dec.Sessions[0].UUID != want {
		t.Errorf("uuid = %s, want %s", dec.Sessions[0].UUID, want)
	}
	chrome := dec.Device

	// Activity of the device extends the session, silently.
	dec, notes = f.decide(f.event("$profile_update", "$succeeded", chromeUA, 10*time.Minute, ""))
	if len(notes) != 0 || len(dec.Sessions) != 1 || dec.Sessions[0].LastActivityAtMs != t0.Add(10*time.Minute).UnixMilli() {
		t.Fatalf("activity: notes %v, sessions %+v", types(notes), dec.Sessions)
	}
	// Another device's activity does not.
	dec, _ = f.decide(f.event("$profile_update", "$succeeded", firefoxUA, 11*time.Minute, ""))
	if len(dec.Sessions) != 0 {
		t.Fatalf("another device extended the session: %+v", dec.Sessions)
	}
	// 25 minutes after the start, still active thanks to the extension.
	dec, notes = f.decide(f.event("$logout", "$succeeded", chromeUA, 25*time.Minute, `"s-1"`))
	if !reflect.DeepEqual(types(notes), []string{schemas.NotifySessionEnded}) {
		t.Fatalf("logout notes = %v", types(notes))
	}
	c := dec.Sessions[0]
	if c.Status != schemas.SessionFinished || c.Reason != schemas.SessionEndLogout || c.EndedAtMs != t0.Add(25*time.Minute).UnixMilli() || c.DeviceToken != chrome.Token {
		t.Fatalf("logout change = %+v", c)
	}
	if s := sessionData(t, notes[0]); s["reason"] != "logout" || s["uuid"] != want || s["ended_at"] == nil {
		t.Errorf("ended data = %v", s)
	}
	if len(f.st.eu.sessions) != 0 {
		t.Errorf("ended session kept in state: %+v", f.st.eu.sessions)
	}
}

func TestSessionIDs(t *testing.T) {
	f := newSessionsFixture(t)
	// Without a session object, the login event's id is the session id.
	ev := f.event("$login", "$succeeded", chromeUA, 0, "")
	dec, _ := f.decide(ev)
	if dec.Sessions[0].ID != ev.ID || dec.Sessions[0].UUID != ev.ID {
		t.Errorf("derived session = %+v, want the event id %s", dec.Sessions[0], ev.ID)
	}
	// A UUID session id is the session's UUID; a number is an id too.
	u := "3f1c9a52-6a51-4f8e-9c41-3f1d2d7f0a11"
	dec, _ = f.decide(f.event("$login", "$succeeded", chromeUA, time.Second, `"`+u+`"`))
	if dec.Sessions[0].UUID != u {
		t.Errorf("uuid session = %+v", dec.Sessions[0])
	}
	dec, _ = f.decide(f.event("$login", "$succeeded", chromeUA, 2*time.Second, `12345`))
	if dec.Sessions[0].ID != "12345" {
		t.Errorf("numeric session id = %+v", dec.Sessions[0])
	}
	// A repeated login with the same session id extends that session.
	dec, notes := f.decide(f.event("$login", "$succeeded", chromeUA, 3*time.Second, `12345`))
	if len(notes) != 0 || len(f.st.eu.sessions) != 3 || dec.Sessions[0].StartedAtMs != t0.Add(2*time.Second).UnixMilli() {
		t.Errorf("repeated login: notes %v, %d sessions, %+v", types(notes), len(f.st.eu.sessions), dec.Sessions)
	}
	// Overlong ids are hashed.
	long := strings.Repeat("x", 100)
	dec, _ = f.decide(f.event("$login", "$succeeded", chromeUA, 4*time.Second, `"`+long+`"`))
	h := sha256.Sum256([]byte(long))
	if dec.Sessions[0].ID != hex.EncodeToString(h[:]) {
		t.Errorf("long id = %q", dec.Sessions[0].ID)
	}
	// A logout without a session id ends every session of the device.
	dec, notes = f.decide(f.event("$logout", "", chromeUA, 5*time.Second, ""))
	if len(notes) != 4 || len(dec.Sessions) != 4 || len(f.st.eu.sessions) != 0 {
		t.Errorf("logout of all: %d notes, %+v", len(notes), dec.Sessions)
	}
	// A failed login starts nothing.
	if dec, _ := f.decide(f.event("$login", "$failed", chromeUA, 6*time.Second, "")); len(dec.Sessions) != 0 {
		t.Errorf("failed login started %+v", dec.Sessions)
	}
}

func TestSessionInactivity(t *testing.T) {
	f := newSessionsFixture(t)
	f.decide(f.event("$login", "$succeeded", chromeUA, 0, `"s-1"`))
	// 20 minutes exactly: still active (extended).
	dec, _ := f.decide(f.event("$profile_update", "$succeeded", chromeUA, 20*time.Minute, ""))
	if len(dec.Sessions) != 1 || dec.Sessions[0].Status != schemas.SessionActive {
		t.Fatalf("at the timeout: %+v", dec.Sessions)
	}
	// The next event, from another device 45 minutes later, finishes it
	// as of its last activity plus the timeout.
	dec, notes := f.decide(f.event("$login", "$succeeded", firefoxUA, 65*time.Minute, `"s-2"`))
	if !reflect.DeepEqual(types(notes), []string{schemas.NotifySessionEnded, schemas.NotifySessionStarted}) {
		t.Fatalf("notes = %v", types(notes))
	}
	c := dec.Sessions[0]
	if c.ID != "s-1" || c.Status != schemas.SessionFinished || c.Reason != schemas.SessionEndInactivity || c.EndedAtMs != t0.Add(40*time.Minute).UnixMilli() {
		t.Errorf("expired change = %+v", c)
	}
	if notes[0].CreatedAt != t0.Add(65*time.Minute) {
		t.Errorf("raised at %v, want the next event's time", notes[0].CreatedAt)
	}
	// A configured timeout applies.
	f.d.SetSessionTimeout(time.Minute)
	dec, notes = f.decide(f.event("$profile_update", "$succeeded", firefoxUA, 67*time.Minute, ""))
	if len(notes) != 1 || dec.Sessions[0].Reason != schemas.SessionEndInactivity {
		t.Errorf("1-minute timeout: %v %+v", types(notes), dec.Sessions)
	}
}

func TestSessionEviction(t *testing.T) {
	f := newSessionsFixture(t)
	for i := 0; i < maxSessions; i++ {
		f.decide(f.event("$login", "$succeeded", chromeUA, time.Duration(i)*time.Second, fmt.Sprintf(`"s-%d"`, i)))
	}
	dec, notes := f.decide(f.event("$login", "$succeeded", chromeUA, time.Minute, `"s-new"`))
	if len(f.st.eu.sessions) != maxSessions || !reflect.DeepEqual(types(notes), []string{schemas.NotifySessionEnded, schemas.NotifySessionStarted}) {
		t.Fatalf("%d sessions, notes %v", len(f.st.eu.sessions), types(notes))
	}
	if dec.Sessions[0].ID != "s-0" || dec.Sessions[0].Reason != schemas.SessionEndEvicted {
		t.Errorf("evicted %+v", dec.Sessions[0])
	}
}

func TestHijackBlocksSessions(t *testing.T) {
	f := newSessionsFixture(t)
	dec, _ := f.decide(f.event("$login", "$succeeded", chromeUA, 0, `"s-1"`))
	chrome := dec.Device
	dec, _ = f.decide(f.event("$login", "$succeeded", firefoxUA, time.Second, `"s-2"`))
	firefox := dec.Device

	dec, notes := f.decide(f.command(schemas.KindDeviceHijack, chrome, time.Minute, nil))
	if !reflect.DeepEqual(types(notes), []string{schemas.NotifyDeviceUpdated, schemas.NotifySessionEnded, schemas.NotifyIncidentConfirmed}) {
		t.Fatalf("hijack notes = %v", types(notes))
	}
	if len(dec.Sessions) != 1 || dec.Sessions[0].Status != schemas.SessionBlocked || dec.Sessions[0].Reason != schemas.SessionEndHijack || dec.Risk != 1 {
		t.Fatalf("hijack decision = %+v", dec)
	}
	if len(f.st.eu.sessions) != 1 || f.st.eu.sessions[0].device != firefox.Token {
		t.Errorf("sessions after hijack = %+v", f.st.eu.sessions)
	}
	// Later risk calls from the device score 1.0 and start no session.
	ev := f.event("$login", "$succeeded", chromeUA, 2*time.Minute, "")
	ev.Kind = schemas.KindRisk
	dec, _ = f.decide(ev)
	if dec.Risk != 1 || dec.Action != "deny" || len(dec.Sessions) != 0 {
		t.Errorf("login from the hijacked device: risk %v action %s sessions %+v", dec.Risk, dec.Action, dec.Sessions)
	}
	// Another user's (or a forged) fingerprint changes nothing.
	forged := schemas.Device{Token: firefox.Token, Fingerprint: chrome.Fingerprint}
	if dec, notes := f.decide(f.command(schemas.KindDeviceHijack, forged, 3*time.Minute, nil)); len(notes) != 0 || len(dec.Sessions) != 0 {
		t.Errorf("forged hijack applied: %v %+v", types(notes), dec.Sessions)
	}
}

func TestForgetMakesANewDevice(t *testing.T) {
	f := newSessionsFixture(t)
	dec, _ := f.decide(f.event("$login", "$succeeded", chromeUA, 0, `"s-1"`))
	chrome := dec.Device
	f.decide(f.command(schemas.KindDeviceVerify, chrome, time.Second, nil))
	if trusted, _ := f.st.feedbackOf(chrome.Fingerprint); !trusted {
		t.Fatal("verify did not approve")
	}
	dec, notes := f.decide(f.command(schemas.KindDeviceForget, chrome, time.Minute, nil))
	if !reflect.DeepEqual(types(notes), []string{schemas.NotifyDeviceUpdated, schemas.NotifySessionEnded}) || dec.Sessions[0].Reason != schemas.SessionEndForget {
		t.Fatalf("forget: %v %+v", types(notes), dec.Sessions)
	}
	if trusted, _ := f.st.feedbackOf(chrome.Fingerprint); trusted {
		t.Error("a forgotten device stays approved")
	}
	dec, _ = f.decide(f.event("$login", "$succeeded", chromeUA, 2*time.Minute, ""))
	if dec.Device.Token == chrome.Token || dec.Device.Token == "" || dec.Device.Fingerprint != chrome.Fingerprint {
		t.Fatalf("after forget: token %q (was %q)", dec.Device.Token, chrome.Token)
	}
	if dec.Trusted {
		t.Error("the new device is trusted")
	}
	// Commands naming the old token do nothing now.
	if _, notes := f.decide(f.command(schemas.KindDeviceVerify, chrome, 3*time.Minute, nil)); len(notes) != 0 {
		t.Errorf("verify of the forgotten token: %v", types(notes))
	}
}

func TestSignoutEndsOnlyTheDevice(t *testing.T) {
	f := newSessionsFixture(t)
	dec, _ := f.decide(f.event("$login", "$succeeded", chromeUA, 0, `"a"`))
	chrome := dec.Device
	f.decide(f.event("$login", "$succeeded", chromeUA, time.Second, `"b"`))
	f.decide(f.event("$login", "$succeeded", firefoxUA, 2*time.Second, `"c"`))
	// signout names the device by token only.
	dec, notes := f.decide(f.command(schemas.KindDeviceSignout, schemas.Device{Token: chrome.Token}, time.Minute, nil))
	if len(notes) != 2 || len(dec.Sessions) != 2 || len(f.st.eu.sessions) != 1 || f.st.eu.sessions[0].id != "c" {
		t.Fatalf("signout: %v %+v; left %+v", types(notes), dec.Sessions, f.st.eu.sessions)
	}
	for _, c := range dec.Sessions {
		if c.Reason != schemas.SessionEndSignout || c.Status != schemas.SessionFinished {
			t.Errorf("change %+v", c)
		}
	}
	if notes[0].ID == notes[1].ID {
		t.Error("two notifications share an id")
	}
}

func TestActivationTokens(t *testing.T) {
	f := newSessionsFixture(t)
	dec, _ := f.decide(f.event("$login", "$succeeded", chromeUA, 0, ""))
	chrome := dec.Device
	dec, _ = f.decide(f.event("$login", "$succeeded", firefoxUA, 0, ""))
	firefox := dec.Device
	hash := func(tok string) string { h := sha256.Sum256([]byte(tok)); return hex.EncodeToString(h[:]) }
	issue := func(tok string, dev schemas.Device, at time.Duration) {
		f.decide(f.command(schemas.KindTrustToken, dev, at, schemas.Activation{SHA256: hash(tok), ExpiresAtMs: t0.Add(at + 5*time.Minute).UnixMilli()}))
	}
	activate := func(tok string, dev schemas.Device, at time.Duration) bool {
		dec, _ := f.decide(f.command(schemas.KindTrustActivate, dev, at, schemas.Activation{SHA256: hash(tok)}))
		return dec.Trusted
	}
	issue("tok-1", chrome, time.Minute)
	if activate("tok-1", firefox, 2*time.Minute) {
		t.Error("a token issued for one device activated another")
	}
	if !activate("tok-1", chrome, 2*time.Minute) {
		t.Fatal("activation failed")
	}
	if activate("tok-1", chrome, 3*time.Minute) {
		t.Error("an activation token was used twice")
	}
	// The device is trusted in later decisions.
	ev := f.event("$login", "$succeeded", chromeUA, 4*time.Minute, "")
	ev.Kind = schemas.KindRisk
	if dec, _ := f.decide(ev); !dec.Trusted || dec.Risk != 0 {
		t.Errorf("login from the trusted device: trusted %v risk %v", dec.Trusted, dec.Risk)
	}
	// Expired tokens fail (5 minutes, to the millisecond).
	issue("tok-2", firefox, 10*time.Minute)
	if activate("tok-2", firefox, 15*time.Minute+time.Millisecond) {
		t.Error("an expired token activated")
	}
	if len(f.st.eu.activations) != 0 {
		t.Errorf("expired token kept: %+v", f.st.eu.activations)
	}
	// Revoking withdraws the trust.
	f.decide(f.command(schemas.KindTrustRevoke, chrome, 20*time.Minute, nil))
	if trusted, _ := f.st.feedbackOf(chrome.Fingerprint); trusted {
		t.Error("revoke kept the trust")
	}
	// At most maxActivations pending tokens.
	for i := 0; i < maxActivations+2; i++ {
		issue(fmt.Sprint("many-", i), chrome, 30*time.Minute)
	}
	if len(f.st.eu.activations) != maxActivations || activate("many-0", chrome, 31*time.Minute) || !activate(fmt.Sprint("many-", maxActivations+1), chrome, 31*time.Minute) {
		t.Errorf("bounded activations: %d", len(f.st.eu.activations))
	}
}

func TestStateEncodingVersions(t *testing.T) {
	f := newSessionsFixture(t)
	dec, _ := f.decide(f.event("$login", "$succeeded", chromeUA, 0, `"`+strings.Repeat("z", 40)+`"`))
	f.decide(f.event("$login", "$succeeded", firefoxUA, time.Second, `"3f1c9a52-6a51-4f8e-9c41-3f1d2d7f0a11"`))
	f.decide(f.command(schemas.KindDeviceForget, dec.Device, time.Minute, nil))
	h := sha256.Sum256([]byte("x"))
	f.decide(f.command(schemas.KindTrustToken, dec.Device, time.Minute, schemas.Activation{SHA256: hex.EncodeToString(h[:]), ExpiresAtMs: t0.Add(time.Hour).UnixMilli()}))
	f.decide(f.event("$login", "$succeeded", chromeUA, 2*time.Minute, `"s-3"`))
	if len(f.st.eu.sessions) != 2 || len(f.st.eu.forgotten) != 1 || len(f.st.eu.activations) != 1 {
		t.Fatalf("state %+v", f.st.eu)
	}
	b, err := f.st.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if b[0] != 4 {
		t.Fatalf("version %d", b[0])
	}
	var back UserState
	if err := back.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	if !euEqual(back.eu, f.st.eu) {
		t.Fatalf("round trip %+v, want %+v", back.eu, f.st.eu)
	}
	again, _ := back.MarshalBinary()
	if !bytes.Equal(again, b) {
		t.Error("re-encoding differs")
	}
	// Every truncation is an error, never a panic.
	for i := 1; i < len(b); i++ {
		var s UserState
		if s.UnmarshalBinary(b[:i]) == nil {
			t.Errorf("truncated to %d bytes decoded", i)
		}
	}

	// Version 3 (before sessions): the same bytes without the end-user
	// section decode to an empty end-user state.
	old := *f.st
	old.eu = endUserState{}
	v4, _ := old.MarshalBinary()
	v3 := append([]byte{3}, v4[1:len(v4)-3]...) // the empty section is three zero counts
	if !bytes.Equal(v4[len(v4)-3:], []byte{0, 0, 0}) {
		t.Fatalf("empty end-user section = %x", v4[len(v4)-3:])
	}
	var dec3 UserState
	if err := dec3.UnmarshalBinary(v3); err != nil {
		t.Fatalf("version 3: %v", err)
	}
	if !reflect.DeepEqual(dec3.feedback, old.feedback) || dec3.impersonatedSinceMs != old.impersonatedSinceMs || len(dec3.eu.sessions) != 0 {
		t.Errorf("version 3 decoded to %+v", dec3)
	}
	// A version-3 state keeps scoring: the first login starts a session.
	f.st = &dec3
	if d, _ := f.decide(f.event("$login", "$succeeded", chromeUA, 3*time.Minute, "")); len(d.Sessions) != 1 {
		t.Errorf("after version 3: %+v", d.Sessions)
	}
}

func TestSessionsDeterministic(t *testing.T) {
	run := func() []byte {
		f := newSessionsFixture(t)
		var out bytes.Buffer
		steps := []*schemas.Event{
			f.event("$login", "$succeeded", chromeUA, 0, ""),
			f.event("$login", "$succeeded", firefoxUA, time.Minute, `"x"`),
			f.event("$profile_update", "$succeeded", chromeUA, 5*time.Minute, ""),
			f.event("$login", "$succeeded", chromeUA, 2*time.Hour, ""),
		}
		for _, ev := range steps {
			d, n := f.decide(ev)
			b, _ := json.Marshal(struct {
				D schemas.Decision
				N []schemas.Notification
			}{d, n})
			out.Write(b)
		}
		return out.Bytes()
	}
	if a, b := run(), run(); !bytes.Equal(a, b) {
		t.Error("replaying the same events gave different decisions or notifications")
	}
}

// TestSessionNotificationData: the data of session notifications is the
// JSON object it always was (keys in name order; ended_at and reason only
// once the session ended, reason even when empty).
func TestSessionNotificationData(t *testing.T) {
	ev := &schemas.Event{ID: "e1", AppID: "app", Type: "$login", Status: "$succeeded", User: schemas.User{ID: "u1"},
		ReceivedAt: time.Date(2026, 11, 22, 8, 0, 0, 0, time.UTC)}
	for _, c := range []schemas.SessionChange{
		{UUID: "s-uuid", ID: "s1", Status: "active", DeviceToken: "tok", StartedAtMs: 1_795_000_000_000, LastActivityAtMs: 1_795_000_060_000},
		{UUID: "s-uuid", ID: "s1", Status: "ended", DeviceToken: "tok", StartedAtMs: 1_795_000_000_000, LastActivityAtMs: 1_795_000_060_000, EndedAtMs: 1_795_000_090_000, Reason: "timeout"},
		{UUID: "s-uuid", Status: "ended", StartedAtMs: 1, LastActivityAtMs: 2, EndedAtMs: 3},
	} {
		n := sessionNotification(schemas.NotifySessionStarted, ev, c)
		session := map[string]any{"uuid": c.UUID, "id": c.ID, "status": c.Status,
			"started_at": msRFC3339(c.StartedAtMs), "last_activity_at": msRFC3339(c.LastActivityAtMs)}
		if c.EndedAtMs != 0 {
			session["ended_at"] = msRFC3339(c.EndedAtMs)
			session["reason"] = c.Reason
		}
		want, _ := json.Marshal(map[string]any{"id": n.ID, "user_id": "u1", "device_token": c.DeviceToken, "trigger": "$login.succeeded", "session": session})
		if string(n.Data) != string(want) {
			t.Fatalf("data\n%s\nwant\n%s", n.Data, want)
		}
	}
}

// TestStateKeepsNoEventMemory: the strings a user's state keeps are copies,
// not pieces of the decoded event. schemas.DecodeEvent gives every string
// of an event one shared buffer, so a kept piece would keep the whole
// record alive for as long as the user's state lives (a scorer holds every
// user of its partitions).
func TestStateKeepsNoEventMemory(t *testing.T) {
	f := newSessionsFixture(t)
	src := f.event("$login", "$succeeded", "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0", 0, "")
	var ev schemas.Event
	if err := schemas.DecodeEvent(src.AppendJSON(nil), &ev); err != nil {
		t.Fatal(err)
	}
	f.decide(&ev)
	if len(f.st.eu.sessions) != 1 || f.st.eu.sessions[0].id != ev.ID {
		t.Fatalf("sessions %+v, want one started by the login", f.st.eu.sessions)
	}
	inEvent := func(s string) bool {
		p := uintptr(unsafe.Pointer(unsafe.StringData(s)))
		for _, e := range []string{ev.ID, ev.AppID, ev.User.ID, ev.Context.IP, ev.Context.Headers["user-agent"]} {
			b := uintptr(unsafe.Pointer(unsafe.StringData(e)))
			if p >= b && p < b+uintptr(len(e)) {
				return true
			}
		}
		return false
	}
	for _, s := range f.st.eu.sessions {
		if inEvent(s.id) || inEvent(s.device) {
			t.Errorf("session %q on device %q points into the decoded event", s.id, s.device)
		}
	}
}
