package ingest

import (
	"net/http"
	"strings"

	"github.com/moat-dev/moat/schemas"
)

// malformedCases are bodies (and legacy X-Castle-* request headers) that
// Decode must reject. They are about the body and headers only, never about
// authentication or size, so HTTP-level tests can reuse them and assert the
// status, the type, and that nothing reached the log.
//
// Field, when set, is a substring the error message must contain (the name
// of the offending field).
var malformedCases = []struct {
	Name   string
	Kind   schemas.Kind
	Body   string
	Header map[string]string
	Status int
	Type   string
	Field  string
}{
	// 400 bad_request: not a JSON object.
	{Name: "empty body", Kind: schemas.KindTrack, Body: ``, Status: 400, Type: TypeBadRequest},
	{Name: "whitespace body", Kind: schemas.KindLog, Body: " \n\t ", Status: 400, Type: TypeBadRequest},
	{Name: "null body", Kind: schemas.KindRisk, Body: `null`, Status: 400, Type: TypeBadRequest},
	{Name: "array body", Kind: schemas.KindLog, Body: `[{"type":"$login"}]`, Status: 400, Type: TypeBadRequest},
	{Name: "number body", Kind: schemas.KindFilter, Body: `42`, Status: 400, Type: TypeBadRequest},
	{Name: "string body", Kind: schemas.KindIdentify, Body: `"user_id"`, Status: 400, Type: TypeBadRequest},
	{Name: "truncated object", Kind: schemas.KindLog, Body: `{"type":"$login","status":"$succ`, Status: 400, Type: TypeBadRequest},
	{Name: "trailing garbage", Kind: schemas.KindLog, Body: `{"type":"$login"} x`, Status: 400, Type: TypeBadRequest},
	{Name: "two objects", Kind: schemas.KindTrack, Body: `{"event":"$login.succeeded"}{}`, Status: 400, Type: TypeBadRequest},
	{Name: "unquoted key", Kind: schemas.KindLog, Body: `{type:"$login"}`, Status: 400, Type: TypeBadRequest},
	{Name: "leading zero number", Kind: schemas.KindLog, Body: `{"type":"$login","properties":{"a":01}}`, Status: 400, Type: TypeBadRequest},
	{Name: "single quotes", Kind: schemas.KindLog, Body: `{'type':'$login'}`, Status: 400, Type: TypeBadRequest},
	{Name: "nested too deep", Kind: schemas.KindLog, Body: `{"type":"$login","properties":` + strings.Repeat(`{"a":`, 100) + `1` + strings.Repeat(`}`, 100) + `}`, Status: 400, Type: TypeBadRequest},

	// 422 invalid_parameters: event name.
	{Name: "log without type", Kind: schemas.KindLog, Body: `{"status":"$failed","user":{"id":"u1"}}`, Status: 422, Type: TypeInvalidParameters, Field: "type"},
	{Name: "risk without type", Kind: schemas.KindRisk, Body: `{"request_token":"t","user":{"id":"u1"},"context":{"ip":"1.2.3.4"}}`, Status: 422, Type: TypeInvalidParameters, Field: "type"},
	{Name: "track without event", Kind: schemas.KindTrack, Body: `{"user_id":"u1"}`, Status: 422, Type: TypeInvalidParameters, Field: "type"},
	{Name: "authenticate with null event", Kind: schemas.KindAuthenticate, Body: `{"event":null,"user_id":"u1"}`, Status: 422, Type: TypeInvalidParameters, Field: "type"},
	{Name: "type is a number", Kind: schemas.KindLog, Body: `{"type":5}`, Status: 422, Type: TypeInvalidParameters, Field: "type"},
	{Name: "status is an object", Kind: schemas.KindLog, Body: `{"type":"$login","status":{}}`, Status: 422, Type: TypeInvalidParameters, Field: "status"},
	{Name: "name is an array", Kind: schemas.KindLog, Body: `{"type":"$custom","name":["x"]}`, Status: 422, Type: TypeInvalidParameters, Field: "name"},
	{Name: "event is a number", Kind: schemas.KindTrack, Body: `{"event":1}`, Status: 422, Type: TypeInvalidParameters, Field: "event"},

	// 422 invalid_parameters: user.
	{Name: "identify without user_id", Kind: schemas.KindIdentify, Body: `{"user_traits":{"email":"a@b.c"}}`, Status: 422, Type: TypeInvalidParameters, Field: "user_id"},
	{Name: "identify with empty user_id", Kind: schemas.KindIdentify, Body: `{"user_id":""}`, Status: 422, Type: TypeInvalidParameters, Field: "user_id"},
	{Name: "user_id is a bool", Kind: schemas.KindIdentify, Body: `{"user_id":true}`, Status: 422, Type: TypeInvalidParameters, Field: "user_id"},
	{Name: "user_id is an object", Kind: schemas.KindTrack, Body: `{"event":"$login.succeeded","user_id":{"id":1}}`, Status: 422, Type: TypeInvalidParameters, Field: "user_id"},
	{Name: "user.id is an array", Kind: schemas.KindRisk, Body: `{"type":"$login","request_token":"t","user":{"id":["u1"]},"context":{"ip":"1.2.3.4"}}`, Status: 422, Type: TypeInvalidParameters, Field: "user.id"},
	{Name: "risk without user.id", Kind: schemas.KindRisk, Body: `{"type":"$login","request_token":"t","user":{"email":"a@b.c"},"context":{"ip":"1.2.3.4"}}`, Status: 422, Type: TypeInvalidParameters, Field: "user.id"},
	{Name: "user is a string", Kind: schemas.KindRisk, Body: `{"type":"$login","request_token":"t","user":"u1","context":{"ip":"1.2.3.4"}}`, Status: 422, Type: TypeInvalidParameters, Field: "user"},
	{Name: "user.email is a number", Kind: schemas.KindLog, Body: `{"type":"$login","user":{"id":"u1","email":5}}`, Status: 422, Type: TypeInvalidParameters, Field: "user.email"},
	{Name: "user.id too long", Kind: schemas.KindLog, Body: `{"type":"$login","user":{"id":"` + strings.Repeat("u", 1025) + `"}}`, Status: 422, Type: TypeInvalidParameters, Field: "user.id"},
	{Name: "user_id too long", Kind: schemas.KindIdentify, Body: `{"user_id":"` + strings.Repeat("9", 1025) + `"}`, Status: 422, Type: TypeInvalidParameters, Field: "user_id"},
	{Name: "user.email too long", Kind: schemas.KindIdentify, Body: `{"user":{"id":"u1","email":"` + strings.Repeat("e", 1020) + `@x.io"}}`, Status: 422, Type: TypeInvalidParameters, Field: "user.email"},
	{Name: "user_traits is a string", Kind: schemas.KindTrack, Body: `{"event":"$login.succeeded","user_id":"u1","user_traits":"x"}`, Status: 422, Type: TypeInvalidParameters, Field: "user_traits"},
	{Name: "user.traits is a number", Kind: schemas.KindLog, Body: `{"type":"$login","user":{"id":"u1","traits":1}}`, Status: 422, Type: TypeInvalidParameters, Field: "user.traits"},
	{Name: "user.registered_at not a date", Kind: schemas.KindLog, Body: `{"type":"$login","user":{"id":"u1","registered_at":"yesterday"}}`, Status: 422, Type: TypeInvalidParameters, Field: "user.registered_at"},

	// 422 invalid_parameters: timestamps and properties.
	{Name: "created_at not a date", Kind: schemas.KindLog, Body: `{"type":"$login","created_at":"2026-13-01T00:00:00Z"}`, Status: 422, Type: TypeInvalidParameters, Field: "created_at"},
	{Name: "created_at impossible day", Kind: schemas.KindLog, Body: `{"type":"$login","created_at":"2026-02-30"}`, Status: 422, Type: TypeInvalidParameters, Field: "created_at"},
	{Name: "created_at before year 1 in UTC", Kind: schemas.KindLog, Body: `{"type":"$login","created_at":"0001-01-01T00:00:00+01:00"}`, Status: 422, Type: TypeInvalidParameters, Field: "created_at"},
	{Name: "sent_at is a number", Kind: schemas.KindLog, Body: `{"type":"$login","sent_at":1700000000}`, Status: 422, Type: TypeInvalidParameters, Field: "sent_at"},
	{Name: "legacy timestamp not a date", Kind: schemas.KindTrack, Body: `{"event":"$login.succeeded","timestamp":"22/11/2026"}`, Status: 422, Type: TypeInvalidParameters, Field: "timestamp"},
	{Name: "properties is a string", Kind: schemas.KindLog, Body: `{"type":"$login","properties":"x"}`, Status: 422, Type: TypeInvalidParameters, Field: "properties"},
	{Name: "properties is an array", Kind: schemas.KindTrack, Body: `{"event":"$login.succeeded","properties":[1]}`, Status: 422, Type: TypeInvalidParameters, Field: "properties"},

	// 422 invalid_parameters: context.
	{Name: "context is a string", Kind: schemas.KindLog, Body: `{"type":"$login","context":"x"}`, Status: 422, Type: TypeInvalidParameters, Field: "context"},
	{Name: "context.ip not an address", Kind: schemas.KindLog, Body: `{"type":"$login","context":{"ip":"not-an-ip"}}`, Status: 422, Type: TypeInvalidParameters, Field: "context.ip"},
	{Name: "context.ip is a list", Kind: schemas.KindTrack, Body: `{"event":"$login.failed","context":{"ip":"1.2.3.4, 5.6.7.8"}}`, Status: 422, Type: TypeInvalidParameters, Field: "context.ip"},
	{Name: "context.ip is a number", Kind: schemas.KindLog, Body: `{"type":"$login","context":{"ip":1234}}`, Status: 422, Type: TypeInvalidParameters, Field: "context.ip"},
	{Name: "context.headers is a string", Kind: schemas.KindLog, Body: `{"type":"$login","context":{"headers":"User-Agent: x"}}`, Status: 422, Type: TypeInvalidParameters, Field: "context.headers"},
	{Name: "risk without context", Kind: schemas.KindRisk, Body: `{"type":"$login","request_token":"t","user":{"id":"u1"}}`, Status: 422, Type: TypeInvalidParameters, Field: "context"},
	{Name: "risk context without ip", Kind: schemas.KindRisk, Body: `{"type":"$login","request_token":"t","user":{"id":"u1"},"context":{"headers":{"User-Agent":"x"}}}`, Status: 422, Type: TypeInvalidParameters, Field: "context"},
	{Name: "filter without context", Kind: schemas.KindFilter, Body: `{"type":"$registration","status":"$attempted","request_token":"t"}`, Status: 422, Type: TypeInvalidParameters, Field: "context"},
	{Name: "risk without context, bad X-Castle-Ip ignored", Kind: schemas.KindRisk, Body: `{"type":"$login","request_token":"t","user":{"id":"u1"}}`, Header: map[string]string{"X-Castle-Ip": "nope"}, Status: 422, Type: TypeInvalidParameters, Field: "context"},
	{Name: "bad user_id with malformed X-Castle-Headers", Kind: schemas.KindTrack, Body: `{"event":"$login.succeeded","user_id":false}`, Header: map[string]string{"X-Castle-Headers": "{not json"}, Status: 422, Type: TypeInvalidParameters, Field: "user_id"},

	// 422 invalid_parameters: filter and options.
	{Name: "filter params is a string", Kind: schemas.KindFilter, Body: `{"type":"$login","request_token":"t","context":{"ip":"1.2.3.4"},"params":"a@b.c"}`, Status: 422, Type: TypeInvalidParameters, Field: "params"},
	{Name: "filter params.email is a number", Kind: schemas.KindFilter, Body: `{"type":"$login","request_token":"t","context":{"ip":"1.2.3.4"},"params":{"email":1}}`, Status: 422, Type: TypeInvalidParameters, Field: "params.email"},
	{Name: "filter matching_user_id is a bool", Kind: schemas.KindFilter, Body: `{"type":"$login","request_token":"t","context":{"ip":"1.2.3.4"},"matching_user_id":true}`, Status: 422, Type: TypeInvalidParameters, Field: "matching_user_id"},
	{Name: "skip_context_validation is a string", Kind: schemas.KindRisk, Body: `{"type":"$login","request_token":"t","user":{"id":"u1"},"skip_context_validation":"yes"}`, Status: 422, Type: TypeInvalidParameters, Field: "skip_context_validation"},
	{Name: "expand is an object", Kind: schemas.KindRisk, Body: `{"type":"$login","request_token":"t","user":{"id":"u1"},"context":{"ip":"1.2.3.4"},"expand":{"all":true}}`, Status: 422, Type: TypeInvalidParameters, Field: "expand"},

	// 422 invalid_request_token.
	{Name: "risk without request_token", Kind: schemas.KindRisk, Body: `{"type":"$login","user":{"id":"u1"},"context":{"ip":"1.2.3.4"}}`, Status: 422, Type: TypeInvalidRequestToken},
	{Name: "filter with empty request_token", Kind: schemas.KindFilter, Body: `{"type":"$login","request_token":"","context":{"ip":"1.2.3.4"}}`, Status: 422, Type: TypeInvalidRequestToken},
	{Name: "request_token with a control byte", Kind: schemas.KindRisk, Body: `{"type":"$login","request_token":"ab\u0001cd","user":{"id":"u1"},"context":{"ip":"1.2.3.4"}}`, Status: 422, Type: TypeInvalidRequestToken},
	{Name: "request_token not ASCII", Kind: schemas.KindLog, Body: `{"type":"$login","request_token":"tökén"}`, Status: 422, Type: TypeInvalidRequestToken},
	{Name: "request_token over 8 KiB", Kind: schemas.KindRisk, Body: `{"type":"$login","request_token":"` + strings.Repeat("a", 8193) + `","user":{"id":"u1"},"context":{"ip":"1.2.3.4"}}`, Status: 422, Type: TypeInvalidRequestToken},
	{Name: "request_token is a number", Kind: schemas.KindRisk, Body: `{"type":"$login","request_token":12345,"user":{"id":"u1"},"context":{"ip":"1.2.3.4"}}`, Status: 422, Type: TypeInvalidRequestToken},
}

// decodeTestHeader builds an http.Header from a case's header map (nil stays nil).
func decodeTestHeader(m map[string]string) http.Header {
	if m == nil {
		return nil
	}
	h := make(http.Header, len(m))
	for k, v := range m {
		h.Set(k, v)
	}
	return h
}
