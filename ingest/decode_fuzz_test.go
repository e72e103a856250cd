package ingest

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"testing"
	"unicode/utf8"

	"github.com/moat-dev/moat/schemas"
)

var fuzzKinds = [...]schemas.Kind{
	schemas.KindTrack, schemas.KindIdentify, schemas.KindLog,
	schemas.KindRisk, schemas.KindFilter, schemas.KindAuthenticate,
}

// FuzzDecode feeds arbitrary bodies (and an arbitrary legacy X-Castle-Headers
// value) to Decode. Invariant: Decode never panics; it returns either an
// Event of the requested kind that re-marshals to valid JSON, or an
// *APIError with status 400, 413 or 422 and a type and message.
func FuzzDecode(f *testing.F) {
	kindIndex := func(k schemas.Kind) uint8 {
		for i, fk := range fuzzKinds {
			if fk == k {
				return uint8(i)
			}
		}
		return 0
	}
	for _, tc := range sdkCases {
		f.Add(kindIndex(tc.kind), []byte(tc.body), tc.header["X-Castle-Headers"])
	}
	for _, tc := range malformedCases {
		f.Add(kindIndex(tc.Kind), []byte(tc.Body), tc.Header["X-Castle-Headers"])
	}
	f.Add(kindIndex(schemas.KindRisk), benchLoginBody, `{"Accept":"*/*"}`)
	// Scanner edge cases: escaped quotes, backslash runs, escaped keys.
	f.Add(kindIndex(schemas.KindLog), []byte(`{"type":"a\"b\\","properties":{"k\\":"\\\"}","x":[{"]":"["}]},"\u0074ype":"t"}`), "")
	f.Add(kindIndex(schemas.KindTrack), []byte(`{ "event" : "x" , "context" : { "headers" : [ [ "a" , "b" ] , [ ] ] } }`), `[["User-Agent","x"]]`)

	f.Fuzz(func(t *testing.T, k uint8, body []byte, xHeaders string) {
		kind := fuzzKinds[int(k)%len(fuzzKinds)]
		var hdr http.Header
		if xHeaders != "" {
			hdr = http.Header{"X-Castle-Headers": {xHeaders}, "X-Castle-Ip": {xHeaders}, "X-Castle-User-Agent": {xHeaders}}
		}
		ev, err := Decode(kind, body, hdr)
		if err != nil {
			var apiErr *APIError
			if !errors.As(err, &apiErr) {
				t.Fatalf("non-API error %T: %v", err, err)
			}
			switch apiErr.Status {
			case http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusUnprocessableEntity:
			default:
				t.Fatalf("status %d: %v", apiErr.Status, apiErr)
			}
			if apiErr.Type == "" || apiErr.Message == "" {
				t.Fatalf("incomplete error %+v", apiErr)
			}
			return
		}
		if ev.Kind != kind {
			t.Fatalf("Kind = %q, want %q", ev.Kind, kind)
		}
		if len(ev.User.ID) > MaxIDLen || len(ev.User.Email) > MaxEmailLen || len(ev.Context.RequestToken) > MaxRequestTokenLen {
			t.Fatalf("limit not enforced: id %d, email %d, token %d bytes", len(ev.User.ID), len(ev.User.Email), len(ev.Context.RequestToken))
		}
		out, err := json.Marshal(ev)
		if err != nil {
			t.Fatalf("re-marshal: %v", err)
		}
		if !json.Valid(out) || !utf8.Valid(out) {
			t.Fatalf("re-marshaled event is not valid UTF-8 JSON: %q", out)
		}
		var back schemas.Event
		if err := json.Unmarshal(out, &back); err != nil {
			t.Fatalf("event does not decode back: %v", err)
		}

		// Cross-check the raw scanner against encoding/json, which also
		// matches keys exactly in a map and keeps the last duplicate.
		var m map[string]json.RawMessage
		if err := json.Unmarshal(body, &m); err != nil {
			t.Fatalf("Decode accepted what encoding/json rejects: %v", err)
		}
		var typ string
		if json.Unmarshal(m["type"], &typ) == nil && typ != "" && ev.Type != typ {
			t.Fatalf("Type = %q, encoding/json reads %q", ev.Type, typ)
		}
		if p := m["properties"]; len(p) > 0 && string(p) != "null" && utf8.Valid(p) {
			var want, got bytes.Buffer
			_ = json.Compact(&want, p)
			_ = json.Compact(&got, ev.Properties)
			if !bytes.Equal(want.Bytes(), got.Bytes()) {
				t.Fatalf("Properties = %s, encoding/json reads %s", got.Bytes(), want.Bytes())
			}
		}
	})
}
