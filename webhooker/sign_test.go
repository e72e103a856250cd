package webhooker

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/moat-dev/moat/schemas"
)

// The X-Castle-Signature test vector of castle-ruby's spec
// (castle-api.md §8).
const (
	castleVectorSecret = "secret"
	castleVectorBody   = `{"api_version":"v1","app_id":"12345","type":"$incident.confirmed","created_at":"2020-12-18T12:55:21.779Z","data":{"id":"test","device_token":"token","user_id":"12345","trigger":"$login.succeeded","context":{},"location":{},"user_agent":{}},"user_traits":{},"properties":{},"policy":{}}`
	castleVectorSig    = "3ptx3rUOBnGEqPjMrbcJn2UUfzwTKP54dFyP5uyPY+Y="
)

func TestSignCastleVector(t *testing.T) {
	if got := Sign(castleVectorSecret, []byte(castleVectorBody)); got != castleVectorSig {
		t.Fatalf("Sign = %s, want %s", got, castleVectorSig)
	}
	if !Verify(castleVectorSecret, []byte(castleVectorBody), castleVectorSig) {
		t.Fatal("Verify rejects the Castle test vector")
	}
	for name, tc := range map[string]struct{ secret, body, sig string }{
		"wrong secret":  {"secret2", castleVectorBody, castleVectorSig},
		"changed body":  {castleVectorSecret, castleVectorBody + " ", castleVectorSig},
		"empty sig":     {castleVectorSecret, castleVectorBody, ""},
		"empty body":    {castleVectorSecret, "", Sign(castleVectorSecret, nil)},
		"truncated sig": {castleVectorSecret, castleVectorBody, castleVectorSig[:20]},
	} {
		if Verify(tc.secret, []byte(tc.body), tc.sig) {
			t.Errorf("%s: Verify accepted", name)
		}
	}
}

func TestSignTimestamped(t *testing.T) {
	body := []byte(`{"a":1}`)
	now := time.Unix(1_700_000_000, 0)
	h := SignTimestamped(now, body, "new-secret", "old-secret")
	if !strings.HasPrefix(h, "t=1700000000,v1=") || strings.Count(h, "v1=") != 2 {
		t.Fatalf("header %q", h)
	}
	tests := []struct {
		name    string
		header  string
		body    []byte
		now     time.Time
		secrets []string
		want    error
	}{
		{"new secret", h, body, now, []string{"new-secret"}, nil},
		{"old secret (rotation)", h, body, now, []string{"old-secret"}, nil},
		{"receiver with two secrets", h, body, now.Add(time.Minute), []string{"other", "old-secret"}, nil},
		{"wrong secret", h, body, now, []string{"nope"}, ErrSignatureMismatch},
		{"changed body", h, []byte(`{"a":2}`), now, []string{"new-secret"}, ErrSignatureMismatch},
		{"replayed later", h, body, now.Add(DefaultTolerance + time.Second), []string{"new-secret"}, ErrSignatureExpired},
		{"from the future", h, body, now.Add(-DefaultTolerance - time.Second), []string{"new-secret"}, ErrSignatureExpired},
		{"timestamp changed", strings.Replace(h, "t=1700000000", "t=1700000001", 1), body, now, []string{"new-secret"}, ErrSignatureMismatch},
		{"empty", "", body, now, []string{"new-secret"}, ErrNoSignature},
		{"no v1", "t=1700000000", body, now, []string{"new-secret"}, ErrSignatureMalformed},
		{"no t", "v1=" + strings.Repeat("00", 32), body, now, []string{"new-secret"}, ErrSignatureMalformed},
		{"bad hex", "t=1700000000,v1=zz", body, now, []string{"new-secret"}, ErrSignatureMalformed},
		{"unknown scheme ignored", h + ",v2=abc", body, now, []string{"new-secret"}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := VerifyTimestamped(tc.header, tc.body, tc.now, DefaultTolerance, tc.secrets...)
			if !errors.Is(err, tc.want) || (tc.want == nil && err != nil) {
				t.Fatalf("VerifyTimestamped = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestBodyAndDeliveryID(t *testing.T) {
	n := schemas.Notification{
		ID: "n1", AppID: "12345", Type: schemas.NotifyIncidentConfirmed,
		CreatedAt: time.Date(2020, 12, 18, 12, 55, 21, 779e6, time.UTC),
		Data:      []byte(`{"id":"test", "device_token":"token","user_id":"12345","trigger":"$login.succeeded","context":{},"location":{},"user_agent":{}}`),
	}
	b, err := Body(&n)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"api_version":"v1","app_id":"12345","type":"$incident.confirmed","created_at":"2020-12-18T12:55:21.779Z","data":{"id":"test","device_token":"token","user_id":"12345","trigger":"$login.succeeded","context":{},"location":{},"user_agent":{}}}`
	if string(b) != want {
		t.Fatalf("Body =\n%s\nwant\n%s", b, want)
	}
	n.Data = nil
	if b, _ := Body(&n); !strings.HasSuffix(string(b), `"data":{}}`) {
		t.Fatalf("Body without data = %s", b)
	}
	n.Data = []byte(`{"broken"`)
	if _, err := Body(&n); err == nil {
		t.Fatal("Body accepted invalid data")
	}
	id := DeliveryID("app", "ep", "n1")
	if id != DeliveryID("app", "ep", "n1") || id == DeliveryID("app", "ep2", "n1") || id == DeliveryID("app", "ep", "n2") || len(id) != 36 {
		t.Fatalf("DeliveryID not stable and distinct: %s", id)
	}
}
