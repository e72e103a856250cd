package ingest

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/moat-dev/moat/schemas"
)

// TestExpandIPPrivacy: the scorer's IP flags reach ip.privacy of an
// expanded /v1/risk answer after the trip through the replies topic
// (Decision.AppendJSON, then json decoding as Replies does); anonymous is
// proxy or tor.
func TestExpandIPPrivacy(t *testing.T) {
	type privacy struct{ Anonymous, Datacenter, Proxy, Tor bool }
	tests := []struct {
		name string
		ip   schemas.IPInfo
		want privacy
	}{
		{"residential", schemas.IPInfo{CountryCode: "NL", ASN: 64500}, privacy{}},
		{"vpn", schemas.IPInfo{ASN: 216025, ISP: "Mullvad VPN AB", Proxy: true}, privacy{Anonymous: true, Proxy: true}},
		{"tor", schemas.IPInfo{Tor: true}, privacy{Anonymous: true, Tor: true}},
		{"datacenter", schemas.IPInfo{ASN: 24940, Datacenter: true}, privacy{Datacenter: true}},
		{"tor from a datacenter", schemas.IPInfo{ASN: 24940, Datacenter: true, Tor: true}, privacy{Anonymous: true, Datacenter: true, Tor: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ip := tt.ip
			d := schemas.Decision{V: schemas.DecisionVersion, Risk: 0.5, IP: &ip, Event: schemas.Event{
				V: 1, ID: "e1", AppID: "app", Kind: schemas.KindRisk, Type: "$login", Status: "$succeeded",
				User: schemas.User{ID: "u1"}, Context: schemas.Context{IP: "198.51.100.1"},
				ReceivedAt: time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC),
			}}
			var wire schemas.Decision
			if err := json.Unmarshal(d.AppendJSON(nil), &wire); err != nil {
				t.Fatal(err)
			}
			b, err := json.Marshal(riskBody(&wire, true))
			if err != nil {
				t.Fatal(err)
			}
			var got struct {
				IP struct {
					Privacy map[string]bool `json:"privacy"`
				} `json:"ip"`
			}
			if err := json.Unmarshal(b, &got); err != nil {
				t.Fatal(err)
			}
			p := got.IP.Privacy
			if len(p) != 4 || (privacy{p["anonymous"], p["datacenter"], p["proxy"], p["tor"]}) != tt.want {
				t.Errorf("ip.privacy %v, want %+v\n%s", p, tt.want, b)
			}
			if b2, _ := json.Marshal(riskBody(&wire, false)); containsKey(b2, "ip") {
				t.Errorf("unexpanded answer has ip: %s", b2)
			}
		})
	}
}

func containsKey(b []byte, k string) bool {
	var m map[string]json.RawMessage
	_ = json.Unmarshal(b, &m)
	_, ok := m[k]
	return ok
}
