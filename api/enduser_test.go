package api

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/moat-dev/moat/internal/apps"
	"github.com/moat-dev/moat/internal/bearer"
	"github.com/moat-dev/moat/internal/httpapi"
	"github.com/moat-dev/moat/internal/useragent"
	"github.com/moat-dev/moat/schemas"
	"github.com/moat-dev/moat/scorer/fingerprint"
)

func at(min int) time.Time { return time.Date(2026, 11, 22, 10, min, 0, 0, time.UTC) }

func ms(min int) uint64 { return uint64(at(min).UnixMilli()) }

// TestBuildView folds ClickHouse's rows, its commands and the pending
// decisions as the scorer applies commands.
func TestBuildView(t *testing.T) {
	rows := []deviceRow{
		{UserID: "bob", Token: "tok-a", Fingerprint: "fp-a", FirstSeenMs: ms(0), LastSeenMs: ms(5), LastIP: "192.0.2.1"},
		{UserID: "bob", Token: "tok-b", Fingerprint: "fp-b", FirstSeenMs: ms(1), LastSeenMs: ms(2)},
		{UserID: "bob", Token: "tok-c", Fingerprint: "fp-c", FirstSeenMs: ms(1), LastSeenMs: ms(3)},
		{UserID: "bob", Token: "tok-d", Fingerprint: "fp-d", FirstSeenMs: ms(1), LastSeenMs: ms(3)},
	}
	cmds := []viewCommand{
		{id: "1", kind: "device.approve", target: "tok-a", atMs: ms(6), trusted: true},
		{id: "2", kind: "device.verify", target: "tok-b", atMs: ms(6), trusted: true},
		{id: "3", kind: "trust.activate", target: "tok-c", atMs: ms(6), trusted: false}, // refused by the scorer
		{id: "4", kind: "device.report", target: "tok-d", atMs: ms(6), risk: 1},
	}
	sessions := []viewSession{{uuid: "s1", id: "x", device: "tok-a", status: "active", startedMs: ms(0), lastMs: ms(5)}}
	ev := func(id string, kind schemas.Kind, min int) schemas.Event {
		return schemas.Event{ID: id, Kind: kind, User: schemas.User{ID: "bob"}, ReceivedAt: at(min), Context: schemas.Context{IP: "198.51.100.7"}}
	}
	pending := []schemas.Decision{
		// A command already in ClickHouse comes again: applied once.
		{Event: ev("2", schemas.KindDeviceVerify, 6), Device: schemas.Device{Token: "tok-b"}, Trusted: true},
		// Hijack of the approved device, not in ClickHouse yet.
		{Event: ev("5", schemas.KindDeviceHijack, 7), Device: schemas.Device{Token: "tok-a"}, Risk: 1,
			Sessions: []schemas.SessionChange{{UUID: "s1", ID: "x", DeviceToken: "tok-a", Status: "blocked", Reason: "hijack", StartedAtMs: at(0).UnixMilli(), LastActivityAtMs: at(5).UnixMilli(), EndedAtMs: at(7).UnixMilli()}}},
		// Trust revoked for tok-b, tok-c forgotten.
		{Event: ev("6", schemas.KindTrustRevoke, 8), Device: schemas.Device{Token: "tok-b"}},
		{Event: ev("7", schemas.KindDeviceForget, 8), Device: schemas.Device{Token: "tok-c"}},
		// A login from a new device, with its session.
		{Event: ev("8", schemas.KindRisk, 9), Device: schemas.Device{Token: "tok-e", Fingerprint: "fp-e", UserAgent: schemas.UserAgent{Raw: "curl/8"}},
			Sessions: []schemas.SessionChange{{UUID: "s2", ID: "8", DeviceToken: "tok-e", Status: "active", StartedAtMs: at(9).UnixMilli(), LastActivityAtMs: at(9).UnixMilli()}}},
	}
	v := buildView(rows, cmds, sessions, pending)
	got := map[string]string{}
	var order []string
	for _, d := range v.devices {
		got[d.row.Token] = d.status
		order = append(order, d.row.Token)
	}
	want := map[string]string{"tok-a": statusHijacked, "tok-b": statusUnverified, "tok-d": statusHijacked, "tok-e": statusUnverified}
	if len(got) != len(want) {
		t.Fatalf("devices %v, want %v", got, want)
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s: %s, want %s", k, got[k], w)
		}
	}
	if strings.Join(order, ",") != "tok-e,tok-a,tok-d,tok-b" {
		t.Errorf("order %v, want most recently seen first", order)
	}
	if e := v.byToken("tok-e"); e == nil || e.row.LastIP != "198.51.100.7" || e.row.UA.Raw != "curl/8" || e.row.FirstSeenMs != ms(9) {
		t.Errorf("pending device %+v", e)
	}
	if s := v.sessions["s1"]; s.status != "blocked" || s.reason != "hijack" || s.endedMs != ms(7) {
		t.Errorf("merged session %+v", s)
	}
	if ss := v.deviceSessions("tok-e"); len(ss) != 1 || ss[0].status != "active" {
		t.Errorf("new device's sessions %+v", ss)
	}
	if v.device("app", deviceUUID("app", "tok-c")) != nil {
		t.Error("a forgotten device is found by uuid")
	}
	if d := v.device("app", strings.ToUpper(deviceUUID("app", "tok-a"))); d == nil {
		t.Error("an upper-case uuid did not match")
	}
	if d := v.device("app", "urn:uuid:"+deviceUUID("app", "tok-a")); d != nil {
		t.Error("a urn matched")
	}
	if d := v.device("app", deviceUUID("app", "tok-a")); d == nil || d.row.Token != "tok-a" {
		t.Error("uuid lookup failed")
	}
	if deviceUUID("app", "tok-a") == deviceUUID("other-app", "tok-a") {
		t.Error("device uuids do not depend on the app")
	}

	// Archiving withdraws approvals of devices seen before it.
	v = buildView(rows[:2], []viewCommand{
		{id: "1", kind: "device.approve", target: "tok-a", atMs: ms(6), trusted: true},
		{id: "2", kind: "user.archive_devices", atMs: ms(7)},
		{id: "3", kind: "device.verify", target: "tok-b", atMs: ms(8), trusted: true},
	}, nil, nil)
	if a, b := v.byToken("tok-a"), v.byToken("tok-b"); a.status != statusUnverified || b.status != statusVerified || b.verifiedMs != ms(8) {
		t.Errorf("after archive: a %s, b %s", a.status, b.status)
	}
}

func TestParsedObjects(t *testing.T) {
	p, err := useragent.New(0)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		ua                             string
		browser, family, engine, btype string
		bver, platform, pfam, pver, hw string
		hwType                         string
	}{
		{"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/118.0.5993.88 Safari/537.36",
			"Chrome", "Chrome", "Blink", "browser", "118.0.5993", "Windows", "Windows", "10.0.0", "Desktop/PC", "desktop"},
		{"Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
			"Mobile Safari", "Safari", "WebKit", "browser", "17.4.0", "iOS", "iOS", "17.4.0", "iPhone/iPhone", "mobile"},
		{"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15",
			"Safari", "Safari", "WebKit", "browser", "17.1.0", "Mac OS X", "macOS", "10.15.7", "Mac/Mac", "desktop"},
		{"", "Unknown", "Unknown", "Unknown", "Unknown", "0.0.0", "Unknown", "Unknown", "0.0.0", "Unknown/Unknown", "unknown"},
	} {
		ua := p.Parse(c.ua)
		b := Browser{Name: orUnknown(ua.Browser), Version: version(ua.BrowserVersion), Family: browserFamily(ua.Browser), Engine: orUnknown(ua.Engine), Type: orUnknown(ua.BrowserType)}
		hw := hardware(ua)
		got := []string{b.Name, b.Family, b.Engine, b.Type, b.Version.Label, orUnknown(ua.OS), orUnknown(ua.Platform), version(ua.OSVersion).Label, hw.Family + "/" + hw.Model, hw.Type}
		want := []string{c.browser, c.family, c.engine, c.btype, c.bver, c.platform, c.pfam, c.pver, c.hw, c.hwType}
		if strings.Join(got, "|") != strings.Join(want, "|") {
			t.Errorf("%q:\n got %v\nwant %v", c.ua, got, want)
		}
	}
	if v := version("118.0"); v != (Version{Major: "118", Minor: "0", Patch: "0", Label: "118.0.0"}) {
		t.Errorf("version %+v", v)
	}
}

// TestBearerRouting checks that the end-user routes take only bearer
// tokens, /v1 only the API secret, and the rate limits' 429.
func TestBearerRouting(t *testing.T) {
	reg, err := apps.New([]apps.App{{ID: "app-a", Name: "A", Secret: "routing-secret-a-0123456789abcdef"}})
	if err != nil {
		t.Fatal(err)
	}
	signer, err := bearer.NewSigner([]byte(strings.Repeat("b", 32)), 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	ua, _ := useragent.New(0)
	fp, _ := fingerprint.New([]byte(strings.Repeat("k", 32)))
	h, err := NewEndUserHandler(EndUserConfig{
		Store: NewStore(nil, "db"), UA: ua, FP: fp, Apps: reg, Signer: signer, Out: nopAppender{}, Replies: nopAwaiter{},
		TokenLimit: bearer.NewLimiter(2, time.Minute, 0, nil), IPLimit: bearer.NewLimiter(100, time.Minute, 0, nil),
	})
	if err != nil {
		t.Fatal(err)
	}
	e := httpapi.New(httpapi.Config{BodyLimit: 1 << 20}, discardLog())
	e.Use(httpapi.Authenticate(reg, httpapi.WithBearer(BearerPrefix, h.Authenticate)))
	ok := func(c echo.Context) error {
		who := httpapi.App(c).ID
		if cl, isBearer := c.Get(claimsKey).(bearer.Claims); isBearer {
			who += "/" + cl.UserID
		}
		return c.String(http.StatusOK, who)
	}
	e.GET("/v1/thing", ok)
	e.GET("/api/thing", ok)
	tok, _, _ := signer.Issue("app-a", "bob", "")
	do := func(path, auth string) (int, string, http.Header) {
		req := httptest.NewRequest(http.MethodGet, path, nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, req)
		return rec.Code, strings.TrimSpace(rec.Body.String()), rec.Header()
	}
	basic := "Basic " + b64(":routing-secret-a-0123456789abcdef")
	for _, c := range []struct {
		path, auth string
		code       int
		body       string
	}{
		{"/v1/thing", basic, 200, "app-a"},
		{"/v1/thing", "Bearer " + tok, 401, `{"type":"unauthorized","message":"Missing API secret: use HTTP Basic auth with the API secret as the password"}`},
		{"/api/thing", basic, 401, `{"message":"Unauthenticated."}`},
		{"/api/thing", "", 401, `{"message":"Unauthenticated."}`},
		{"/api/unknown", "", 401, `{"message":"Unauthenticated."}`},
		{"/api/../v1/thing", "", 401, `{"message":"Unauthenticated."}`},
		{"/api/thing", "bearer " + tok, 200, "app-a/bob"},
		{"/api/thing", "Bearer " + tok, 200, "app-a/bob"},
	} {
		code, body, _ := do(c.path, c.auth)
		if code != c.code || body != c.body {
			t.Errorf("GET %s (%.12s): %d %s, want %d %s", c.path, c.auth, code, body, c.code, c.body)
		}
	}
	code, body, hdr := do("/api/thing", "Bearer "+tok)
	var r struct {
		Message    string `json:"message"`
		RetryAfter int    `json:"retry_after"`
	}
	if code != 429 || json.Unmarshal([]byte(body), &r) != nil || r.Message != "Too Many Attempts." || r.RetryAfter != 30 || hdr.Get("Retry-After") != "30" {
		t.Errorf("third call: %d %s %v", code, body, hdr)
	}
}

type nopAppender struct{}

func (nopAppender) Append(context.Context, *schemas.Event) error { return nil }

type nopAwaiter struct{}

func (nopAwaiter) Instance() string { return "test" }
func (nopAwaiter) Await(string) (<-chan schemas.Decision, func()) {
	return make(chan schemas.Decision), func() {}
}

func discardLog() *slog.Logger { return slog.New(slog.DiscardHandler) }

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
