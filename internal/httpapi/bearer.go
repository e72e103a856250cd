package httpapi

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"
	"github.com/moat-dev/moat/internal/apps"
)

// MessageError is an error of the end-user routes, rendered as
// {"message": ...} (plus "retry_after" for 429) rather than Castle's
// {"type", "message"}.
type MessageError struct {
	Status  int
	Message string
	// RetryAfter, when positive, is sent as the Retry-After header and the
	// body's retry_after (seconds).
	RetryAfter int
}

func (e *MessageError) Error() string { return strconv.Itoa(e.Status) + ": " + e.Message }

// messageBody is MessageError's JSON.
type messageBody struct {
	Message    string `json:"message"`
	RetryAfter int    `json:"retry_after,omitempty"`
}

func (e *MessageError) render(c echo.Context) error {
	h := c.Response().Header()
	if e.RetryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(e.RetryAfter))
	}
	if e.Status == http.StatusUnauthorized {
		h.Set("WWW-Authenticate", `Bearer realm="moat"`)
	}
	if c.Request().Method == http.MethodHead {
		return c.NoContent(e.Status)
	}
	return c.JSON(e.Status, messageBody{Message: e.Message, RetryAfter: e.RetryAfter})
}

// AuthOption changes how Authenticate authenticates some routes.
type AuthOption func(*authOptions)

type authOptions struct {
	bearerPrefix string
	bearer       echo.MiddlewareFunc
}

// WithBearer authenticates the routes under prefix (such as "/api/") with
// auth instead of HTTP Basic: the routes registered under it and any
// unknown path under it. auth must call next only for an authenticated
// request, after SetApp. Routes outside prefix (all of /v1) keep HTTP
// Basic: a bearer token never opens them.
func WithBearer(prefix string, auth echo.MiddlewareFunc) AuthOption {
	return func(o *authOptions) { o.bearerPrefix, o.bearer = prefix, auth }
}

// bearerRoute reports whether the request is for a bearer route: its
// matched route is under the prefix, or no route matched and its path is.
func (o *authOptions) bearerRoute(c echo.Context) bool {
	if o.bearer == nil {
		return false
	}
	if p := c.Path(); p != "" {
		return strings.HasPrefix(p, o.bearerPrefix)
	}
	return strings.HasPrefix(c.Request().URL.Path, o.bearerPrefix)
}

// SetApp records the app a request authenticated as (for App).
func SetApp(c echo.Context, app apps.App) { c.Set(appKey, app) }
