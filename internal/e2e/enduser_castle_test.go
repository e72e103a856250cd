package e2e_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/moat-dev/moat/internal/stacktest"
)

// TestEndUserCommandsInCastleDevicesAPI: what end users do to their
// devices shows in the app's view of them (Castle's devices API): verify
// approves, hijack reports (risk 1.0), forget removes the device from the
// list and its token is 404.
func TestEndUserCommandsInCastleDevicesAPI(t *testing.T) {
	s := stacktest.New(t, stacktest.Options{})
	a := stacktest.Secret("app-a")
	chrome := loginRisk(t, s, a, "dave", chromeUA, "").Device.Token
	firefox := loginRisk(t, s, a, "dave", euFirefoxUA, "").Device.Token
	s.WaitCount(20*time.Second, 2, "SELECT count() FROM devices_state WHERE app_id = 'app-a' AND user_id = 'dave'")
	tok, _ := issueBearer(t, s, a, "dave", chrome)
	ids := deviceUUIDs(t, bearerCall(t, s, "GET", "/api/devices", tok, "").body)
	chromeID, firefoxID := ids["Chrome"], ids["Firefox"]
	if chromeID == "" || firefoxID == "" {
		t.Fatalf("uuids %v", ids)
	}
	castle := func(token string) (int, deviceBody) {
		t.Helper()
		code, resp := s.Do("GET", "/v1/devices/"+token, a, "")
		var d deviceBody
		if code == 200 {
			if err := json.Unmarshal([]byte(resp), &d); err != nil {
				t.Fatal(err)
			}
		}
		return code, d
	}

	if r := bearerCall(t, s, "PATCH", "/api/devices/"+chromeID+"/verify", tok, ""); r.code != 200 {
		t.Fatalf("verify: %d %s", r.code, r.body)
	}
	if code, d := castle(chrome); code != 200 || d.ApprovedAt == nil || d.Risk != 0 {
		t.Errorf("verified device in the devices API: %d %+v", code, d)
	}
	if r := bearerCall(t, s, "PATCH", "/api/devices/"+firefoxID+"/hijack", tok, ""); r.code != 200 {
		t.Fatalf("hijack: %d %s", r.code, r.body)
	}
	if code, d := castle(firefox); code != 200 || d.EscalatedAt == nil || d.Risk != 1 {
		t.Errorf("hijacked device in the devices API: %d %+v", code, d)
	}
	if r := bearerCall(t, s, "PATCH", "/api/devices/"+chromeID+"/forget", tok, ""); r.code != 200 {
		t.Fatalf("forget: %d %s", r.code, r.body)
	}
	s.WaitCount(20*time.Second, 1, "SELECT count() FROM events FINAL WHERE app_id = 'app-a' AND user_id = 'dave' AND kind = 'device.forget'")
	if code, d := castle(chrome); code != 404 {
		t.Errorf("forgotten device in the devices API: %d %+v", code, d)
	}
	code, resp := s.Do("GET", "/v1/users/dave/devices", a, "")
	var list struct {
		TotalCount int          `json:"total_count"`
		Data       []deviceBody `json:"data"`
	}
	if err := json.Unmarshal([]byte(resp), &list); code != 200 || err != nil || list.TotalCount != 1 || list.Data[0].Token != firefox {
		t.Errorf("devices after forget: %d %s", code, resp)
	}
}
