package api

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"
	"github.com/moat-dev/moat/internal/httpapi"
	"github.com/moat-dev/moat/schemas"
)

type impersonateBody struct {
	UserID     json.RawMessage `json:"user_id"`
	Properties json.RawMessage `json:"properties"`
	Context    struct {
		IP        string `json:"ip"`
		UserAgent string `json:"user_agent"`
	} `json:"context"`
}

var errInvalidUserID = &httpapi.Error{Status: http.StatusUnprocessableEntity, Type: "invalid_parameters", Message: "user_id is missing or not a string"}

// impersonate handles POST (start) and DELETE (end) /v1/impersonate: the
// command goes to the log keyed by the user, so the scorer marks the user's
// events from then on (kept in the timeline, marked, scoring and learning
// nothing) until the end command.
func (h *Handler) impersonate(kind schemas.Kind) echo.HandlerFunc {
	return func(c echo.Context) error {
		app := httpapi.App(c)
		raw, err := io.ReadAll(c.Request().Body)
		if err != nil {
			if httpapi.IsTooLarge(err) {
				return httpapi.TooLarge(0)
			}
			return &httpapi.Error{Status: http.StatusBadRequest, Type: "bad_request", Message: "Could not read the request body"}
		}
		var b impersonateBody
		if err := json.Unmarshal(raw, &b); err != nil {
			return &httpapi.Error{Status: http.StatusBadRequest, Type: "bad_request", Message: "Malformed JSON body"}
		}
		userID, ok := idString(b.UserID)
		if !ok || userID == "" || len(userID) > 1024 {
			return errInvalidUserID
		}
		id, err := uuid.NewV7()
		if err != nil {
			return fmt.Errorf("api: command id: %w", err)
		}
		ev := &schemas.Event{
			V: schemas.EnvelopeVersion, ID: id.String(), AppID: app.ID, Kind: kind,
			User:       schemas.User{ID: userID},
			Context:    schemas.Context{IP: b.Context.IP},
			ReceivedAt: time.Now().UTC().Truncate(time.Millisecond),
		}
		if b.Context.UserAgent != "" {
			ev.Context.Headers = map[string]string{"user-agent": b.Context.UserAgent}
		}
		if len(b.Properties) > 0 && b.Properties[0] == '{' {
			ev.Properties = b.Properties
		}
		if err := h.out.Append(c.Request().Context(), ev); err != nil {
			h.log.Warn("impersonation not accepted: broker unavailable", "app_id", app.ID, "err", err)
			return errLogUnavailable
		}
		return c.JSON(http.StatusOK, map[string]bool{"success": true})
	}
}

// idString accepts a user id sent as a JSON string or number.
func idString(raw json.RawMessage) (string, bool) {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s, true
	}
	var n json.Number
	if json.Unmarshal(raw, &n) == nil {
		if _, err := strconv.ParseFloat(n.String(), 64); err == nil {
			return n.String(), true
		}
	}
	return "", false
}
