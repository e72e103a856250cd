package ingest

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/moat-dev/moat/schemas"
)

// decTime parses an RFC 3339 time for expectations.
func decTime(s string) *time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	t = t.UTC()
	return &t
}

func decRaw(s string) json.RawMessage { return json.RawMessage(s) }

// assertEvent compares two events through their JSON form, which is what
// reaches the log.
func assertEvent(t *testing.T, got, want schemas.Event) {
	t.Helper()
	g, err := json.Marshal(got)
	if err != nil {
		t.Fatalf("marshal got: %v", err)
	}
	w, err := json.Marshal(want)
	if err != nil {
		t.Fatalf("marshal want: %v", err)
	}
	if !bytes.Equal(g, w) {
		t.Errorf("event mismatch\n got: %s\nwant: %s", g, w)
	}
}

const (
	sdkToken = "eyJhbGciOiJIUzI1NiJ9.eyJ0b2tlbiI6IjEyMzQ1Njc4OTAifQ.k8aF-3_xQe9pRz"
	sdkUA    = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"
)

// sdkCases are bodies exactly as the official SDKs (and the Go clients and
// the Postman collection) send them; see castle-api.md §0, §2, §5.
var sdkCases = []struct {
	name   string
	kind   schemas.Kind
	body   string
	header map[string]string
	want   schemas.Event
}{
	{
		name: "ruby 8.1 risk",
		kind: schemas.KindRisk,
		body: `{"type":"$login","status":"$succeeded","request_token":"` + sdkToken + `",
			"user":{"id":"12345","email":"johan@castle.io","name":"Johan","registered_at":"2024-01-01T00:00:00.000Z","traits":{"plan":"pro"}},
			"properties":{"remember_me":true},
			"context":{"active":true,"client_id":"","ip":"37.46.187.90",
				"headers":{"Accept":"text/html","Accept-Language":"en-US","Cookie":true,"Authorization":true,"User-Agent":"` + sdkUA + `","Remote-Addr":"37.46.187.90","X-Forwarded-For":"37.46.187.90"},
				"library":{"name":"castle-rb","version":"8.1.0"},"user_agent":"` + sdkUA + `"},
			"timestamp":"2026-11-22T02:23:15.915Z","sent_at":"2026-11-22T02:23:15.917Z"}`,
		want: schemas.Event{
			Kind: schemas.KindRisk, Type: "$login", Status: "$succeeded",
			User: schemas.User{ID: "12345", Email: "johan@castle.io", Name: "Johan", RegisteredAt: decTime("2024-01-01T00:00:00Z"), Traits: decRaw(`{"plan":"pro"}`)},
			Context: schemas.Context{
				IP: "37.46.187.90",
				Headers: map[string]string{
					"accept": "text/html", "accept-language": "en-US", "cookie": "true", "authorization": "true",
					"user-agent": sdkUA, "remote-addr": "37.46.187.90", "x-forwarded-for": "37.46.187.90",
				},
				RequestToken: sdkToken,
				Library:      &schemas.Library{Name: "castle-rb", Version: "8.1.0"},
			},
			Properties: decRaw(`{"remember_me":true}`),
			Options:    &schemas.Options{},
			CreatedAt:  decTime("2026-11-22T02:23:15.915Z"),
			SentAt:     decTime("2026-11-22T02:23:15.917Z"),
		},
	},
	{
		name: "node 3.1 filter",
		kind: schemas.KindFilter,
		body: `{"type":"$registration","status":"$attempted","request_token":"` + sdkToken + `",
			"params":{"email":"new@example.com","username":"newbie"},
			"context":{"ip":"2001:DB8::1","headers":{"User-Agent":"` + sdkUA + `","Cookie":true,"Accept":"*/*","Content-Length":"42"},
				"library":{"name":"castle-node","version":"3.1.0"}},
			"properties":{},"sent_at":"2026-11-22T02:23:15.917Z"}`,
		want: schemas.Event{
			Kind: schemas.KindFilter, Type: "$registration", Status: "$attempted",
			User: schemas.User{Email: "new@example.com"},
			Context: schemas.Context{
				IP:           "2001:db8::1",
				Headers:      map[string]string{"user-agent": sdkUA, "cookie": "true", "accept": "*/*", "content-length": "42"},
				RequestToken: sdkToken,
				Library:      &schemas.Library{Name: "castle-node", Version: "3.1.0"},
			},
			Properties: decRaw(`{}`),
			Params:     decRaw(`{"email":"new@example.com","username":"newbie"}`),
			Options:    &schemas.Options{},
			SentAt:     decTime("2026-11-22T02:23:15.917Z"),
		},
	},
	{
		name: "node 3.1 log with numeric user id",
		kind: schemas.KindLog,
		body: `{"type":"$login","status":"$failed","user":{"id":12345678901234567890123,"email":"x@example.com"},
			"context":{"ip":"203.0.113.5","headers":{"User-Agent":"` + sdkUA + `"},"library":{"name":"castle-node","version":"3.1.0"}},
			"sent_at":"2026-11-22T02:23:15.917Z"}`,
		want: schemas.Event{
			Kind: schemas.KindLog, Type: "$login", Status: "$failed",
			User: schemas.User{ID: "12345678901234567890123", Email: "x@example.com"},
			Context: schemas.Context{
				IP:      "203.0.113.5",
				Headers: map[string]string{"user-agent": sdkUA},
				Library: &schemas.Library{Name: "castle-node", Version: "3.1.0"},
			},
			SentAt: decTime("2026-11-22T02:23:15.917Z"),
		},
	},
	{
		name: "python 7.2 risk with naive microsecond timestamps",
		kind: schemas.KindRisk,
		body: `{"type": "$login", "status": "$succeeded", "request_token": "` + sdkToken + `",
			"user": {"id": "u-42", "email": "py@example.com", "registered_at": "2025-06-01T10:00:00.123456"},
			"context": {"ip": "192.0.2.10", "headers": {"Accept": "text/html", "Authorization": true, "Cookie": true,
				"Remote-Addr": "192.0.2.10", "User-Agent": "` + sdkUA + `", "Content-Length": "0"},
				"library": {"name": "castle-python", "version": "7.2.0"}},
			"created_at": "2026-11-22T02:23:15.915860", "sent_at": "2026-11-22T02:23:15.917543"}`,
		want: schemas.Event{
			Kind: schemas.KindRisk, Type: "$login", Status: "$succeeded",
			User: schemas.User{ID: "u-42", Email: "py@example.com", RegisteredAt: decTime("2025-06-01T10:00:00.123Z")},
			Context: schemas.Context{
				IP: "192.0.2.10",
				Headers: map[string]string{
					"accept": "text/html", "authorization": "true", "cookie": "true",
					"remote-addr": "192.0.2.10", "user-agent": sdkUA, "content-length": "0",
				},
				RequestToken: sdkToken,
				Library:      &schemas.Library{Name: "castle-python", Version: "7.2.0"},
			},
			Options:   &schemas.Options{},
			CreatedAt: decTime("2026-11-22T02:23:15.915Z"),
			SentAt:    decTime("2026-11-22T02:23:15.917Z"),
		},
	},
	{
		name: "java 2.6 risk with header pairs and client_id false",
		kind: schemas.KindRisk,
		body: `{"type":"$login","status":"$succeeded","request_token":"` + sdkToken + `",
			"user":{"id":"123","email":"java@example.com"},
			"context":{"ip":"8.8.8.8","active":true,"client_id":false,
				"headers":[["User-Agent","` + sdkUA + `"],["Accept","application/json"],["Cookie","true"],["REMOTE_ADDR","8.8.8.8"]],
				"library":{"name":"castle-java","version":"2.6.1"}},
			"created_at":"2026-11-22T03:23:15.915+01:00","sent_at":"2026-11-22T02:23:15.917Z",
			"skip_request_token_validation":false,"skip_context_validation":false}`,
		want: schemas.Event{
			Kind: schemas.KindRisk, Type: "$login", Status: "$succeeded",
			User: schemas.User{ID: "123", Email: "java@example.com"},
			Context: schemas.Context{
				IP:           "8.8.8.8",
				Headers:      map[string]string{"user-agent": sdkUA, "accept": "application/json", "cookie": "true", "remote-addr": "8.8.8.8"},
				RequestToken: sdkToken,
				Library:      &schemas.Library{Name: "castle-java", Version: "2.6.1"},
			},
			Options:   &schemas.Options{},
			CreatedAt: decTime("2026-11-22T02:23:15.915Z"),
			SentAt:    decTime("2026-11-22T02:23:15.917Z"),
		},
	},
	{
		name: ".NET 2.3 authenticate",
		kind: schemas.KindAuthenticate,
		body: `{"event":"$login.succeeded","user_id":"123","user_traits":{},"user":{},"properties":{},
			"context":{"client_id":false,"ip":"8.8.4.4","headers":{"User-Agent":"` + sdkUA + `","Cookie":"true"},
				"library":{"name":"castle-dotnet","version":"2.3.0"}},
			"skip_request_token_validation":false,"skip_context_validation":false,
			"device_token":"eyJhbGciOiJIUzI1NiJ9.device","timestamp":"2026-11-22T02:23:15.9158602Z","sent_at":"2026-11-22T02:23:15.9178602Z"}`,
		want: schemas.Event{
			Kind: schemas.KindAuthenticate, Type: "$login", Status: "$succeeded", LegacyEvent: "$login.succeeded",
			User: schemas.User{ID: "123", Traits: decRaw(`{}`)},
			Context: schemas.Context{
				IP:      "8.8.4.4",
				Headers: map[string]string{"user-agent": sdkUA, "cookie": "true"},
				Library: &schemas.Library{Name: "castle-dotnet", Version: "2.3.0"},
			},
			Properties: decRaw(`{}`),
			Extra:      map[string]json.RawMessage{"device_token": decRaw(`"eyJhbGciOiJIUzI1NiJ9.device"`)},
			CreatedAt:  decTime("2026-11-22T02:23:15.915Z"),
			SentAt:     decTime("2026-11-22T02:23:15.917Z"),
		},
	},
	{
		name: "php 3.1 track with client_id placeholder",
		kind: schemas.KindTrack,
		body: `{"event":"$login.succeeded","user_id":"42",
			"user_traits":{"email":"php@example.com","name":"Php User","registered_at":"2020-05-05T10:00:00+00:00","plan":"free"},
			"context":{"client_id":"?","ip":"203.0.113.9","user_agent":"` + sdkUA + `",
				"headers":{"Accept":"text/html","X-Forwarded-For":"203.0.113.9"},"library":{"name":"castle-php","version":"3.1.0"}},
			"properties":{}}`,
		want: schemas.Event{
			Kind: schemas.KindTrack, Type: "$login", Status: "$succeeded", LegacyEvent: "$login.succeeded",
			User: schemas.User{
				ID: "42", Email: "php@example.com", Name: "Php User", RegisteredAt: decTime("2020-05-05T10:00:00Z"),
				Traits: decRaw(`{"email":"php@example.com","name":"Php User","registered_at":"2020-05-05T10:00:00+00:00","plan":"free"}`),
			},
			Context: schemas.Context{
				IP:      "203.0.113.9",
				Headers: map[string]string{"accept": "text/html", "x-forwarded-for": "203.0.113.9", "user-agent": sdkUA},
				Library: &schemas.Library{Name: "castle-php", Version: "3.1.0"},
			},
			Properties: decRaw(`{}`),
		},
	},
	{
		name: "castle-go 0.1.0 legacy track",
		kind: schemas.KindTrack,
		body: `{"event":"$login.failed","user_id":"u1","context":{"client_id":"6f0f8c3c-1b1c-4f2e-8a3e-0b8a1c2d3e4f","ip":"198.51.100.1",
			"headers":{"Accept":"*/*","User-Agent":"` + sdkUA + `","X-Castle-Client-Id":"6f0f8c3c-1b1c-4f2e-8a3e-0b8a1c2d3e4f"}},"properties":{},"user_traits":{}}`,
		want: schemas.Event{
			Kind: schemas.KindTrack, Type: "$login", Status: "$failed", LegacyEvent: "$login.failed",
			User: schemas.User{ID: "u1", Traits: decRaw(`{}`)},
			Context: schemas.Context{
				IP:       "198.51.100.1",
				Headers:  map[string]string{"accept": "*/*", "user-agent": sdkUA, "x-castle-client-id": "6f0f8c3c-1b1c-4f2e-8a3e-0b8a1c2d3e4f"},
				ClientID: "6f0f8c3c-1b1c-4f2e-8a3e-0b8a1c2d3e4f",
			},
			Properties: decRaw(`{}`),
		},
	},
	{
		name: "utilitywarehouse/castle-go 0.4 risk with token in context",
		kind: schemas.KindRisk,
		body: `{"type":"$login","status":"$succeeded","request_token":"` + sdkToken + `",
			"user":{"id":"u1","email":"u1@example.com","name":"U One","traits":{"tier":"gold"}},
			"context":{"ip":"198.51.100.7","headers":{"User-Agent":"Go-http-client/1.1","Accept":"*/*","X-Forwarded-For":"198.51.100.7"},"request_token":"` + sdkToken + `"},
			"properties":{"k":"v"},"created_at":"2026-11-22T02:23:15.123456789Z"}`,
		want: schemas.Event{
			Kind: schemas.KindRisk, Type: "$login", Status: "$succeeded",
			User: schemas.User{ID: "u1", Email: "u1@example.com", Name: "U One", Traits: decRaw(`{"tier":"gold"}`)},
			Context: schemas.Context{
				IP:           "198.51.100.7",
				Headers:      map[string]string{"user-agent": "Go-http-client/1.1", "accept": "*/*", "x-forwarded-for": "198.51.100.7"},
				RequestToken: sdkToken,
			},
			Properties: decRaw(`{"k":"v"}`),
			Options:    &schemas.Options{},
			CreatedAt:  decTime("2026-11-22T02:23:15.123Z"),
		},
	},
	{
		name: "utilitywarehouse/castle-go filter",
		kind: schemas.KindFilter,
		body: `{"type":"$login","status":"$attempted","request_token":"` + sdkToken + `","params":{"email":"a@example.com","username":"u7"},
			"context":{"ip":"198.51.100.7","headers":{"User-Agent":"x"},"request_token":"` + sdkToken + `"}}`,
		want: schemas.Event{
			Kind: schemas.KindFilter, Type: "$login", Status: "$attempted",
			User: schemas.User{Email: "a@example.com"},
			Context: schemas.Context{
				IP: "198.51.100.7", Headers: map[string]string{"user-agent": "x"}, RequestToken: sdkToken,
			},
			Params:  decRaw(`{"email":"a@example.com","username":"u7"}`),
			Options: &schemas.Options{},
		},
	},
	{
		name: "postman sample authenticate (castle-api.md 2.4)",
		kind: schemas.KindAuthenticate,
		body: `{"sent_at":"2018-07-10T17:37:39.123Z","event":"$login.succeeded","user_id":"e325bcdd10ac",
			"user_traits":{"email":"johan@castle.io","registered_at":"2018-07-10T17:37:39.123Z"},
			"properties":{"event":"property"},
			"context":{"client_id":"faf117b2-7e7a-4fcd-9b57-5b2ccc98d9b4","ip":"37.46.187.90",
				"headers":{"User-Agent":"` + sdkUA + `","Accept":"text/html","Content-Length":100},
				"library":{"name":"castle-postman","version":"0.1.0"}}}`,
		want: schemas.Event{
			Kind: schemas.KindAuthenticate, Type: "$login", Status: "$succeeded", LegacyEvent: "$login.succeeded",
			User: schemas.User{
				ID: "e325bcdd10ac", Email: "johan@castle.io", RegisteredAt: decTime("2018-07-10T17:37:39.123Z"),
				Traits: decRaw(`{"email":"johan@castle.io","registered_at":"2018-07-10T17:37:39.123Z"}`),
			},
			Context: schemas.Context{
				IP:       "37.46.187.90",
				Headers:  map[string]string{"user-agent": sdkUA, "accept": "text/html", "content-length": "100"},
				ClientID: "faf117b2-7e7a-4fcd-9b57-5b2ccc98d9b4",
				Library:  &schemas.Library{Name: "castle-postman", Version: "0.1.0"},
			},
			Properties: decRaw(`{"event":"property"}`),
			SentAt:     decTime("2018-07-10T17:37:39.123Z"),
		},
	},
	{
		name: "ruby 6 identify",
		kind: schemas.KindIdentify,
		body: `{"user_id":"u9","user_traits":{"email":"i@example.com","name":"Ida"},"context":{"active":false,"ip":"192.0.2.1",
			"library":{"name":"castle-rb","version":"6.0.0"}},"timestamp":"2026-11-22T02:23:15.915Z","sent_at":"2026-11-22T02:23:15.917Z"}`,
		want: schemas.Event{
			Kind: schemas.KindIdentify,
			User: schemas.User{ID: "u9", Email: "i@example.com", Name: "Ida", Traits: decRaw(`{"email":"i@example.com","name":"Ida"}`)},
			Context: schemas.Context{
				IP:      "192.0.2.1",
				Library: &schemas.Library{Name: "castle-rb", Version: "6.0.0"},
			},
			CreatedAt: decTime("2026-11-22T02:23:15.915Z"),
			SentAt:    decTime("2026-11-22T02:23:15.917Z"),
		},
	},
	{
		name: "risk with a sandbox test token and skip flags",
		kind: schemas.KindRisk,
		body: `{"type":"$custom","name":"Added card","request_token":"test|device:chrome_on_mac|policy.action:deny|risk:0.9",
			"user":{"id":"u1"},"skip_context_validation":true,"expand":["all"],
			"transaction":{"id":"t1","type":"$purchase"},"session":null,"product":{"id":"p1"}}`,
		want: schemas.Event{
			Kind: schemas.KindRisk, Type: "$custom", Name: "Added card",
			User:    schemas.User{ID: "u1"},
			Context: schemas.Context{RequestToken: "test|device:chrome_on_mac|policy.action:deny|risk:0.9"},
			Extra: map[string]json.RawMessage{
				"transaction": decRaw(`{"id":"t1","type":"$purchase"}`),
				"product":     decRaw(`{"id":"p1"}`),
			},
			Options: &schemas.Options{SkipContextValidation: true, Expand: []string{"all"}},
		},
	},
	{
		name: "very old SDK sending context as X-Castle-* headers",
		kind: schemas.KindTrack,
		body: `{"event":"$login.succeeded","user_id":"1"}`,
		header: map[string]string{
			"X-Castle-Client-Id":  "cid-1",
			"X-Castle-Ip":         "203.0.113.77",
			"X-Castle-User-Agent": "OldBrowser/1.0",
			"X-Castle-Headers":    `{"Accept":"text/html","User-Agent":"OldBrowser/1.0 (headers)"}`,
		},
		want: schemas.Event{
			Kind: schemas.KindTrack, Type: "$login", Status: "$succeeded", LegacyEvent: "$login.succeeded",
			User: schemas.User{ID: "1"},
			Context: schemas.Context{
				IP:       "203.0.113.77",
				Headers:  map[string]string{"accept": "text/html", "user-agent": "OldBrowser/1.0 (headers)"},
				ClientID: "cid-1",
			},
		},
	},
}

func TestDecodeSDKBodies(t *testing.T) {
	for _, tc := range sdkCases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Decode(tc.kind, []byte(tc.body), decodeTestHeader(tc.header))
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if got.V != 0 || got.ID != "" || got.AppID != "" || !got.ReceivedAt.IsZero() {
				t.Errorf("Decode set handler fields: v=%d id=%q app=%q received=%v", got.V, got.ID, got.AppID, got.ReceivedAt)
			}
			assertEvent(t, got, tc.want)
		})
	}
}

func TestDecodeMalformed(t *testing.T) {
	if len(malformedCases) < 35 {
		t.Fatalf("only %d malformed cases", len(malformedCases))
	}
	for _, tc := range malformedCases {
		t.Run(tc.Name, func(t *testing.T) {
			ev, err := Decode(tc.Kind, []byte(tc.Body), decodeTestHeader(tc.Header))
			var apiErr *APIError
			if !errors.As(err, &apiErr) {
				ej, _ := json.Marshal(ev)
				t.Fatalf("Decode error = %v, want *APIError; event %s", err, ej)
			}
			if apiErr.Status != tc.Status || apiErr.Type != tc.Type {
				t.Errorf("got %d %s (%q), want %d %s", apiErr.Status, apiErr.Type, apiErr.Message, tc.Status, tc.Type)
			}
			if !strings.Contains(apiErr.Message, tc.Field) {
				t.Errorf("message %q does not name %q", apiErr.Message, tc.Field)
			}
			if ev.Kind != "" || ev.Type != "" {
				t.Errorf("Decode returned a partial event with its error: %+v", ev)
			}
		})
	}
}

// TestDecodeRules covers the individual leniency and precedence rules.
func TestDecodeRules(t *testing.T) {
	tests := []struct {
		name   string
		kind   schemas.Kind
		give   string
		header map[string]string
		check  func(t *testing.T, ev schemas.Event)
	}{
		{
			name: "type wins over legacy event, which is kept",
			kind: schemas.KindLog,
			give: `{"type":"$registration","status":"$failed","event":"$login.succeeded"}`,
			check: func(t *testing.T, ev schemas.Event) {
				want3(t, ev.Type, ev.Status, ev.LegacyEvent, "$registration", "$failed", "$login.succeeded")
			},
		},
		{
			name: "non-$ legacy event is $custom with the name",
			kind: schemas.KindTrack,
			give: `{"event":"Added to cart","name":"ignored"}`,
			check: func(t *testing.T, ev schemas.Event) {
				want3(t, ev.Type, ev.Name, ev.LegacyEvent, "$custom", "Added to cart", "Added to cart")
			},
		},
		{
			name: "legacy $ event without a dot takes the status field",
			kind: schemas.KindRisk,
			give: `{"event":"$login","status":"$failed","request_token":"t","user":{"id":"1"},"context":{"ip":"::1"}}`,
			check: func(t *testing.T, ev schemas.Event) {
				want3(t, ev.Type, ev.Status, ev.LegacyEvent, "$login", "$failed", "$login")
			},
		},
		{
			name: "$custom without name, unknown type/status combination, null status",
			kind: schemas.KindLog,
			give: `{"type":"$custom","status":null}`,
			check: func(t *testing.T, ev schemas.Event) {
				want3(t, ev.Type, ev.Status, ev.Name, "$custom", "", "")
			},
		},
		{
			name: "any type and status string is accepted",
			kind: schemas.KindFilter,
			give: `{"type":"$password_reset_request","status":"$whatever","request_token":"t","context":{"ip":"1.1.1.1"}}`,
			check: func(t *testing.T, ev schemas.Event) {
				want3(t, ev.Type, ev.Status, "", "$password_reset_request", "$whatever", "")
			},
		},
		{
			name: "numeric ids are kept exactly as sent",
			kind: schemas.KindFilter,
			give: `{"type":"$login","request_token":"t","context":{"ip":"1.1.1.1"},"matching_user_id":-1.50e+3,"user":{"id":42}}`,
			check: func(t *testing.T, ev schemas.Event) {
				want3(t, ev.User.ID, ev.MatchingUserID, "", "42", "-1.50e+3", "")
			},
		},
		{
			name: "user.id wins over user_id, user.email over user_traits.email",
			kind: schemas.KindTrack,
			give: `{"event":"x","user":{"id":"a","email":"a@x.io"},"user_id":"b","user_traits":{"email":"b@x.io","phone":4670000000,"registered_at":"bad"}}`,
			check: func(t *testing.T, ev schemas.Event) {
				want3(t, ev.User.ID, ev.User.Email, ev.User.Phone, "a", "a@x.io", "4670000000")
				if ev.User.RegisteredAt != nil {
					t.Errorf("invalid user_traits.registered_at was lifted: %v", ev.User.RegisteredAt)
				}
				want3(t, string(ev.User.Traits), "", "", `{"email":"b@x.io","phone":4670000000,"registered_at":"bad"}`, "", "")
			},
		},
		{
			name: "empty user.id falls back to user_id (.NET sends user:{})",
			kind: schemas.KindIdentify,
			give: `{"user":{"id":""},"user_id":7}`,
			check: func(t *testing.T, ev schemas.Event) {
				want3(t, ev.User.ID, "", "", "7", "", "")
			},
		},
		{
			name: "header values: bool, number, null, nested are handled",
			kind: schemas.KindLog,
			give: `{"type":"$login","context":{"headers":{"X-A":true,"X-B":false,"X-C":1.5,"X-D":null,"X-E":{"a":1},"X-F":[1],"X_G":"g","":"empty"}}}`,
			check: func(t *testing.T, ev schemas.Event) {
				wantHeaders(t, ev.Context.Headers, map[string]string{"x-a": "true", "x-b": "false", "x-c": "1.5", "x-g": "g"})
			},
		},
		{
			name: "header pairs: malformed pairs are skipped",
			kind: schemas.KindLog,
			give: `{"type":"$login","context":{"headers":[["A","1"],["B"],"C",[1,"x"],["D",2],["E",null],["F","f","extra"]]}}`,
			check: func(t *testing.T, ev schemas.Event) {
				wantHeaders(t, ev.Context.Headers, map[string]string{"a": "1", "d": "2", "f": "f"})
			},
		},
		{
			name: "context.user_agent does not override a User-Agent header",
			kind: schemas.KindLog,
			give: `{"type":"$login","context":{"user_agent":"ctx","headers":{"user_agent":"hdr"}}}`,
			check: func(t *testing.T, ev schemas.Event) {
				wantHeaders(t, ev.Context.Headers, map[string]string{"user-agent": "hdr"})
			},
		},
		{
			name: "client_id placeholders are empty",
			kind: schemas.KindLog,
			give: `{"type":"$login","context":{"client_id":"_"}}`,
			check: func(t *testing.T, ev schemas.Event) {
				want3(t, ev.Context.ClientID, "", "", "", "", "")
			},
		},
		{
			name: "client_id falls back to the __cid cookie, and cookies are scrubbed",
			kind: schemas.KindLog,
			give: `{"type":"$login","context":{"client_id":false,"headers":{"Cookie":"a=1; __cid=abc-123; b=2","Authorization":"Bearer secret"}}}`,
			check: func(t *testing.T, ev schemas.Event) {
				want3(t, ev.Context.ClientID, ev.Context.Headers["cookie"], ev.Context.Headers["authorization"], "abc-123", "true", "true")
			},
		},
		{
			name: "ip with port, bracketed v6 with port, mapped v4",
			kind: schemas.KindLog,
			give: `{"type":"$login","context":{"ip":"[2001:db8::7]:443"}}`,
			check: func(t *testing.T, ev schemas.Event) {
				want3(t, ev.Context.IP, "", "", "2001:db8::7", "", "")
			},
		},
		{
			name: "ipv4 with port",
			kind: schemas.KindLog,
			give: `{"type":"$login","context":{"ip":" 10.0.0.1:8080 "}}`,
			check: func(t *testing.T, ev schemas.Event) {
				want3(t, ev.Context.IP, "", "", "10.0.0.1", "", "")
			},
		},
		{
			name: "ipv4-mapped ipv6 is unmapped, empty ip is absent",
			kind: schemas.KindLog,
			give: `{"type":"$login","context":{"ip":"::ffff:192.0.2.1"}}`,
			check: func(t *testing.T, ev schemas.Event) {
				want3(t, ev.Context.IP, "", "", "192.0.2.1", "", "")
			},
		},
		{
			name: "top-level request_token wins over context.request_token",
			kind: schemas.KindLog,
			give: `{"type":"$login","request_token":"top","context":{"request_token":"ctx"}}`,
			check: func(t *testing.T, ev schemas.Event) {
				want3(t, ev.Context.RequestToken, "", "", "top", "", "")
			},
		},
		{
			name: "context.request_token is used when the top-level one is missing",
			kind: schemas.KindRisk,
			give: `{"type":"$login","user":{"id":"1"},"context":{"ip":"1.1.1.1","request_token":" ctx-token\n"}}`,
			check: func(t *testing.T, ev schemas.Event) {
				want3(t, ev.Context.RequestToken, "", "", "ctx-token", "", "")
			},
		},
		{
			name: "skip_request_token_validation allows a missing or invalid token",
			kind: schemas.KindRisk,
			give: `{"type":"$login","user":{"id":"1"},"request_token":"bad\u0000","context":{"ip":"1.1.1.1"},"skip_request_token_validation":true}`,
			check: func(t *testing.T, ev schemas.Event) {
				want3(t, ev.Context.RequestToken, "", "", "", "", "")
				if !ev.Options.SkipRequestTokenValidation {
					t.Error("SkipRequestTokenValidation not set")
				}
			},
		},
		{
			name: "expand may be a single string",
			kind: schemas.KindFilter,
			give: `{"type":"$login","request_token":"t","context":{"ip":"1.1.1.1"},"expand":"all"}`,
			check: func(t *testing.T, ev schemas.Event) {
				if len(ev.Options.Expand) != 1 || ev.Options.Expand[0] != "all" {
					t.Errorf("Expand = %q", ev.Options.Expand)
				}
			},
		},
		{
			name: "created_at wins over timestamp; empty strings are absent",
			kind: schemas.KindTrack,
			give: `{"event":"x","created_at":"2026-01-02","timestamp":"garbage","sent_at":""}`,
			check: func(t *testing.T, ev schemas.Event) {
				if ev.CreatedAt == nil || !ev.CreatedAt.Equal(*decTime("2026-01-02T00:00:00Z")) || ev.SentAt != nil {
					t.Errorf("CreatedAt = %v, SentAt = %v", ev.CreatedAt, ev.SentAt)
				}
			},
		},
		{
			name: "empty created_at falls back to timestamp",
			kind: schemas.KindTrack,
			give: `{"event":"x","created_at":"","timestamp":"2026-01-02T03:04:05.678901234-02:00"}`,
			check: func(t *testing.T, ev schemas.Event) {
				if ev.CreatedAt == nil || !ev.CreatedAt.Equal(*decTime("2026-01-02T05:04:05.678Z")) {
					t.Errorf("CreatedAt = %v", ev.CreatedAt)
				}
			},
		},
		{
			name: "unknown fields, duplicate keys (last wins) and escaped keys",
			kind: schemas.KindLog,
			give: `{"foo":{"bar":[1,2,{"baz":null}]},"type":"$logout","typ\u0065":"$login","Type":"$ignored","\u0075ser":{"id":"u\u00e9"}}`,
			check: func(t *testing.T, ev schemas.Event) {
				want3(t, ev.Type, ev.User.ID, "", "$login", "ué", "")
			},
		},
		{
			name: "huge numbers and long strings are kept",
			kind: schemas.KindLog,
			give: `{"type":"$login","properties":{"n":1e999999,"s":"` + strings.Repeat("x", 5000) + `"},"name":"` + strings.Repeat("n", 3000) + `"}`,
			check: func(t *testing.T, ev schemas.Event) {
				if !bytes.Contains(ev.Properties, []byte(`1e999999`)) || len(ev.Name) != 3000 {
					t.Errorf("properties or name changed: %d bytes, name %d", len(ev.Properties), len(ev.Name))
				}
			},
		},
		{
			name: "invalid UTF-8 is replaced in strings and raw objects",
			kind: schemas.KindLog,
			give: "{\"type\":\"$login\xff\",\"properties\":{\"a\":\"b\xfe\"}}",
			check: func(t *testing.T, ev schemas.Event) {
				want3(t, ev.Type, string(ev.Properties), "", "$login\uFFFD", "{\"a\":\"b\uFFFD\"}", "")
			},
		},
		{
			name: "null extras are dropped, review_id kept",
			kind: schemas.KindTrack,
			give: `{"event":"$review.resolved","review_id":"r1","device_token":null,"address":{"city":"Malmö"}}`,
			check: func(t *testing.T, ev schemas.Event) {
				if len(ev.Extra) != 2 || string(ev.Extra["review_id"]) != `"r1"` || ev.Extra["address"] == nil {
					t.Errorf("Extra = %v", ev.Extra)
				}
			},
		},
		{
			name: "params.email wins over user.email on filter",
			kind: schemas.KindFilter,
			give: `{"type":"$login","request_token":"t","context":{"ip":"1.1.1.1"},"user":{"email":"old@x.io"},"params":{"email":"new@x.io","phone":"+1"}}`,
			check: func(t *testing.T, ev schemas.Event) {
				want3(t, ev.User.Email, string(ev.Params), "", "new@x.io", `{"email":"new@x.io","phone":"+1"}`, "")
			},
		},
		{
			name: "params and options are ignored outside their kinds",
			kind: schemas.KindLog,
			give: `{"type":"$login","params":"x","skip_context_validation":"x","expand":5}`,
			check: func(t *testing.T, ev schemas.Event) {
				if ev.Params != nil || ev.Options != nil {
					t.Errorf("Params = %s, Options = %+v", ev.Params, ev.Options)
				}
			},
		},
		{
			name: "body X-Castle-Headers merge: body headers win",
			kind: schemas.KindTrack,
			give: `{"event":"x","context":{"ip":"1.1.1.1","client_id":"body","headers":{"Accept":"body"}}}`,
			header: map[string]string{
				"X-Castle-Ip": "2.2.2.2", "X-Castle-Client-Id": "hdr",
				"X-Castle-Headers": `{"Accept":"hdr","Dnt":"1"}`,
			},
			check: func(t *testing.T, ev schemas.Event) {
				want3(t, ev.Context.IP, ev.Context.ClientID, "", "1.1.1.1", "body", "")
				wantHeaders(t, ev.Context.Headers, map[string]string{"accept": "body", "dnt": "1"})
			},
		},
		{
			name: "malformed X-Castle-Headers is ignored",
			kind: schemas.KindTrack,
			give: `{"event":"x"}`,
			header: map[string]string{
				"X-Castle-Headers": `{"Accept":`,
			},
			check: func(t *testing.T, ev schemas.Event) {
				if ev.Context.Headers != nil {
					t.Errorf("Headers = %v", ev.Context.Headers)
				}
			},
		},
		{
			name: "nesting up to the limit is accepted",
			kind: schemas.KindLog,
			give: `{"type":"$login","properties":` + strings.Repeat(`{"a":`, MaxJSONDepth-1) + `1` + strings.Repeat(`}`, MaxJSONDepth-1) + `}`,
			check: func(t *testing.T, ev schemas.Event) {
				if len(ev.Properties) == 0 {
					t.Error("properties dropped")
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ev, err := Decode(tc.kind, []byte(tc.give), decodeTestHeader(tc.header))
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if _, err := json.Marshal(ev); err != nil {
				t.Fatalf("re-marshal: %v", err)
			}
			tc.check(t, ev)
		})
	}
}

func want3(t *testing.T, g1, g2, g3, w1, w2, w3 string) {
	t.Helper()
	if g1 != w1 || g2 != w2 || g3 != w3 {
		t.Errorf("got (%q, %q, %q), want (%q, %q, %q)", g1, g2, g3, w1, w2, w3)
	}
}

func wantHeaders(t *testing.T, got, want map[string]string) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("headers = %v, want %v", got, want)
		return
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("headers = %v, want %v", got, want)
			return
		}
	}
}

func TestParseTime(t *testing.T) {
	tests := []struct {
		give string
		want string // RFC 3339 in UTC; "" = rejected
	}{
		{give: "2024-01-01T00:00:00.000Z", want: "2024-01-01T00:00:00Z"},
		{give: "2026-11-22T02:23:15.915860", want: "2026-11-22T02:23:15.915Z"},
		{give: "2026-11-22T02:23:15", want: "2026-11-22T02:23:15Z"},
		{give: "2026-11-22T02:23:15.9", want: "2026-11-22T02:23:15.9Z"},
		{give: "2026-11-22T02:23:15.999999999+05:30", want: "2026-11-21T20:53:15.999Z"},
		{give: "2026-11-22T02:23:15.9158602Z", want: "2026-11-22T02:23:15.915Z"},
		{give: "2026-11-22T02:23:15+0100", want: "2026-11-22T01:23:15Z"},
		{give: "2026-11-22T02:23Z", want: "2026-11-22T02:23:00Z"},
		{give: "2026-11-22 02:23:15.5", want: "2026-11-22T02:23:15.5Z"},
		{give: "2026-01-02", want: "2026-01-02T00:00:00Z"},
		{give: "9999-12-31T23:59:59-01:00"},
		{give: "2026-11-22T25:00:00Z"},
		{give: "2026-11-22T02:23:15.Z"},
		{give: "1700000000"},
		{give: "Sat, 22 Nov 2026 02:23:15 GMT"},
		{give: "2026-11-22T"},
	}
	for _, tc := range tests {
		t.Run(tc.give, func(t *testing.T) {
			got, ok := parseTime(tc.give)
			if tc.want == "" {
				if ok {
					t.Errorf("parseTime accepted it: %v", got)
				}
				return
			}
			if !ok || !got.Equal(*decTime(tc.want)) || got.Location() != time.UTC {
				t.Errorf("parseTime = %v, %v; want %s", got, ok, tc.want)
			}
		})
	}
}

func TestDecodeUnknownKind(t *testing.T) {
	_, err := Decode("page", []byte(`{}`), nil)
	var apiErr *APIError
	if err == nil || errors.As(err, &apiErr) {
		t.Fatalf("err = %v, want a non-API error", err)
	}
}

// TestDecodeDoesNotKeepBody overwrites the body after Decode: the handler
// reads bodies into pooled buffers and reuses them once Decode returns.
func TestDecodeDoesNotKeepBody(t *testing.T) {
	for _, tc := range []struct {
		kind schemas.Kind
		body string
	}{
		{schemas.KindLog, `{"type":"$login","properties":{"a":"b"},"user":{"traits":{"t":1}},"session":{"id":"s"}}`},
		{schemas.KindRisk, string(benchLoginBody)},
		{schemas.KindFilter, `{"type":"$registration","name":"n\u00e9","params":{"email":"a@b.c"},"matching_user_id":12,` +
			`"user_traits":{"name":"N","phone":46701,"registered_at":"2020-01-01"},"expand":["all"],"skip_request_token_validation":true,` +
			`"context":{"ip":"::ffff:1.2.3.4","client_id":"cid","library":{"name":"l","version":"1"},"headers":[["X_Custom","v"],["cookie","__cid=c"]]}}`},
	} {
		body := []byte(tc.body)
		ev, err := Decode(tc.kind, body, nil)
		if err != nil {
			t.Fatal(err)
		}
		before, _ := json.Marshal(ev)
		for i := range body {
			body[i] = ' '
		}
		after, _ := json.Marshal(ev)
		if !bytes.Equal(before, after) {
			t.Errorf("event changed with the body:\n%s\n%s", before, after)
		}
	}
}

func TestAPIError(t *testing.T) {
	err := error(InvalidParameters("user_id must be a string"))
	if !errors.Is(err, ErrInvalidParameters) || errors.Is(err, ErrInvalidRequestToken) || errors.Is(err, ErrBadRequest) {
		t.Error("errors.Is does not match by status and type")
	}
	if !errors.Is(InvalidRequestToken("x"), ErrRequestTokenMissing) {
		t.Error("invalid_request_token errors do not match each other")
	}
	b, _ := json.Marshal(err)
	if string(b) != `{"type":"invalid_parameters","message":"user_id must be a string"}` {
		t.Errorf("JSON = %s", b)
	}
	if got := err.Error(); got != "422 invalid_parameters: user_id must be a string" {
		t.Errorf("Error() = %q", got)
	}
	for _, e := range []*APIError{ErrRequestEntityTooLarge, ErrUnauthorized, ErrServiceUnavailable, ErrRouteNotFound, ErrMethodNotAllowed} {
		if http.StatusText(e.Status) == "" || e.Type == "" || e.Message == "" {
			t.Errorf("incomplete sentinel %+v", e)
		}
	}
}

// benchLoginBody is a typical ~1.5 KB $login risk call (ruby/node shape).
var benchLoginBody = []byte(`{"type":"$login","status":"$succeeded","request_token":"` + strings.Repeat("eyJhbGciOiJIUzI1NiJ9", 8) + `",` +
	`"user":{"id":"8d3c7f0e-3b1a-4c4e-9f57-2a0c6f8e1d42","email":"johan.andersson@example.com","phone":"+46701234567","name":"Johan Andersson",` +
	`"registered_at":"2024-01-01T00:00:00.000Z","traits":{"plan":"pro","seats":5,"verified":true}},` +
	`"properties":{"remember_me":true,"login_method":"password","attempt":1},` +
	`"context":{"active":true,"client_id":"","ip":"37.46.187.90","headers":{` +
	`"Accept":"text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8",` +
	`"Accept-Encoding":"gzip, deflate, br","Accept-Language":"en-US,en;q=0.9,sv;q=0.8","Cache-Control":"max-age=0",` +
	`"Connection":"keep-alive","Content-Length":"512","Content-Type":"application/x-www-form-urlencoded","Cookie":true,"Authorization":true,` +
	`"Host":"app.example.com","Origin":"https://app.example.com","Referer":"https://app.example.com/login",` +
	`"Sec-Fetch-Mode":"navigate","Sec-Fetch-Site":"same-origin",` +
	`"Upgrade-Insecure-Requests":"1","User-Agent":"` + sdkUA + `","Remote-Addr":"37.46.187.90","X-Forwarded-For":"37.46.187.90, 10.0.0.2"},` +
	`"library":{"name":"castle-rb","version":"8.1.0"}},` +
	`"session":{"id":"sess_01HZX3"},"authentication_method":{"type":"$password"},` +
	`"timestamp":"2026-11-22T02:23:15.915Z","sent_at":"2026-11-22T02:23:15.917Z"}`)

func BenchmarkDecode(b *testing.B) {
	b.SetBytes(int64(len(benchLoginBody)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(schemas.KindRisk, benchLoginBody, nil); err != nil {
			b.Fatal(err)
		}
	}
}
