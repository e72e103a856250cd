package scorer

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/moat-dev/moat/internal/botlist"
	"github.com/moat-dev/moat/schemas"
)

// The hot path's hand-written or allocation-free versions of a few
// functions are held here to the straightforward versions they replaced.

// appendPackedReference is appendPacked as first written.
func appendPackedReference(b []byte, s string) []byte {
	if len(s) == 36 {
		if u, err := uuid.Parse(s); err == nil && u.String() == s {
			return append(append(b, strUUID), u[:]...)
		}
	}
	if len(s) == 22 {
		if raw, err := base64.RawURLEncoding.DecodeString(s); err == nil && len(raw) == 16 && base64.RawURLEncoding.EncodeToString(raw) == s {
			return append(append(b, strToken), raw...)
		}
	}
	b = append(b, strRaw)
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// packedCandidates are strings near the UUID and token forms: valid ones,
// upper case, bad characters, wrong lengths, non-zero trailing bits.
func packedCandidates() []string {
	r := rand.New(rand.NewPCG(1, 2))
	out := []string{"", "x", "session-1", strings.Repeat("a", 64), "urn:uuid:0190a000-0000-7000-8000-000000000001"}
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_+/=\n\r.G{}"
	for i := 0; i < 3000; i++ {
		var u uuid.UUID
		for j := range u {
			u[j] = byte(r.Uint32())
		}
		s := u.String()
		out = append(out, s, strings.ToUpper(s), "{"+s[1:35]+"}", s[:35]+"g", strings.ReplaceAll(s, "-", "x"), u.URN()[:36])
		tok := base64.RawURLEncoding.EncodeToString(u[:])
		out = append(out, tok, base64.StdEncoding.EncodeToString(u[:])[:22], base64.RawURLEncoding.EncodeToString(u[:15])+"AAA")
		// random 22- and 36-character strings over a wide alphabet,
		// and a token whose last character has its unused bits set
		var b [36]byte
		for j := range b {
			b[j] = alphabet[r.IntN(len(alphabet))]
		}
		out = append(out, string(b[:22]), string(b[:]))
		last := []byte(tok)
		last[21] = alphabet[r.IntN(64)]
		out = append(out, string(last))
		// mutate one character of a valid UUID
		m := []byte(s)
		m[r.IntN(36)] = alphabet[r.IntN(len(alphabet))]
		out = append(out, string(m))
	}
	return out
}

func TestAppendPackedMatchesReference(t *testing.T) {
	uuids, tokens := 0, 0
	for _, s := range packedCandidates() {
		got, want := appendPacked(nil, s), appendPackedReference(nil, s)
		if !bytes.Equal(got, want) {
			t.Fatalf("appendPacked(%q) = %x, want %x", s, got, want)
		}
		switch got[0] {
		case strUUID:
			uuids++
		case strToken:
			tokens++
		}
		if back, rest, ok := readPacked(got); !ok || len(rest) != 0 || (got[0] != strRaw && back != s) {
			t.Fatalf("readPacked(appendPacked(%q)) = %q, %v", s, back, ok)
		}
	}
	if uuids < 3000 || tokens < 3000 {
		t.Fatalf("only %d UUIDs and %d tokens packed: the candidates miss the compact forms", uuids, tokens)
	}
}

func TestSessionUUIDMatchesReference(t *testing.T) {
	ref := func(appID, userID, id string) string {
		if len(id) == 36 {
			if u, err := uuid.Parse(id); err == nil {
				return u.String()
			}
		}
		return uuid.NewSHA1(sessionNamespace, []byte(appID+"\x00"+userID+"\x00"+id)).String()
	}
	ids := append(packedCandidates()[:500], strings.Repeat("é", 200), strings.Repeat("z", 300))
	for _, id := range ids {
		for _, user := range []string{"", "bob", strings.Repeat("u", 250)} {
			if got, want := sessionUUID("app", user, id), ref("app", user, id); got != want {
				t.Fatalf("sessionUUID(app, %q, %q) = %s, want %s", user, id, got, want)
			}
		}
	}
	for _, typ := range []string{schemas.NotifySessionStarted, schemas.NotifySessionEnded} {
		for _, c := range ids[:50] {
			want := uuid.NewSHA1(uuid.NameSpaceOID, []byte("ev-1/"+typ+"/"+c)).String()
			if got := uuidSHA1(uuid.NameSpaceOID, '/', "ev-1", typ, c); got != want {
				t.Fatalf("notification id %s, want %s", got, want)
			}
		}
	}
}

// sessionNotificationData is the data of $session.started and
// $session.ended; fields in name order. It is how the data was encoded
// (encoding/json) before appendSessionNotificationData.
type sessionNotificationData struct {
	DeviceToken string                     `json:"device_token"`
	ID          string                     `json:"id"`
	Session     sessionNotificationSession `json:"session"`
	Trigger     string                     `json:"trigger"`
	UserID      string                     `json:"user_id"`
}

type sessionNotificationSession struct {
	EndedAt        *string `json:"ended_at,omitempty"`
	ID             string  `json:"id"`
	LastActivityAt string  `json:"last_activity_at"`
	Reason         *string `json:"reason,omitempty"`
	StartedAt      string  `json:"started_at"`
	Status         string  `json:"status"`
	UUID           string  `json:"uuid"`
}

func TestSessionNotificationDataEncoding(t *testing.T) {
	odd := []string{"", "plain", `quote" back\slash`, "<script>&amp;</script>", "line\nbreak\ttab\x01", "\u2028\u2029", "caf\xe9 \xff\xfe", "日本語", "\xe2\x80"}
	times := []int64{0, 1, 1_795_000_000_123, -62_135_596_800_000, 253_402_300_799_999, 300_000_000_000_000}
	n := 0
	for i, s := range odd {
		for j, ms := range times {
			c := schemas.SessionChange{UUID: odd[(i+1)%len(odd)], ID: s, DeviceToken: odd[(i+2)%len(odd)], Status: odd[(i+3)%len(odd)],
				Reason: odd[(i+4)%len(odd)], StartedAtMs: ms, LastActivityAtMs: times[(j+1)%len(times)]}
			for _, ended := range []int64{0, ms + 7, 1} {
				c.EndedAtMs = ended
				id, user, trig := odd[(i+5)%len(odd)], odd[(i+6)%len(odd)], odd[(i+7)%len(odd)]
				data := sessionNotificationData{
					ID: id, UserID: user, DeviceToken: c.DeviceToken, Trigger: trig,
					Session: sessionNotificationSession{
						UUID: c.UUID, ID: c.ID, Status: c.Status,
						StartedAt: msRFC3339(c.StartedAtMs), LastActivityAt: msRFC3339(c.LastActivityAtMs),
					},
				}
				if c.EndedAtMs != 0 {
					ended, reason := msRFC3339(c.EndedAtMs), c.Reason
					data.Session.EndedAt, data.Session.Reason = &ended, &reason
				}
				want, err := json.Marshal(&data)
				if err != nil {
					t.Fatal(err)
				}
				if got := appendSessionNotificationData(nil, id, user, trig, &c); !bytes.Equal(got, want) {
					t.Fatalf("encoded\n%s\nwant\n%s", got, want)
				}
				n++
			}
		}
	}
	if n == 0 {
		t.Fatal("nothing compared")
	}
}

// TestUACacheMatchesUncached: the cached user agent and bot verdict of a
// header are what parsing it and matching it against the list give, on
// the first (miss) and later (hit) lookups, and across generations.
func TestUACacheMatchesUncached(t *testing.T) {
	ua, fp := testParts(t)
	bots := botlist.Builtin()
	uas := []string{"", " ", "true", chromeUA, firefoxUA, " " + chromeUA + " ", chromeUA + "\t",
		"Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
		"  Googlebot/2.1", "facebookexternalhit/1.1", "python-requests/2.31.0", "curl/8.4.0",
		"Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
		"Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.6367.82 Mobile Safari/537.36",
		"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/120.0.0.0 Safari/537.36",
		strings.Repeat("A", 2000), "GPTBot/1.0", "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; ClaudeBot/1.0)",
	}
	for _, withBots := range []bool{false, true} {
		enr := Enrichment{}
		if withBots {
			enr.Bots = bots
		}
		d := NewDecider(ua, fp, enr, nil)
		d.uaCache = newUACache(4) // small: entries move between generations
		for round := 0; round < 3; round++ {
			for _, raw := range uas {
				got := d.userAgent(raw)
				want := ua.Parse(raw)
				var wantName string
				var wantBot bool
				if withBots && raw != "" {
					wantName, wantBot = bots.Match(raw)
				}
				if got.ua != want || got.botName != wantName || got.bot != wantBot || got.key != raw {
					t.Fatalf("round %d, %q: cached %+v %q %v, want %+v %q %v", round, raw, got.ua, got.botName, got.bot, want, wantName, wantBot)
				}
			}
		}
		if withBots {
			if e := d.userAgent("facebookexternalhit/1.1"); !e.bot {
				t.Fatal("the test list does not flag a known bot")
			}
		}
	}
}

// TestDecideUnchangedByUACache: a decider whose user-agent cache holds
// every header and one whose cache holds almost nothing decide a stream
// identically.
func TestDecideUnchangedByUACache(t *testing.T) {
	ua, fp := testParts(t)
	enr := Enrichment{Bots: botlist.Builtin()}
	a, b := NewDecider(ua, fp, enr, nil), NewDecider(ua, fp, enr, nil)
	b.uaCache = newUACache(1)
	uas := []string{chromeUA, firefoxUA, "Googlebot/2.1 (+http://www.google.com/bot.html)", "curl/8.4.0", ""}
	sa, sb := &UserState{}, &UserState{}
	for i := 0; i < 300; i++ {
		ev := &schemas.Event{V: 1, ID: uuid.NewSHA1(uuid.NameSpaceOID, []byte{byte(i), byte(i >> 8)}).String(), AppID: "app",
			Kind: schemas.KindRisk, Type: "$login", Status: "$succeeded", User: schemas.User{ID: "u", Email: "u+x@example.com"},
			Context:    schemas.Context{IP: "192.0.2.1", Headers: map[string]string{"user-agent": uas[i%len(uas)], "accept-language": "en"}},
			ReceivedAt: t0.Add(time.Duration(i) * time.Minute)}
		da, na := a.Decide(ev, sa)
		db, nb := b.Decide(ev, sb)
		ja, _ := json.Marshal(struct {
			D schemas.Decision
			N []schemas.Notification
		}{da, na})
		jb, _ := json.Marshal(struct {
			D schemas.Decision
			N []schemas.Notification
		}{db, nb})
		if !bytes.Equal(ja, jb) {
			t.Fatalf("event %d decided differently:\n%s\n%s", i, ja, jb)
		}
	}
}

// marshalReference is UserState.MarshalBinary as first written: the risk
// state encoded on its own, then copied behind its length.
func marshalReference(s *UserState) []byte {
	r, err := s.Risk.MarshalBinary()
	if err != nil {
		panic(err)
	}
	b := []byte{stateVersion}
	b = binary.AppendUvarint(b, uint64(len(r)))
	b = append(b, r...)
	b = binary.AppendUvarint(b, uint64(len(s.notified)))
	for _, n := range s.notified {
		b = binary.LittleEndian.AppendUint64(b, n)
	}
	b = binary.AppendUvarint(b, uint64(len(s.feedback)))
	for _, f := range s.feedback {
		b = binary.LittleEndian.AppendUint64(b, f.fp)
		a := byte(0)
		if f.approved {
			a = 1
		}
		b = append(b, a)
		b = binary.AppendVarint(b, f.atMs)
	}
	b = binary.AppendVarint(b, s.impersonatedSinceMs)
	return s.eu.appendBinary(b)
}

// TestStateEncodingMatchesReference: the state encoding appended in place
// is the one built through a buffer of the risk state's own, as users
// accumulate history, sessions, feedback and notifications.
func TestStateEncodingMatchesReference(t *testing.T) {
	ua, fp := testParts(t)
	d := NewDecider(ua, fp, Enrichment{Bots: botlist.Builtin()}, nil)
	states := make([]*UserState, 5)
	for i := range states {
		states[i] = &UserState{}
	}
	uas := []string{chromeUA, firefoxUA, "curl/8.4.0", "Googlebot/2.1"}
	for i := 0; i < 600; i++ {
		st := states[i%len(states)]
		ev := &schemas.Event{V: 1, ID: uuid.NewSHA1(uuid.NameSpaceOID, []byte{byte(i), byte(i >> 8)}).String(), AppID: "app",
			Kind: schemas.KindTrack, Type: "$login", Status: "$succeeded", User: schemas.User{ID: "u" + string(rune('a'+i%len(states)))},
			Context:    schemas.Context{IP: "192.0.2.1", ClientID: []string{"", "cid-1", "cid-2"}[i%3], Headers: map[string]string{"user-agent": uas[i%len(uas)]}},
			ReceivedAt: t0.Add(time.Duration(i) * time.Minute)}
		switch i % 7 {
		case 3:
			ev.Type, ev.Status = "$login", "$failed"
		case 5:
			ev.Kind, ev.Type = schemas.KindRisk, "$profile_update"
		}
		d.Decide(ev, st)
		if i%50 == 49 {
			st.setFeedback("fp-"+string(rune('a'+i%9)), i%2 == 0, int64(i))
			st.eu.forget(uint64(i), int64(i))
		}
		got, err := st.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		app, err := st.AppendBinary([]byte("prefix"))
		if err != nil {
			t.Fatal(err)
		}
		want := marshalReference(st)
		if !bytes.Equal(got, want) || !bytes.Equal(app[len("prefix"):], want) || string(app[:len("prefix")]) != "prefix" {
			t.Fatalf("event %d: state encoding differs:\n%x\n%x", i, got, want)
		}
	}
}
