package e2e_test

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moat-dev/moat/internal/bearer"
	"github.com/moat-dev/moat/internal/stacktest"
	"github.com/moat-dev/moat/schemas"
)

const (
	msgUnauthenticated = `{"message":"Unauthenticated."}`
	msgForbidden       = `{"message":"This action is unauthorized."}`
	msgNotFound        = `{"message":"Device not found"}`
)

// TestEndUserDevices drives the end-user device routes (/api/devices) the
// way an app's front end would, through the whole pipeline: bob logs in
// from two browsers, gets a bearer token from the app's backend, lists and
// reads his devices, verifies one, flags the other as hijacked, signs out
// and forgets. Reads right after commands see them even while the
// projector is stopped.
func TestEndUserDevices(t *testing.T) {
	s := stacktest.New(t, stacktest.Options{})
	a := stacktest.Secret("app-a")
	chrome := loginRisk(t, s, a, "bob", chromeUA, "bob-chrome").Device.Token
	firefox := loginRisk(t, s, a, "bob", euFirefoxUA, "bob-firefox").Device.Token
	alice := loginRisk(t, s, a, "alice", chromeUA, "").Device.Token
	names := map[string]string{chrome: "chrome device token", firefox: "firefox device token", alice: "alice device token"}

	// The app's backend gets a token for bob on his Chrome.
	tok, resp := issueBearer(t, s, a, "bob", chrome)
	golden(t, "token", resp, names)
	if code, body := s.Post("/v1/users/bob/tokens", a, `{"device_token":"`+alice+`"}`); code != 404 {
		t.Errorf("token for another user's device: %d %s", code, body)
	}
	if code, body := s.Post("/v1/users/bob/tokens", "", `{}`); code != 401 {
		t.Errorf("token without the API secret: %d %s", code, body)
	}

	list := bearerCall(t, s, "GET", "/api/devices", tok, "")
	if list.code != 200 {
		t.Fatalf("list: %d %s", list.code, list.body)
	}
	golden(t, "devices", list.body, names)
	ids := deviceUUIDs(t, list.body)
	chromeID, firefoxID := ids["Chrome"], ids["Firefox"]
	if chromeID == "" || firefoxID == "" || ids["current"] != chromeID {
		t.Fatalf("uuids %v", ids)
	}
	// The uuid is stable: a second read gives the same.
	if again := bearerCall(t, s, "GET", "/api/devices", tok, ""); again.body != list.body {
		t.Errorf("second read differs:\n%s\n%s", list.body, again.body)
	}
	one := bearerCall(t, s, "GET", "/api/devices/"+chromeID, tok, "")
	if one.code != 200 {
		t.Fatalf("get: %d %s", one.code, one.body)
	}
	golden(t, "device", one.body, names)

	// Not found, other users and other apps: 404, nothing leaked.
	aliceTok, _ := issueBearer(t, s, a, "alice", alice)
	aliceID := deviceUUIDs(t, bearerCall(t, s, "GET", "/api/devices", aliceTok, "").body)["current"]
	if aliceID == "" || aliceID == chromeID {
		t.Fatalf("alice's device uuid %q", aliceID)
	}
	bearerCall(t, s, "GET", "/api/devices/"+aliceID, tok, "").expect(t, "bob reads alice's device", 404, msgNotFound)
	bearerCall(t, s, "PATCH", "/api/devices/"+aliceID+"/hijack", tok, "").expect(t, "bob hijacks alice's device", 404, msgNotFound)
	bearerCall(t, s, "GET", "/api/devices/"+chromeID, aliceTok, "").expect(t, "alice reads bob's device", 404, msgNotFound)
	bearerCall(t, s, "GET", "/api/devices/not-a-uuid", tok, "").expect(t, "bad uuid", 404, msgNotFound)
	bearerCall(t, s, "PATCH", "/api/devices/00000000-0000-4000-8000-000000000000/verify", tok, "").expect(t, "unknown uuid", 404, msgNotFound)
	bobB, _ := issueBearer(t, s, stacktest.Secret("app-b"), "bob", "")
	bearerCall(t, s, "GET", "/api/devices", bobB, "").expect(t, "app b's bob", 200, `{"data":[]}`)
	bearerCall(t, s, "GET", "/api/devices/"+chromeID, bobB, "").expect(t, "app b reads app a's device", 404, msgNotFound)
	bearerCall(t, s, "PATCH", "/api/devices/"+chromeID+"/forget", bobB, "").expect(t, "app b forgets app a's device", 404, msgNotFound)

	// Authentication: missing, Basic, tampered, expired, foreign and
	// unknown-app tokens are all the same 401.
	expired, err := bearer.NewSigner(stacktest.BearerKey, time.Minute, func() time.Time { return time.Now().Add(-time.Hour) })
	if err != nil {
		t.Fatal(err)
	}
	oldTok, _, _ := expired.Issue("app-a", "bob", chrome)
	foreign, _ := bearer.NewSigner([]byte("another-deployment-bearer-key-0123456789"), 0, nil)
	foreignTok, _, _ := foreign.Issue("app-a", "bob", chrome)
	ghostTok, _, _ := s.Signer.Issue("app-gone", "bob", "")
	parts := strings.Split(tok, ".")
	claims, _ := jsonB64(parts[1])
	tampered := parts[0] + "." + b64(strings.Replace(claims, `"sub":"bob"`, `"sub":"alice"`, 1)) + "." + parts[2]
	for name, bad := range map[string]string{"expired": oldTok, "foreign": foreignTok, "unknown app": ghostTok, "tampered": tampered, "garbage": "abc"} {
		r := bearerCall(t, s, "GET", "/api/devices", bad, "")
		r.expect(t, name+" token", 401, msgUnauthenticated)
		if !strings.HasPrefix(r.hdr.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("%s: WWW-Authenticate %q", name, r.hdr.Get("WWW-Authenticate"))
		}
	}
	bearerCall(t, s, "GET", "/api/devices", "", "").expect(t, "no token", 401, msgUnauthenticated)
	bearerCall(t, s, "GET", "/api/devices", "", "", "Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(":"+a))).expect(t, "API secret on /api", 401, msgUnauthenticated)
	bearerCall(t, s, "GET", "/api/nothing-here", "", "").expect(t, "unknown /api route without token", 401, msgUnauthenticated)
	if r := bearerCall(t, s, "GET", "/v1/users/bob/devices", tok, ""); r.code != 401 || !strings.Contains(r.body, `"type":"unauthorized"`) {
		t.Errorf("bearer token on /v1: %d %s", r.code, r.body)
	}

	// Commands while the projector is stopped: the answers and the reads
	// after them show the new state from the log.
	s.StopProjector()
	r := bearerCall(t, s, "PATCH", "/api/devices/"+firefoxID+"/verify", tok, "")
	golden(t, "verify", r.body, names)
	verified := bearerCall(t, s, "GET", "/api/devices/"+firefoxID, tok, "")
	if !strings.Contains(verified.body, `"status":"verified"`) || strings.Contains(verified.body, `"verified_at":null`) {
		t.Errorf("read after verify: %s", verified.body)
	}
	r = bearerCall(t, s, "PATCH", "/api/devices/"+firefoxID+"/hijack", tok, "")
	golden(t, "hijack", r.body, names)
	hijacked := bearerCall(t, s, "GET", "/api/devices/"+firefoxID, tok, "")
	if hijacked.code != 200 {
		t.Fatalf("read after hijack: %d %s", hijacked.code, hijacked.body)
	}
	golden(t, "device_hijacked", hijacked.body, names)
	s.StartProjector()
	s.WaitCount(20*time.Second, 2, "SELECT count() FROM events FINAL WHERE app_id = 'app-a' AND user_id = 'bob' AND kind IN ('device.verify', 'device.hijack')")
	if again := bearerCall(t, s, "GET", "/api/devices/"+firefoxID, tok, ""); again.body != hijacked.body {
		t.Errorf("ClickHouse disagrees with the log:\n%s\n%s", hijacked.body, again.body)
	}

	// The hijacked device's next login is denied and starts no session.
	if d := loginRisk(t, s, a, "bob", euFirefoxUA, "bob-firefox-2"); d.Policy.Action != "deny" || d.Risk != 1 {
		t.Errorf("login from the hijacked device: %+v", d)
	}
	// 403: a hijacked device cannot manage devices, a user cannot verify
	// a hijacked device, and signout needs a current device.
	firefoxTok, _ := issueBearer(t, s, a, "bob", firefox)
	bearerCall(t, s, "PATCH", "/api/devices/"+chromeID+"/verify", firefoxTok, "").expect(t, "command from the hijacked device", 403, msgForbidden)
	bearerCall(t, s, "PATCH", "/api/devices/"+firefoxID+"/verify", tok, "").expect(t, "verify the hijacked device", 403, msgForbidden)
	noDevice, _ := issueBearer(t, s, a, "bob", "")
	bearerCall(t, s, "POST", "/api/devices/signout", noDevice, "").expect(t, "signout without a device", 403, msgForbidden)

	// Signout ends the current device's sessions.
	r = bearerCall(t, s, "POST", "/api/devices/signout", tok, "")
	golden(t, "signout", r.body, names)
	afterSignout := bearerCall(t, s, "GET", "/api/devices/"+chromeID, tok, "")
	if !strings.Contains(afterSignout.body, `"status":"finished"`) || strings.Contains(afterSignout.body, `"status":"active"`) {
		t.Errorf("sessions after signout: %s", afterSignout.body)
	}

	// Forget: the device's sessions end, the device is gone, and its next
	// login is a new device.
	if d := loginRisk(t, s, a, "bob", chromeUA, "bob-chrome-1b"); d.Device.Token != chrome {
		t.Fatalf("chrome's token changed before forget: %s", d.Device.Token)
	}
	r = bearerCall(t, s, "PATCH", "/api/devices/"+chromeID+"/forget", tok, "")
	golden(t, "forget", r.body, names)
	bearerCall(t, s, "GET", "/api/devices/"+chromeID, tok, "").expect(t, "read a forgotten device", 404, msgNotFound)
	if ids := deviceUUIDs(t, bearerCall(t, s, "GET", "/api/devices", tok, "").body); ids["Chrome"] != "" || ids["Firefox"] != firefoxID {
		t.Errorf("after forget: %v", ids)
	}
	again := loginRisk(t, s, a, "bob", chromeUA, "bob-chrome-2").Device.Token
	if again == chrome || again == "" {
		t.Fatalf("forgotten device came back with token %q", again)
	}
	ids = deviceUUIDs(t, bearerCall(t, s, "GET", "/api/devices", tok, "").body)
	if ids["Chrome"] == "" || ids["Chrome"] == chromeID {
		t.Errorf("the new Chrome: %v", ids)
	}

	// The session changes and the incidents are on the incidents topic:
	// $incident.confirmed for the hijack and for the denied login from
	// the hijacked device.
	notes := notifications(t, s, "bob", 20*time.Second, func(ns []schemas.Notification) bool {
		c := countNotes(t, ns)
		return c["ended:hijack"] >= 1 && c["ended:signout"] >= 1 && c["ended:forget"] >= 1 && c[schemas.NotifyIncidentConfirmed] >= 2 && c[schemas.NotifySessionStarted] >= 4
	})
	c := countNotes(t, notes)
	if c["ended:hijack"] != 1 || c["ended:signout"] != 1 || c["ended:forget"] != 1 || c[schemas.NotifyIncidentConfirmed] != 2 || c[schemas.NotifySessionStarted] != 4 || c[schemas.NotifyDeviceUpdated] != 3 {
		t.Errorf("bob's notifications: %v", c)
	}
	// And the sessions view has them.
	s.WaitCount(20*time.Second, 1, "SELECT count() FROM sessions_state WHERE app_id = 'app-a' AND user_id = 'bob' AND status = 'blocked' AND end_reason = 'hijack'")
	s.WaitCount(20*time.Second, 1, "SELECT count() FROM sessions_state WHERE app_id = 'app-a' AND user_id = 'bob' AND status = 'finished' AND end_reason = 'signout'")
	s.WaitCount(20*time.Second, 1, "SELECT count() FROM sessions_state WHERE app_id = 'app-a' AND user_id = 'bob' AND status = 'finished' AND end_reason = 'forget'")
	s.WaitCount(20*time.Second, 1, "SELECT count() FROM sessions_state WHERE app_id = 'app-a' AND user_id = 'bob' AND status = 'active'")

	// After a privacy deletion the end-user routes show none of bob's
	// devices or sessions.
	if code, body := s.Do("DELETE", "/v1/privacy/users/bob", a, ""); code/100 != 2 {
		t.Fatalf("privacy delete: %d %s", code, body)
	}
	bearerCall(t, s, "GET", "/api/devices", tok, "").expect(t, "devices after the privacy deletion", 200, `{"data":[]}`)
	bearerCall(t, s, "GET", "/api/devices/"+firefoxID, tok, "").expect(t, "a device after the privacy deletion", 404, msgNotFound)
}

// TestTrustedDevices drives the trusted devices routes (/api/v1/devices):
// activation tokens are single use (even when two activations race),
// expire, are bound to the user and the device, and an activated device
// is trusted in later risk decisions until revoked.
func TestTrustedDevices(t *testing.T) {
	s := stacktest.New(t, stacktest.Options{ActivationTTL: 6 * time.Second})
	a := stacktest.Secret("app-a")
	carol := loginRisk(t, s, a, "carol", chromeUA, "").Device.Token
	dave := loginRisk(t, s, a, "dave", chromeUA, "").Device.Token
	names := map[string]string{carol: "carol device token"}
	tok, _ := issueBearer(t, s, a, "carol", carol)
	daveTok, _ := issueBearer(t, s, a, "dave", dave)

	bearerCall(t, s, "GET", "/api/v1/devices", tok, "").expect(t, "no trusted devices", 200, `{"data":[]}`)
	activation := func(user, device string) string {
		t.Helper()
		code, body := s.Post("/v1/users/"+user+"/devices/activation_tokens", a, `{"device_token":"`+device+`"}`)
		if code != 201 {
			t.Fatalf("activation token: %d %s", code, body)
		}
		var r struct {
			Token string `json:"token"`
		}
		_ = json.Unmarshal([]byte(body), &r)
		golden(t, "activation_token", body, names)
		return r.Token
	}
	if code, body := s.Post("/v1/users/carol/devices/activation_tokens", a, `{"device_token":"`+dave+`"}`); code != 404 {
		t.Errorf("activation token for another user's device: %d %s", code, body)
	}
	if code, body := s.Post("/v1/users/carol/devices/activation_tokens", a, `{}`); code != 422 {
		t.Errorf("activation token without a device: %d %s", code, body)
	}
	invalid := `{"message":"The activation token is invalid or has expired."}`
	act := func(token, activationToken string) euResp {
		return bearerCall(t, s, "POST", "/api/v1/devices/activate", token, `{"token":"`+activationToken+`"}`)
	}
	act(tok, "mat_wrong").expect(t, "wrong activation token", 422, invalid)
	bearerCall(t, s, "POST", "/api/v1/devices/activate", tok, `{}`).expect(t, "no activation token", 422, `{"message":"The token field is required."}`)

	// Two racing activations with one token: exactly one wins.
	at := activation("carol", carol)
	act(daveTok, at).expect(t, "another user's activation token", 422, invalid)
	var wg sync.WaitGroup
	res := make([]euResp, 2)
	for i := range res {
		wg.Add(1)
		go func() { defer wg.Done(); res[i] = act(tok, at) }()
	}
	wg.Wait()
	if res[0].code == res[1].code || res[0].code+res[1].code != 200+422 {
		t.Fatalf("racing activations: %d %s / %d %s", res[0].code, res[0].body, res[1].code, res[1].body)
	}
	for _, r := range res {
		if r.code == 200 {
			golden(t, "activate", r.body, names)
		}
	}
	act(tok, at).expect(t, "reused activation token", 422, invalid)

	list := bearerCall(t, s, "GET", "/api/v1/devices", tok, "")
	golden(t, "trusted", list.body, names)
	var trusted struct {
		Data []struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	if err := json.Unmarshal([]byte(list.body), &trusted); err != nil || len(trusted.Data) != 1 {
		t.Fatalf("trusted list %s", list.body)
	}
	id := trusted.Data[0].ID
	// The device is trusted in the risk decision (risk 0, trusted row).
	if d := loginRisk(t, s, a, "carol", chromeUA, ""); d.Risk != 0 || d.Policy.Action != "allow" {
		t.Errorf("trusted device's login: %+v", d)
	}
	s.WaitCount(20*time.Second, 1, "SELECT count() FROM events FINAL WHERE app_id = 'app-a' AND user_id = 'carol' AND kind = 'risk' AND trusted = 1")
	// The end-user device list shows it verified.
	if l := bearerCall(t, s, "GET", "/api/devices", tok, ""); !strings.Contains(l.body, `"status":"verified"`) {
		t.Errorf("device list: %s", l.body)
	}

	// Expired tokens fail.
	late := activation("carol", carol)
	time.Sleep(6500 * time.Millisecond)
	act(tok, late).expect(t, "expired activation token", 422, invalid)

	// Revoke: another user cannot; the owner can, once.
	bearerCall(t, s, "DELETE", "/api/v1/devices/"+id, daveTok, "").expect(t, "dave revokes carol's device", 404, msgNotFound)
	r := bearerCall(t, s, "DELETE", "/api/v1/devices/"+id, tok, "")
	golden(t, "revoke", r.body, names)
	bearerCall(t, s, "GET", "/api/v1/devices", tok, "").expect(t, "after revoke", 200, `{"data":[]}`)
	bearerCall(t, s, "DELETE", "/api/v1/devices/"+id, tok, "").expect(t, "revoke twice", 404, msgNotFound)

	// Skip records the user's choice; it needs a current device.
	r = bearerCall(t, s, "POST", "/api/v1/devices/skip", tok, "")
	golden(t, "skip", r.body, names)
	noDevice, _ := issueBearer(t, s, a, "carol", "")
	bearerCall(t, s, "POST", "/api/v1/devices/skip", noDevice, "").expect(t, "skip without a device", 403, msgForbidden)
	bearerCall(t, s, "POST", "/api/v1/devices/activate", noDevice, `{"token":"x"}`).expect(t, "activate without a device", 403, msgForbidden)
	bearerCall(t, s, "GET", "/api/v1/devices", "", "").expect(t, "trusted list without a token", 401, msgUnauthenticated)
	s.WaitCount(20*time.Second, 1, "SELECT count() FROM events FINAL WHERE app_id = 'app-a' AND user_id = 'carol' AND kind = 'trust.skip'")
	// Only hashes are stored: no activation token reaches ClickHouse.
	if n := s.Count("SELECT count() FROM events WHERE app_id = 'app-a' AND position(extra, 'mat_') > 0"); n != 0 {
		t.Errorf("%d rows hold a raw activation token", n)
	}
}

// TestSessionsFromEvents checks sessions end to end with a 3-second
// timeout: login starts one, activity extends it, logout ends it, and
// inactivity finishes it, reported with the user's next event; reads
// show an idle session as finished before that.
func TestSessionsFromEvents(t *testing.T) {
	s := stacktest.New(t, stacktest.Options{SessionTimeout: 3 * time.Second})
	a := stacktest.Secret("app-a")
	track := func(event, session string) {
		t.Helper()
		sess := ""
		if session != "" {
			sess = `"session":{"id":"` + session + `"},`
		}
		body := `{"type":"` + event + `","user":{"id":"erin"},` + sess + `"context":{"ip":"203.0.113.9","headers":{"User-Agent":"` + chromeUA + `","Accept-Language":"en-US"}}}`
		if strings.Contains(event, ".") {
			body = `{"event":"` + event + `","user_id":"erin",` + sess + `"context":{"ip":"203.0.113.9","headers":{"User-Agent":"` + chromeUA + `","Accept-Language":"en-US"}}}`
		}
		if code, resp := s.Post("/v1/track", a, body); code != 204 {
			t.Fatalf("track %s: %d %s", event, code, resp)
		}
	}
	device := loginRisk(t, s, a, "erin", chromeUA, "e1").Device.Token
	track("$profile_update", "")
	track("$logout.succeeded", "e1")
	track("$login.succeeded", "e2")
	time.Sleep(3500 * time.Millisecond)
	track("$login.succeeded", "e3") // finishes e2 (inactivity), starts e3

	// The API shows e3 active, then finished once it idled past the
	// timeout, before any further event.
	tok, _ := issueBearer(t, s, a, "erin", device)
	id := deviceUUIDs(t, bearerCall(t, s, "GET", "/api/devices", tok, "").body)["current"]
	read := func() []string {
		var d struct {
			Data struct {
				Sessions []struct {
					Status string `json:"status"`
				} `json:"sessions"`
			} `json:"data"`
		}
		r := bearerCall(t, s, "GET", "/api/devices/"+id, tok, "")
		if err := json.Unmarshal([]byte(r.body), &d); err != nil {
			t.Fatalf("%d %s", r.code, r.body)
		}
		var out []string
		for _, x := range d.Data.Sessions {
			out = append(out, x.Status)
		}
		return out
	}
	if got := strings.Join(read(), ","); got != "active,finished,finished" {
		t.Errorf("sessions newest first = %s, want active,finished,finished", got)
	}
	time.Sleep(3500 * time.Millisecond)
	if got := strings.Join(read(), ","); got != "finished,finished,finished" {
		t.Errorf("after the timeout: %s", got)
	}

	notes := notifications(t, s, "erin", 20*time.Second, func(ns []schemas.Notification) bool {
		c := countNotes(t, ns)
		return c[schemas.NotifySessionStarted] >= 3 && c["ended:logout"] >= 1 && c["ended:inactivity"] >= 1
	})
	if c := countNotes(t, notes); c[schemas.NotifySessionStarted] != 3 || c["ended:logout"] != 1 || c["ended:inactivity"] != 1 {
		t.Errorf("erin's notifications: %v", c)
	}
	for _, n := range notes {
		if n.DeviceToken != device {
			t.Errorf("notification %s on device %q, want %q", n.Type, n.DeviceToken, device)
		}
	}
	s.WaitCount(20*time.Second, 1, "SELECT count() FROM sessions_state WHERE app_id = 'app-a' AND user_id = 'erin' AND session_id = 'e1' AND status = 'finished' AND end_reason = 'logout' AND last_activity_ms > started_ms")
	s.WaitCount(20*time.Second, 1, "SELECT count() FROM sessions_state WHERE app_id = 'app-a' AND user_id = 'erin' AND session_id = 'e2' AND status = 'finished' AND end_reason = 'inactivity' AND ended_ms = last_activity_ms + 3000")
	s.WaitCount(20*time.Second, 1, "SELECT count() FROM sessions_state WHERE app_id = 'app-a' AND user_id = 'erin' AND session_id = 'e3' AND status = 'active'")
}

// TestEndUserRateLimits checks the per-token and per-IP limits: 429 with
// Retry-After and retry_after, and unauthenticated attempts count against
// the IP.
func TestEndUserRateLimits(t *testing.T) {
	s := stacktest.New(t, stacktest.Options{NoWorkers: true, TokenRate: 3, IPRate: 6})
	a := stacktest.Secret("app-a")
	tok1, _ := issueBearer(t, s, a, "frank", "")
	tok2, _ := issueBearer(t, s, a, "frank", "")
	for i := 0; i < 3; i++ {
		bearerCall(t, s, "GET", "/api/devices", tok1, "").expect(t, "within the token's limit", 200, `{"data":[]}`)
	}
	r := bearerCall(t, s, "GET", "/api/devices", tok1, "")
	golden(t, "rate_limited", strings.Replace(r.body, `"retry_after":20`, `"retry_after":"<20>"`, 1), nil)
	if r.code != http.StatusTooManyRequests || r.hdr.Get("Retry-After") != "20" {
		t.Errorf("token limit: %d %s, Retry-After %q", r.code, r.body, r.hdr.Get("Retry-After"))
	}
	// Another token of the same IP: two more calls, then the IP's limit.
	for i := 0; i < 2; i++ {
		bearerCall(t, s, "GET", "/api/devices", tok2, "").expect(t, "within the IP's limit", 200, `{"data":[]}`)
	}
	r = bearerCall(t, s, "GET", "/api/devices", tok2, "")
	if r.code != 429 || r.hdr.Get("Retry-After") == "" {
		t.Errorf("IP limit: %d %s", r.code, r.body)
	}
	var body struct {
		Message    string `json:"message"`
		RetryAfter int    `json:"retry_after"`
	}
	if err := json.Unmarshal([]byte(r.body), &body); err != nil || body.Message != "Too Many Attempts." || strconv.Itoa(body.RetryAfter) != r.hdr.Get("Retry-After") {
		t.Errorf("429 body %s", r.body)
	}
	// Without a token: the IP is limited before authentication.
	if r := bearerCall(t, s, "GET", "/api/devices", "", ""); r.code != 429 {
		t.Errorf("unauthenticated call over the IP limit: %d %s", r.code, r.body)
	}
	// The Castle API is not limited by the end-user limits.
	if code, body := s.Post("/v1/users/frank/tokens", a, ""); code != 201 {
		t.Errorf("backend route: %d %s", code, body)
	}
}
