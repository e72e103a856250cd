package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"
	"github.com/moat-dev/moat/internal/apps"
	"github.com/moat-dev/moat/internal/bearer"
	"github.com/moat-dev/moat/internal/httpapi"
	"github.com/moat-dev/moat/internal/useragent"
	"github.com/moat-dev/moat/schemas"
	"github.com/moat-dev/moat/scorer/fingerprint"
)

// Awaiter hands the scorer's decision of an appended event to the request
// waiting for it (ingest.Replies).
type Awaiter interface {
	Instance() string
	Await(eventID string) (<-chan schemas.Decision, func())
}

// EndUserConfig configures the end-user routes: device management
// (/api/devices), trusted devices (/api/v1/devices) and the backend routes
// that issue their bearer and activation tokens.
type EndUserConfig struct {
	Store *Store
	// Pending overlays the decisions the projector has not written yet
	// (nil: ClickHouse only, reads may lag behind commands).
	Pending *Pending
	UA      *useragent.Parser
	FP      *fingerprint.Hasher
	Apps    *apps.Registry
	Signer  *bearer.Signer
	Out     Appender
	Replies Awaiter
	// TokenLimit and IPLimit limit calls per bearer token and per client
	// IP (nil: unlimited).
	TokenLimit, IPLimit *bearer.Limiter
	// SessionTimeout is the scorer's session timeout: an active session
	// idle for longer shows as finished (default 20 minutes).
	SessionTimeout time.Duration
	// CommandTimeout bounds a command's wait for the scorer (default 5 s).
	CommandTimeout time.Duration
	// ActivationTTL is how long an activation token is valid (default 5
	// minutes).
	ActivationTTL time.Duration
	// Erasures hides what the privacy API deleted (nil: nothing is).
	Erasures Erasures
	Log      *slog.Logger
}

// Defaults of EndUserConfig.
const (
	DefaultCommandTimeout = 5 * time.Second
	DefaultActivationTTL  = 5 * time.Minute
	defaultSessionTimeout = 20 * time.Minute
	// readTimeout bounds one end-user read (ClickHouse and pending
	// decisions).
	readTimeout = 10 * time.Second
)

// EndUserHandler serves the end-user routes.
type EndUserHandler struct {
	cfg EndUserConfig
	log *slog.Logger
}

// NewEndUserHandler checks the configuration and returns the handler.
func NewEndUserHandler(cfg EndUserConfig) (*EndUserHandler, error) {
	switch {
	case cfg.Store == nil || cfg.UA == nil || cfg.FP == nil || cfg.Apps == nil || cfg.Signer == nil:
		return nil, errors.New("api: end-user routes need a store, a user-agent parser, a hasher, the apps and a signer")
	case cfg.Out == nil || cfg.Replies == nil:
		return nil, errors.New("api: end-user routes need the log and its replies")
	}
	if cfg.SessionTimeout <= 0 {
		cfg.SessionTimeout = defaultSessionTimeout
	}
	if cfg.CommandTimeout <= 0 {
		cfg.CommandTimeout = DefaultCommandTimeout
	}
	if cfg.ActivationTTL <= 0 {
		cfg.ActivationTTL = DefaultActivationTTL
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &EndUserHandler{cfg: cfg, log: cfg.Log.With("role", "api", "routes", "end-user")}, nil
}

// BearerPrefix is the path prefix of the routes that authenticate with a
// bearer token (httpapi.WithBearer).
const BearerPrefix = "/api/"

// Routes registers the end-user routes and the backend routes issuing
// their tokens on g, which must authenticate with
// httpapi.Authenticate(reg, httpapi.WithBearer(BearerPrefix, h.Authenticate)).
func (h *EndUserHandler) Routes(g *echo.Group) {
	g.POST("/v1/users/:user_id/tokens", h.issueToken)
	g.POST("/v1/users/:user_id/devices/activation_tokens", h.issueActivation)

	g.GET("/api/devices", h.listDevices)
	g.POST("/api/devices/signout", h.signout)
	g.GET("/api/devices/:uuid", h.getDevice)
	g.PATCH("/api/devices/:uuid/verify", h.deviceCommand(schemas.KindDeviceVerify, "Device verified successfully"))
	g.PATCH("/api/devices/:uuid/hijack", h.deviceCommand(schemas.KindDeviceHijack, "Device flagged as hijacked"))
	g.PATCH("/api/devices/:uuid/forget", h.deviceCommand(schemas.KindDeviceForget, "Device forgotten successfully. All active sessions were ended."))

	g.GET("/api/v1/devices", h.listTrusted)
	g.POST("/api/v1/devices/activate", h.activate)
	g.POST("/api/v1/devices/skip", h.skip)
	g.DELETE("/api/v1/devices/:device_id", h.revoke)
}

// The end-user routes' errors, as in the end-user API's reference.
var (
	errUnauthenticated = &httpapi.MessageError{Status: http.StatusUnauthorized, Message: "Unauthenticated."}
	errForbidden       = &httpapi.MessageError{Status: http.StatusForbidden, Message: "This action is unauthorized."}
	errDeviceNotFound  = &httpapi.MessageError{Status: http.StatusNotFound, Message: "Device not found"}
	errEndUserDown     = &httpapi.MessageError{Status: http.StatusServiceUnavailable, Message: "Service temporarily unavailable, please retry."}
	errInvalidBody     = &httpapi.MessageError{Status: http.StatusUnprocessableEntity, Message: "The token field is required."}
)

func tooManyAttempts(wait time.Duration) error {
	return &httpapi.MessageError{Status: http.StatusTooManyRequests, Message: "Too Many Attempts.", RetryAfter: bearer.RetryAfterSeconds(wait)}
}

// view loads the authenticated user's view; failures are 503.
func (h *EndUserHandler) view(c echo.Context, cl bearer.Claims) (*userView, error) {
	ctx, cancel := context.WithTimeout(c.Request().Context(), readTimeout)
	defer cancel()
	v, err := h.loadView(ctx, cl.AppID, cl.UserID)
	if err != nil {
		h.log.Warn("end-user read failed", "app_id", cl.AppID, "err", err)
		return nil, errEndUserDown
	}
	return v, nil
}

// EndUserDevice is a device as the end-user device routes show it.
type EndUserDevice struct {
	UUID       string         `json:"uuid"`
	Status     string         `json:"status"`
	VerifiedAt *string        `json:"verified_at"`
	Browser    Browser        `json:"browser"`
	Platform   Platform       `json:"platform"`
	Device     Hardware       `json:"device"`
	IsCurrent  bool           `json:"is_current"`
	Source     string         `json:"source"`
	IPAddress  string         `json:"ip_address"`
	Metadata   map[string]any `json:"metadata"`
}

// EndUserDeviceDetail is a device with its sessions.
type EndUserDeviceDetail struct {
	EndUserDevice
	Sessions []EndUserSession `json:"sessions"`
}

// EndUserSession is one session of a device.
type EndUserSession struct {
	UUID           string `json:"uuid"`
	Status         string `json:"status"`
	StartedAt      string `json:"started_at"`
	LastActivityAt string `json:"last_activity_at"`
}

// Version is a parsed version.
type Version struct {
	Major string `json:"major"`
	Minor string `json:"minor"`
	Patch string `json:"patch"`
	Label string `json:"label"`
}

// Browser is the parsed browser of a device.
type Browser struct {
	Name    string  `json:"name"`
	Version Version `json:"version"`
	Family  string  `json:"family"`
	Engine  string  `json:"engine"`
	Type    string  `json:"type"`
	Label   string  `json:"label"`
}

// Platform is the parsed operating system of a device.
type Platform struct {
	Name    string  `json:"name"`
	Version Version `json:"version"`
	Family  string  `json:"family"`
	Label   string  `json:"label"`
}

// Hardware is the parsed hardware of a device.
type Hardware struct {
	Family string `json:"family"`
	Model  string `json:"model"`
	Type   string `json:"type"`
}

// seconds formats epoch milliseconds as the end-user routes do (RFC 3339,
// seconds, UTC).
func seconds(ms uint64) string {
	return time.UnixMilli(int64(ms)).UTC().Format(time.RFC3339)
}

func (h *EndUserHandler) endUserDevice(appID string, d *viewDevice, current string) EndUserDevice {
	ua := h.cfg.UA.Parse(d.row.UA.Raw)
	out := EndUserDevice{
		UUID:   deviceUUID(appID, d.row.Token),
		Status: d.status,
		Browser: Browser{
			Name: orUnknown(ua.Browser), Version: version(ua.BrowserVersion), Family: browserFamily(ua.Browser),
			Engine: orUnknown(ua.Engine), Type: orUnknown(ua.BrowserType), Label: orUnknown(ua.Browser),
		},
		Platform:  Platform{Name: orUnknown(ua.OS), Version: version(ua.OSVersion), Family: orUnknown(ua.Platform), Label: platformLabel(ua)},
		Device:    hardware(ua),
		IsCurrent: current != "" && current == d.row.Token,
		Source:    d.row.UA.Raw,
		IPAddress: d.row.LastIP,
		Metadata:  map[string]any{"first_seen_at": seconds(d.row.FirstSeenMs), "last_seen_at": seconds(d.row.LastSeenMs)},
	}
	if d.status == statusVerified && d.verifiedMs != 0 {
		s := seconds(d.verifiedMs)
		out.VerifiedAt = &s
	}
	return out
}

func orUnknown(s string) string {
	if s == "" || s == "Other" {
		return "Unknown"
	}
	return s
}

// version splits a dotted version into major, minor and patch ("0" for
// the missing ones once there is a major).
func version(v string) Version {
	if v == "" {
		return Version{Major: "0", Minor: "0", Patch: "0", Label: "0.0.0"}
	}
	p := strings.SplitN(v, ".", 4)
	for len(p) < 3 {
		p = append(p, "0")
	}
	return Version{Major: p[0], Minor: p[1], Patch: p[2], Label: p[0] + "." + p[1] + "." + p[2]}
}

func browserFamily(name string) string {
	for _, f := range []string{"Chrome", "Firefox", "Safari", "Edge", "Opera", "Samsung Internet", "IE"} {
		if strings.Contains(name, f) {
			return f
		}
	}
	return orUnknown(name)
}

func platformLabel(ua schemas.UserAgent) string {
	if ua.Platform != "" && ua.Platform != "Other" {
		return ua.Platform
	}
	return orUnknown(ua.OS)
}

func hardware(ua schemas.UserAgent) Hardware {
	typ := ua.DeviceType
	if typ == "" {
		typ = "unknown"
	}
	hw := Hardware{Family: ua.DeviceFamily, Model: ua.DeviceModel, Type: typ}
	if hw.Family == "" || hw.Family == "Other" || hw.Family == "Generic Smartphone" {
		hw.Family = strings.ToUpper(typ[:1]) + typ[1:]
	}
	if hw.Model == "" {
		switch {
		case typ == "desktop" && ua.Platform == "macOS":
			hw.Model = "Mac"
		case typ == "desktop":
			hw.Model = "PC"
		default:
			hw.Model = "Unknown"
		}
	}
	return hw
}

func (h *EndUserHandler) sessionsOf(v *userView, token string) []EndUserSession {
	now := uint64(time.Now().UnixMilli())
	out := []EndUserSession{}
	for _, s := range v.deviceSessions(token) {
		status := s.status
		// Idle past the timeout: finished, though the scorer records it
		// only with the user's next event.
		if status == schemas.SessionActive && now > s.lastMs+uint64(h.cfg.SessionTimeout.Milliseconds()) {
			status = schemas.SessionFinished
		}
		out = append(out, EndUserSession{UUID: s.uuid, Status: status, StartedAt: seconds(s.startedMs), LastActivityAt: seconds(s.lastMs)})
	}
	return out
}

// GET /api/devices
func (h *EndUserHandler) listDevices(c echo.Context) error {
	cl := claims(c)
	v, err := h.view(c, cl)
	if err != nil {
		return err
	}
	out := make([]EndUserDevice, 0, len(v.devices))
	for _, d := range v.devices {
		out = append(out, h.endUserDevice(cl.AppID, d, cl.DeviceToken))
	}
	return c.JSON(http.StatusOK, map[string]any{"data": out})
}

// GET /api/devices/{uuid}
func (h *EndUserHandler) getDevice(c echo.Context) error {
	cl := claims(c)
	v, err := h.view(c, cl)
	if err != nil {
		return err
	}
	d := v.device(cl.AppID, c.Param("uuid"))
	if d == nil {
		return errDeviceNotFound
	}
	out := EndUserDeviceDetail{EndUserDevice: h.endUserDevice(cl.AppID, d, cl.DeviceToken), Sessions: h.sessionsOf(v, d.row.Token)}
	return c.JSON(http.StatusOK, map[string]any{"data": out})
}

// deviceCommand serves PATCH /api/devices/{uuid}/verify, /hijack and
// /forget: the command goes to the log and the answer waits until the
// scorer applied it. A device on the hijacked list can neither be
// verified by its user nor manage devices.
func (h *EndUserHandler) deviceCommand(kind schemas.Kind, message string) echo.HandlerFunc {
	return func(c echo.Context) error {
		cl := claims(c)
		v, err := h.view(c, cl)
		if err != nil {
			return err
		}
		d := v.device(cl.AppID, c.Param("uuid"))
		if d == nil {
			return errDeviceNotFound
		}
		if cur := v.byToken(cl.DeviceToken); cur != nil && cur.status == statusHijacked {
			return errForbidden
		}
		if kind == schemas.KindDeviceVerify && d.status == statusHijacked {
			return errForbidden
		}
		if _, err := h.command(c, cl, kind, &schemas.DeviceRef{Token: d.row.Token, Fingerprint: d.row.Fingerprint}, nil); err != nil {
			return err
		}
		return c.JSON(http.StatusOK, map[string]string{"message": message})
	}
}

// POST /api/devices/signout ends every active session of the current
// device.
func (h *EndUserHandler) signout(c echo.Context) error {
	cl := claims(c)
	if cl.DeviceToken == "" {
		return errForbidden
	}
	dev := &schemas.DeviceRef{Token: cl.DeviceToken}
	if _, err := h.command(c, cl, schemas.KindDeviceSignout, dev, nil); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]string{"message": "All active sessions for device finished successfully."})
}

// command appends an end-user command about the authenticated user and
// waits for the scorer's decision of it (request-reply over the log, as
// /v1/risk): once answered, the decision is committed, so any later read
// (Pending) shows it.
func (h *EndUserHandler) command(c echo.Context, cl bearer.Claims, kind schemas.Kind, dev *schemas.DeviceRef, extra map[string]json.RawMessage) (schemas.Decision, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return schemas.Decision{}, fmt.Errorf("api: command id: %w", err)
	}
	ev := &schemas.Event{
		V: schemas.EnvelopeVersion, ID: id.String(), AppID: cl.AppID, Kind: kind,
		User: schemas.User{ID: cl.UserID}, Device: dev,
		Context:    schemas.Context{IP: clientIP(c)},
		ReceivedAt: time.Now().UTC().Truncate(time.Millisecond),
		ReplyTo:    h.cfg.Replies.Instance(),
	}
	if len(extra) > 0 {
		ev.Extra = extra
	}
	return h.appendAndWait(c.Request().Context(), ev)
}

func (h *EndUserHandler) appendAndWait(ctx context.Context, ev *schemas.Event) (schemas.Decision, error) {
	reply, done := h.cfg.Replies.Await(ev.ID)
	defer done()
	if err := h.cfg.Out.Append(ctx, ev); err != nil {
		h.log.Warn("end-user command not accepted: broker unavailable", "app_id", ev.AppID, "kind", ev.Kind, "err", err)
		return schemas.Decision{}, errEndUserDown
	}
	t := time.NewTimer(h.cfg.CommandTimeout)
	defer t.Stop()
	select {
	case d := <-reply:
		// The app's own view (Castle's devices API) reads ClickHouse
		// only: wait until the command is there too, so it shows there
		// as soon as the end user saw it done.
		if !h.cfg.Store.WaitVisible(ctx, ev, DefaultVisibilityTimeout) {
			h.log.Warn("end-user command answered before it reached the timeline", "app_id", ev.AppID, "kind", ev.Kind, "event_id", ev.ID)
		}
		return d, nil
	case <-t.C:
		h.log.Warn("end-user command not decided in time", "app_id", ev.AppID, "kind", ev.Kind, "event_id", ev.ID)
		return schemas.Decision{}, errEndUserDown
	case <-ctx.Done():
		return schemas.Decision{}, ctx.Err()
	}
}

// clientIP is the caller's address: the echo IP extractor's when one is
// configured (behind a trusted proxy), else the connection's.
func clientIP(c echo.Context) string {
	var ip string
	if c.Echo().IPExtractor != nil {
		ip = c.RealIP()
	} else {
		ip = c.Request().RemoteAddr
		if ap, err := netip.ParseAddrPort(ip); err == nil {
			ip = ap.Addr().String()
		}
	}
	if a, err := netip.ParseAddr(ip); err == nil {
		return a.Unmap().String()
	}
	return ip
}
