package e2e_test

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/moat-dev/moat/internal/stacktest"
)

type deviceBody struct {
	Token       string  `json:"token"`
	Risk        float64 `json:"risk"`
	ApprovedAt  *string `json:"approved_at"`
	EscalatedAt *string `json:"escalated_at"`
	MitigatedAt *string `json:"mitigated_at"`
}

// TestCommandsReadYourWrites: with a projector that flushes only every
// 1.5 s, a read right after approve, report, archive_devices or recover
// already shows what the command did; archive_devices marks every device
// seen so far as mitigated and withdraws approvals, recover marks the
// reported devices as mitigated; unknown users and other apps get 404.
func TestCommandsReadYourWrites(t *testing.T) {
	s := stacktest.New(t, stacktest.Options{ProjectorFlush: 1500 * time.Millisecond})
	a := stacktest.Secret("app-a")
	firefox := "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0"
	n := 0
	login := func(ua string) decisionBody {
		n++
		body := fmt.Sprintf(`{"type":"$login","status":"$succeeded","user":{"id":"carol","email":"carol@example.com"},"request_token":"t%d",
			"context":{"ip":"203.0.113.9","headers":{"User-Agent":%q,"Accept-Language":"en-US","Accept":"*/*"}}}`, n, ua)
		code, resp := s.Post("/v1/risk", a, body)
		if code != 201 {
			t.Fatalf("%d %s", code, resp)
		}
		var d decisionBody
		if err := json.Unmarshal([]byte(resp), &d); err != nil {
			t.Fatal(err)
		}
		return d
	}
	get := func(token string) deviceBody {
		t.Helper()
		code, resp := s.Do("GET", "/v1/devices/"+token, a, "")
		var d deviceBody
		if err := json.Unmarshal([]byte(resp), &d); code != 200 || err != nil {
			t.Fatalf("GET device: %d %s", code, resp)
		}
		return d
	}
	chrome := login(chromeUA)
	ff := login(firefox)
	s.WaitCount(20*time.Second, 2, "SELECT count() FROM devices_state WHERE app_id = 'app-a' AND user_id = 'carol'")

	if code, resp := s.Do("PUT", "/v1/devices/"+chrome.Device.Token+"/approve", a, ""); code != 200 {
		t.Fatalf("approve: %d %s", code, resp)
	}
	if d := get(chrome.Device.Token); d.ApprovedAt == nil {
		t.Errorf("read right after approve does not show it: %+v", d)
	}
	if code, resp := s.Do("PUT", "/v1/devices/"+ff.Device.Token+"/report", a, ""); code != 200 {
		t.Fatalf("report: %d %s", code, resp)
	}
	if d := get(ff.Device.Token); d.EscalatedAt == nil || d.Risk != 1 {
		t.Errorf("read right after report does not show it: %+v", d)
	}
	if d := login(chromeUA); d.Risk != 0 {
		t.Errorf("approved device before archiving: risk %v, want 0", d.Risk)
	}

	code, resp := s.Do("PUT", "/v1/users/carol/archive_devices", a, "")
	var archived struct {
		ID              string `json:"id"`
		DevicesArchived int    `json:"devices_archived"`
		ArchivedAt      string `json:"archived_at"`
	}
	if err := json.Unmarshal([]byte(resp), &archived); code != 200 || err != nil || archived.ID != "carol" || archived.DevicesArchived != 2 || archived.ArchivedAt == "" {
		t.Fatalf("archive_devices: %d %s", code, resp)
	}
	code, resp = s.Do("GET", "/v1/users/carol/devices", a, "")
	var list struct {
		TotalCount int          `json:"total_count"`
		Data       []deviceBody `json:"data"`
	}
	if err := json.Unmarshal([]byte(resp), &list); code != 200 || err != nil || list.TotalCount != 2 {
		t.Fatalf("devices after archive: %d %s", code, resp)
	}
	for _, d := range list.Data {
		if d.MitigatedAt == nil || *d.MitigatedAt != archived.ArchivedAt {
			t.Errorf("device %s after archive: mitigated_at %v, want %s", d.Token, d.MitigatedAt, archived.ArchivedAt)
		}
	}
	// The approval is withdrawn: the device is no longer pegged at 0.
	if d := login(chromeUA); d.Risk == 0 {
		t.Errorf("archived device still trusted: %+v", d)
	}
	// The report stays.
	if d := login(firefox); d.Policy.Action != "deny" || d.Risk != 1 {
		t.Errorf("reported device after archive: %+v", d)
	}

	time.Sleep(5 * time.Millisecond) // recover's time is after archive's
	if code, resp := s.Do("PUT", "/v1/users/carol/recover", a, ""); code != 204 || resp != "" {
		t.Fatalf("recover: %d %q", code, resp)
	}
	rep, appr := get(ff.Device.Token), get(chrome.Device.Token)
	if rep.MitigatedAt == nil || *rep.MitigatedAt <= archived.ArchivedAt {
		t.Errorf("reported device after recover: mitigated_at %v, want after %s", rep.MitigatedAt, archived.ArchivedAt)
	}
	if appr.MitigatedAt == nil || *appr.MitigatedAt != archived.ArchivedAt {
		t.Errorf("unreported device after recover: mitigated_at %v, want %s", appr.MitigatedAt, archived.ArchivedAt)
	}

	for _, c := range []struct{ secret, path string }{
		{a, "/v1/users/nobody/archive_devices"},
		{a, "/v1/users/nobody/recover"},
		{stacktest.Secret("app-b"), "/v1/users/carol/archive_devices"},
		{stacktest.Secret("app-b"), "/v1/users/carol/recover"},
	} {
		if code, resp := s.Do("PUT", c.path, c.secret, ""); code != 404 {
			t.Errorf("PUT %s: %d %s, want 404", c.path, code, resp)
		}
	}
	if code, _ := s.Do("PUT", "/v1/users/carol/recover", "wrong-secret", ""); code != 401 {
		t.Errorf("recover without the secret: %d, want 401", code)
	}
}
