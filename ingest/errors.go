package ingest

import (
	"fmt"
	"net/http"
)

// The client-facing error types, as Castle names them (castle-api.md §6).
// The official SDKs branch on the HTTP status and, for 422, on the type:
// invalid_request_token raises InvalidRequestTokenError, any other 422
// raises InvalidParametersError.
const (
	TypeBadRequest            = "bad_request"
	TypeInvalidParameters     = "invalid_parameters"
	TypeInvalidRequestToken   = "invalid_request_token"
	TypeRequestEntityTooLarge = "request_entity_too_large"
	TypeUnauthorized          = "unauthorized"
	TypeRouteNotFound         = "route_not_found"
	TypeMethodNotAllowed      = "method_not_allowed"
	TypeServiceUnavailable    = "service_unavailable"
)

// APIError is a client-facing error in Castle's shape
// {"type": ..., "message": ...}. Status is the HTTP status and is not part of
// the JSON body, so a handler can answer with c.JSON(e.Status, e).
//
// APIError values are compared by kind: errors.Is(err, ErrInvalidParameters)
// holds for every 422 invalid_parameters error, whatever its message.
type APIError struct {
	Status  int    `json:"-"`
	Type    string `json:"type"`
	Message string `json:"message"`
}

// Error implements error.
func (e *APIError) Error() string {
	return fmt.Sprintf("%d %s: %s", e.Status, e.Type, e.Message)
}

// Is reports whether target is an *APIError with the same status and type.
func (e *APIError) Is(target error) bool {
	t, ok := target.(*APIError)
	return ok && t.Status == e.Status && t.Type == e.Type
}

// BadRequest returns a 400 bad_request error: the body is not JSON, is not
// a JSON object, or has trailing garbage.
func BadRequest(msg string) *APIError {
	return &APIError{Status: http.StatusBadRequest, Type: TypeBadRequest, Message: msg}
}

// InvalidParameters returns a 422 invalid_parameters error. The message
// names the offending field ("user_id must be a string").
func InvalidParameters(msg string) *APIError {
	return &APIError{Status: http.StatusUnprocessableEntity, Type: TypeInvalidParameters, Message: msg}
}

// InvalidRequestToken returns a 422 invalid_request_token error.
func InvalidRequestToken(msg string) *APIError {
	return &APIError{Status: http.StatusUnprocessableEntity, Type: TypeInvalidRequestToken, Message: msg}
}

// Sentinels, one per error kind, with Castle's generic messages. Match them
// with errors.Is; answer with them directly where no better message exists.
// Do not modify them.
var (
	ErrBadRequest            = BadRequest("Malformed request body")
	ErrInvalidParameters     = InvalidParameters("One or more parameters are invalid")
	ErrInvalidRequestToken   = InvalidRequestToken("Request token is invalid")
	ErrRequestTokenMissing   = InvalidRequestToken("Request token is missing")
	ErrRequestEntityTooLarge = &APIError{Status: http.StatusRequestEntityTooLarge, Type: TypeRequestEntityTooLarge, Message: "Request body is too large"}
	ErrUnauthorized          = &APIError{Status: http.StatusUnauthorized, Type: TypeUnauthorized, Message: "Invalid or missing API secret"}
	ErrRouteNotFound         = &APIError{Status: http.StatusNotFound, Type: TypeRouteNotFound, Message: "Route not found"}
	ErrMethodNotAllowed      = &APIError{Status: http.StatusMethodNotAllowed, Type: TypeMethodNotAllowed, Message: "Method not allowed"}
	ErrServiceUnavailable    = &APIError{Status: http.StatusServiceUnavailable, Type: TypeServiceUnavailable, Message: "Service temporarily unavailable, please retry"}
)
