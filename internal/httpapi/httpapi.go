// Package httpapi is the HTTP plumbing the ingest and api roles share: the
// echo instance, Castle-style JSON errors decided in one place, HTTP Basic
// authentication of apps, body limits and panic recovery.
package httpapi

import (
	"bytes"
	"encoding/base64"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"github.com/moat-dev/moat/internal/apps"
	"github.com/moat-dev/moat/internal/metrics"
)

// Error is a client-facing error, rendered as Castle renders errors:
// {"type": ..., "message": ...} with the HTTP status.
type Error struct {
	Status  int
	Type    string
	Message string
}

func (e *Error) Error() string { return e.Type + ": " + e.Message }

// CastleError lets the error handler render the error.
func (e *Error) CastleError() (int, string, string) { return e.Status, e.Type, e.Message }

// castleError is implemented by every error that has a Castle rendering.
type castleError interface {
	error
	CastleError() (status int, typ, message string)
}

// Body is the JSON shape of every error response.
type Body struct {
	Type    string `json:"type"`
	Message string `json:"message"`
}

// Config configures the shared HTTP server.
type Config struct {
	// BodyLimit is the largest request body accepted (413 above it).
	BodyLimit int64
	// Metrics, when set, records every request and is served on /metrics.
	Metrics *metrics.Metrics
}

// New returns an echo instance with Moat's error handling, recovery and
// request logging. Routes are added by the roles.
func New(cfg Config, log *slog.Logger) *echo.Echo {
	e := echo.New()
	e.HideBanner = true
	e.HidePort = true
	e.HTTPErrorHandler = errorHandler(log)
	e.Use(middleware.RecoverWithConfig(middleware.RecoverConfig{
		DisableStackAll: true,
		LogErrorFunc: func(c echo.Context, err error, stack []byte) error {
			log.Error("handler panicked", "path", c.Path(), "err", err, "stack", string(stack))
			return err
		},
	}))
	e.Use(bodyLimit(cfg.BodyLimit))
	if cfg.Metrics != nil {
		e.Use(cfg.Metrics.Middleware())
		e.GET("/metrics", echo.WrapHandler(cfg.Metrics.Handler()))
	}
	e.Use(requestLog(log))
	return e
}

// requestLog logs the requests answered with a 5xx at Warn, and every
// request at Debug. It is echo's RequestLogger reduced to what Moat logs:
// the status is the response's, or an *echo.HTTPError's code when the
// handler returned one (the error handler has not run yet).
func requestLog(log *slog.Logger) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			start := time.Now()
			err := next(c)
			latency := time.Since(start)
			status := c.Response().Status
			if err != nil {
				var he *echo.HTTPError
				if errors.As(err, &he) {
					status = he.Code
				}
			}
			req := c.Request()
			if status < 500 && !log.Enabled(req.Context(), slog.LevelDebug) {
				return err
			}
			path := req.URL.Path
			if path == "" {
				path = "/"
			}
			if status >= 500 {
				log.Warn("request", "method", req.Method, "path", path, "status", status, "latency_ms", latency.Milliseconds(), "err", err)
			} else {
				log.Debug("request", "method", req.Method, "path", path, "status", status, "latency_ms", latency.Milliseconds())
			}
			return err
		}
	}
}

// bodyLimit rejects bodies over limit with 413 before a handler reads them,
// whether or not the client sent a Content-Length.
func bodyLimit(limit int64) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			req := c.Request()
			if req.ContentLength > limit {
				return TooLarge(limit)
			}
			req.Body = http.MaxBytesReader(c.Response(), req.Body, limit)
			return next(c)
		}
	}
}

// TooLarge is the 413 error for a body over limit bytes.
func TooLarge(limit int64) *Error {
	return &Error{Status: http.StatusRequestEntityTooLarge, Type: "request_entity_too_large",
		Message: "Request body is larger than " + strconv.FormatInt(limit, 10) + " bytes"}
}

// IsTooLarge reports whether err came from reading a body over the limit.
func IsTooLarge(err error) bool {
	var mbe *http.MaxBytesError
	return errors.As(err, &mbe)
}

var statusTypes = map[int]string{
	http.StatusBadRequest:            "bad_request",
	http.StatusUnauthorized:          "unauthorized",
	http.StatusForbidden:             "forbidden",
	http.StatusNotFound:              "route_not_found",
	http.StatusMethodNotAllowed:      "method_not_allowed",
	http.StatusRequestEntityTooLarge: "request_entity_too_large",
	http.StatusUnsupportedMediaType:  "unsupported_media_type",
	http.StatusUnprocessableEntity:   "invalid_parameters",
	http.StatusTooManyRequests:       "rate_limited",
	http.StatusServiceUnavailable:    "service_unavailable",
}

// errorHandler renders every error as {"type","message"} JSON. Unknown
// errors are 500 server_error and are logged; their text is not sent.
func errorHandler(log *slog.Logger) echo.HTTPErrorHandler {
	return func(err error, c echo.Context) {
		if c.Response().Committed {
			return
		}
		status, body := http.StatusInternalServerError, Body{Type: "server_error", Message: "Internal server error"}
		var me *MessageError
		if errors.As(err, &me) {
			if werr := me.render(c); werr != nil {
				log.Debug("write error response", "err", werr)
			}
			return
		}
		var ce castleError
		var he *echo.HTTPError
		switch {
		case errors.As(err, &ce):
			status, body.Type, body.Message = ce.CastleError()
		case errors.As(err, &he):
			status = he.Code
			body.Type = statusTypes[he.Code]
			if body.Type == "" {
				body.Type = "server_error"
			}
			body.Message = http.StatusText(he.Code)
			if he.Code == http.StatusNotFound {
				body.Message = "Route not found"
			}
		default:
			log.Error("unhandled error", "method", c.Request().Method, "path", c.Path(), "err", err)
		}
		if status == http.StatusUnauthorized {
			c.Response().Header().Set("WWW-Authenticate", `Basic realm="moat"`)
		}
		if c.Request().Method == http.MethodHead {
			_ = c.NoContent(status)
			return
		}
		if werr := c.JSON(status, body); werr != nil {
			log.Debug("write error response", "err", werr)
		}
	}
}

const appKey = "moat.app"

// Public lists the paths served without authentication: health and
// readiness probes, which carry no tenant data.
var Public = map[string]bool{"/healthz": true, "/readyz": true, "/metrics": true}

// Authenticate checks Castle's scheme: HTTP Basic with any (normally empty)
// user name and the app's API secret as the password. Install it with
// e.Use, so that it runs after routing for every route, unknown ones
// included (a client without a valid secret learns nothing, not even which
// routes exist); only the Public paths skip it. WithBearer hands the
// end-user routes to their own authentication.
func Authenticate(reg *apps.Registry, opts ...AuthOption) echo.MiddlewareFunc {
	var o authOptions
	for _, f := range opts {
		f(&o)
	}
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		var bearer echo.HandlerFunc
		if o.bearer != nil {
			bearer = o.bearer(next)
		}
		return func(c echo.Context) error {
			if Public[c.Path()] && c.Request().Method == http.MethodGet {
				return next(c)
			}
			if o.bearerRoute(c) {
				return bearer(c)
			}
			var buf basicBuf
			secret, ok := basicPassword(c.Request().Header.Get("Authorization"), &buf)
			if !ok {
				return &Error{Status: http.StatusUnauthorized, Type: "unauthorized", Message: "Missing API secret: use HTTP Basic auth with the API secret as the password"}
			}
			app, ok := reg.Authenticate(string(secret))
			if !ok {
				return &Error{Status: http.StatusUnauthorized, Type: "unauthorized", Message: "Invalid API secret"}
			}
			c.Set(appKey, app)
			return next(c)
		}
	}
}

// basicBuf is room for basicPassword to decode usual credentials in
// without allocating.
type basicBuf struct {
	enc [128]byte
	dec [96]byte
}

// basicPassword returns the password of HTTP Basic credentials h, decoded
// into buf when they fit.
func basicPassword(h string, buf *basicBuf) ([]byte, bool) {
	scheme, rest, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Basic") {
		return nil, false
	}
	rest = strings.TrimSpace(rest)
	var raw []byte
	var err error
	if len(rest) <= len(buf.enc) {
		var n int
		n, err = base64.StdEncoding.Decode(buf.dec[:], buf.enc[:copy(buf.enc[:], rest)])
		raw = buf.dec[:n]
	} else {
		raw, err = base64.StdEncoding.DecodeString(rest)
	}
	if err != nil {
		return nil, false
	}
	_, pass, ok := bytes.Cut(raw, []byte(":"))
	if !ok || len(pass) == 0 {
		return nil, false
	}
	return pass, true
}

// App returns the app the request authenticated as. It panics when the
// route is not behind Authenticate: that is a wiring bug, not bad input.
func App(c echo.Context) apps.App {
	return c.Get(appKey).(apps.App)
}

// Server wraps http.Server timeouts suited to an API behind load balancers.
func Server(addr string, h http.Handler) *http.Server {
	return &http.Server{
		Addr:              addr,
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
	}
}
