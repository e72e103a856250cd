package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/moat-dev/moat/internal/stacktest"
	"github.com/moat-dev/moat/schemas"
	"github.com/twmb/franz-go/pkg/kgo"
)

type decisionBody struct {
	Risk   float64 `json:"risk"`
	Policy struct {
		Action string `json:"action"`
	} `json:"policy"`
	Device struct {
		Token string `json:"token"`
	} `json:"device"`
}

// TestReportAndApproveChangeLaterDecisions is the device feedback scenario:
// a user logs in from two devices; the second is reported, so its next
// login is denied and $incident.confirmed is on the incidents topic; the
// first is approved, so its next risk is 0; the timeline shows the
// feedback.
func TestReportAndApproveChangeLaterDecisions(t *testing.T) {
	s := stacktest.New(t, stacktest.Options{})
	a := stacktest.Secret("app-a")
	firefox := "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0"
	n := 0
	login := func(ua string) decisionBody {
		n++
		body := fmt.Sprintf(`{"type":"$login","status":"$succeeded","user":{"id":"bob","email":"bob@example.com"},"request_token":"t%d",
			"context":{"ip":"203.0.113.7","headers":{"User-Agent":%q,"Accept-Language":"en-US","Accept":"*/*"}}}`, n, ua)
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
	first := login(chromeUA)
	login(chromeUA)
	second := login(firefox)
	if first.Device.Token == second.Device.Token {
		t.Fatal("two browsers share a device token")
	}
	s.WaitCount(20*time.Second, 2, "SELECT count() FROM devices_state WHERE app_id = 'app-a' AND user_id = 'bob'")

	code, resp := s.Do("PUT", "/v1/devices/"+second.Device.Token+"/report", a, "")
	var dev struct {
		Token       string  `json:"token"`
		Risk        float64 `json:"risk"`
		EscalatedAt *string `json:"escalated_at"`
		ApprovedAt  *string `json:"approved_at"`
	}
	if err := json.Unmarshal([]byte(resp), &dev); code != 200 || err != nil || dev.Token != second.Device.Token || dev.Risk != 1 || dev.EscalatedAt == nil {
		t.Fatalf("report: %d %s", code, resp)
	}
	if d := login(firefox); d.Policy.Action != "deny" || d.Risk != 1 {
		t.Errorf("login from the reported device: %+v", d)
	}

	code, resp = s.Do("PUT", "/v1/devices/"+first.Device.Token+"/approve", a, "")
	if err := json.Unmarshal([]byte(resp), &dev); code != 200 || err != nil || dev.ApprovedAt == nil || dev.Risk != 0 {
		t.Fatalf("approve: %d %s", code, resp)
	}
	if d := login(chromeUA); d.Policy.Action != "allow" || d.Risk != 0 {
		t.Errorf("login from the approved device: %+v", d)
	}

	// Another app cannot act on bob's devices.
	if code, resp := s.Do("PUT", "/v1/devices/"+first.Device.Token+"/report", stacktest.Secret("app-b"), ""); code != 404 {
		t.Errorf("app b reported app a's device: %d %s", code, resp)
	}

	// $incident.confirmed for the reported device is on the incidents topic.
	cl, err := kgo.NewClient(kgo.SeedBrokers(s.Kafka.Brokers...), kgo.ConsumeTopics(schemas.TopicIncidents),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	found, updated := false, map[string]bool{}
	for deadline := time.Now().Add(10 * time.Second); !(found && len(updated) == 2) && time.Now().Before(deadline); {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
			var nt schemas.Notification
			if json.Unmarshal(r.Value, &nt) != nil || nt.UserID != "bob" {
				return
			}
			switch {
			case nt.Type == schemas.NotifyIncidentConfirmed && nt.DeviceToken == second.Device.Token:
				found = true
			case nt.Type == schemas.NotifyDeviceUpdated:
				updated[nt.DeviceToken] = true
			}
		})
		cancel()
	}
	if !found {
		t.Error("no $incident.confirmed for the reported device on the incidents topic")
	}
	if !updated[first.Device.Token] || !updated[second.Device.Token] {
		t.Errorf("$device.updated for %v, want both devices", updated)
	}

	// The timeline shows the feedback, and the device views show it.
	s.WaitCount(20*time.Second, 2, "SELECT count() FROM events FINAL WHERE app_id = 'app-a' AND user_id = 'bob' AND kind IN ('device.approve', 'device.report')")
	code, resp = s.Do("GET", "/v1/devices/"+second.Device.Token, a, "")
	if err := json.Unmarshal([]byte(resp), &dev); code != 200 || err != nil || dev.EscalatedAt == nil || dev.Risk != 1 {
		t.Errorf("reported device read back: %d %s", code, resp)
	}
}
