// Package api is the read and command side of Moat's HTTP API: the Castle
// devices API and, as the product grows, reviews, lists and end-user device
// management. Reads come from the ClickHouse views the projector maintains;
// every query is scoped to the authenticated app.
package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/labstack/echo/v4"
	"github.com/moat-dev/moat/internal/endpoints"
	"github.com/moat-dev/moat/internal/httpapi"
	"github.com/moat-dev/moat/schemas"
	"github.com/moat-dev/moat/scorer/fingerprint"
)

// Handler serves the api routes.
type Handler struct {
	store *Store
	fp    *fingerprint.Hasher
	out   Appender
	log   *slog.Logger
	// visibleTimeout bounds a command's wait for the timeline.
	visibleTimeout time.Duration

	// endpoints manages the webhook endpoints (WithEndpoints); nil leaves
	// the endpoint routes out.
	endpoints *endpoints.Manager
	// privacy serves the privacy API (WithPrivacy); nil leaves it out.
	privacy *privacySide
}

// NewHandler returns the api routes' handler. fp recomputes the fingerprint
// of a client id so that the caller's current device can be marked. out
// appends commands to the log; nil leaves the command routes out.
func NewHandler(store *Store, fp *fingerprint.Hasher, out Appender, log *slog.Logger) *Handler {
	return &Handler{store: store, fp: fp, out: out, log: log.With("role", "api"), visibleTimeout: DefaultVisibilityTimeout}
}

// Routes registers the api routes on g, which must authenticate apps.
func (h *Handler) Routes(g *echo.Group) {
	g.GET("/v1/users/:user_id/devices", h.userDevices)
	g.GET("/v1/devices/:device_token", h.device)
	g.GET("/v1/reviews/:review_id", h.review)
	if h.out != nil {
		g.PUT("/v1/devices/:device_token/approve", h.feedback(schemas.KindDeviceApprove))
		g.PUT("/v1/devices/:device_token/report", h.feedback(schemas.KindDeviceReport))
		g.PUT("/v1/users/:user_id/archive_devices", h.recovery(schemas.KindUserArchiveDevices))
		g.PUT("/v1/users/:user_id/recover", h.recovery(schemas.KindUserRecover))
		g.POST("/v1/impersonate", h.impersonate(schemas.KindImpersonateStart))
		g.DELETE("/v1/impersonate", h.impersonate(schemas.KindImpersonateEnd))
	}
	if h.endpoints != nil {
		h.endpointRoutes(g)
	}
	if h.privacy != nil {
		h.privacyRoutes(g)
	}
}

var errNotFound = &httpapi.Error{Status: http.StatusNotFound, Type: "not_found", Message: "Not found"}

// errLogUnavailable answers a command the broker did not acknowledge.
var errLogUnavailable = &httpapi.Error{Status: http.StatusServiceUnavailable, Type: "service_unavailable", Message: "Service temporarily unavailable, please retry"}

func unavailable() error {
	return &httpapi.Error{Status: http.StatusServiceUnavailable, Type: "service_unavailable", Message: "Storage is unavailable, please retry"}
}

// DeviceList is Castle's device list envelope.
type DeviceList struct {
	TotalCount int      `json:"total_count"`
	Data       []Device `json:"data"`
}

func (h *Handler) userDevices(c echo.Context) error {
	app := httpapi.App(c)
	userID := c.Param("user_id")
	if userID == "" || len(userID) > 1024 {
		return &httpapi.Error{Status: http.StatusUnprocessableEntity, Type: "invalid_parameters", Message: "user_id is invalid"}
	}
	rows, err := h.store.UserDevices(c.Request().Context(), app.ID, userID)
	if err != nil {
		h.log.Warn("list devices", "app_id", app.ID, "err", err)
		return unavailable()
	}
	current := ""
	cid := c.QueryParam("client_id")
	if cid == "" {
		cid = c.QueryParam("cid")
	}
	if cid != "" {
		current = h.fp.Fingerprint(app.ID, fingerprint.Attributes{ClientID: cid})
	}
	out := DeviceList{TotalCount: len(rows), Data: make([]Device, 0, len(rows))}
	for _, r := range rows {
		out.Data = append(out.Data, r.device(current))
	}
	return c.JSON(http.StatusOK, out)
}

func (h *Handler) device(c echo.Context) error {
	app := httpapi.App(c)
	token := c.Param("device_token")
	if token == "" || len(token) > 256 {
		return errNotFound
	}
	r, err := h.store.Device(c.Request().Context(), app.ID, token)
	if errors.Is(err, ErrNotFound) {
		return errNotFound
	}
	if err != nil {
		h.log.Warn("get device", "app_id", app.ID, "err", err)
		return unavailable()
	}
	return c.JSON(http.StatusOK, r.device(""))
}

// Device is Castle's device object.
type Device struct {
	Token           string        `json:"token"`
	Risk            float64       `json:"risk"`
	UserID          string        `json:"user_id"`
	CreatedAt       string        `json:"created_at"`
	LastSeenAt      string        `json:"last_seen_at"`
	ApprovedAt      *string       `json:"approved_at"`
	EscalatedAt     *string       `json:"escalated_at"`
	MitigatedAt     *string       `json:"mitigated_at"`
	Context         DeviceContext `json:"context"`
	IsCurrentDevice bool          `json:"is_current_device"`
	Fingerprint     string        `json:"fingerprint"`
}

// DeviceContext is where and how the device was last seen.
type DeviceContext struct {
	IP         string          `json:"ip"`
	Location   *Location       `json:"location"`
	UserAgent  DeviceUserAgent `json:"user_agent"`
	Properties map[string]any  `json:"properties"`
	Type       string          `json:"type"`
}

// Location is the device's last geolocation (null until geo data is
// configured).
type Location struct {
	CountryCode string  `json:"country_code"`
	Country     string  `json:"country"`
	Region      string  `json:"region"`
	RegionCode  string  `json:"region_code"`
	City        string  `json:"city"`
	Lat         float64 `json:"lat"`
	Lon         float64 `json:"lon"`
}

// DeviceUserAgent is Castle's legacy parsed user agent.
type DeviceUserAgent struct {
	Raw      string `json:"raw"`
	Browser  string `json:"browser"`
	Version  string `json:"version"`
	OS       string `json:"os"`
	Mobile   bool   `json:"mobile"`
	Platform string `json:"platform"`
	Device   string `json:"device"`
	Family   string `json:"family"`
}

// deviceRow is one row of the devices view.
type deviceRow struct {
	UserID, Token, Fingerprint string
	FirstSeenMs, LastSeenMs    uint64
	LastIP                     string
	UA                         schemas.UserAgent
	Feedback                   feedback
}

// feedback is the latest approve and report of a device.
type feedback struct {
	ApprovedMs, ReportedMs uint64
	// Latest is "approve", "report" or empty.
	Latest string
	// MitigatedMs is when an account recovery covered the device.
	MitigatedMs uint64
	// ForgottenMs is when the end user last forgot the device.
	ForgottenMs uint64
}

func msTime(ms uint64) string {
	return time.UnixMilli(int64(ms)).UTC().Format("2006-01-02T15:04:05.000Z07:00")
}

func msTimePtr(ms uint64) *string {
	if ms == 0 {
		return nil
	}
	s := msTime(ms)
	return &s
}

func (r deviceRow) device(currentFingerprint string) Device {
	typ := r.UA.DeviceType
	switch typ {
	case "desktop", "mobile", "tablet":
	default:
		typ = "other"
	}
	os := strings.TrimSpace(r.UA.OS + " " + r.UA.OSVersion)
	family := r.UA.DeviceFamily
	if family == "" || family == "Other" {
		family = "Unknown"
	}
	var risk float64
	switch r.Feedback.Latest {
	case "report":
		risk = 1
	}
	return Device{
		Token:       r.Token,
		Risk:        risk,
		ApprovedAt:  msTimePtr(r.Feedback.ApprovedMs),
		EscalatedAt: msTimePtr(r.Feedback.ReportedMs),
		MitigatedAt: msTimePtr(r.Feedback.MitigatedMs),
		UserID:      r.UserID,
		CreatedAt:   msTime(r.FirstSeenMs),
		LastSeenAt:  msTime(r.LastSeenMs),
		Fingerprint: r.Fingerprint,
		Context: DeviceContext{
			IP: r.LastIP,
			UserAgent: DeviceUserAgent{
				Raw: r.UA.Raw, Browser: r.UA.Browser, Version: r.UA.BrowserVersion, OS: os,
				Mobile: typ == "mobile", Platform: os, Device: family, Family: r.UA.Browser,
			},
			Properties: map[string]any{},
			Type:       typ,
		},
		IsCurrentDevice: currentFingerprint != "" && currentFingerprint == r.Fingerprint,
	}
}

// ErrNotFound is returned by Store lookups that match nothing.
var ErrNotFound = errors.New("api: not found")

// Store reads the device views of one ClickHouse database.
type Store struct {
	conn     driver.Conn
	database string
	timeout  time.Duration
	// erasures hides forgotten users from every read (WithPrivacy).
	erasures Erasures
}

// NewStore returns a Store.
func NewStore(conn driver.Conn, database string) *Store {
	return &Store{conn: conn, database: database, timeout: 10 * time.Second}
}

// devicesQuery selects devices from device_states (migration 0009), as
// Store.query scans them; where filters by app_id and user_id (the sort
// key's prefix) and more.
func (s *Store) devicesQuery(where string, limit int) string {
	return fmt.Sprintf(`SELECT user_id, device_token, fp, first_seen, seen, l.1, l.2, l.3, l.4, l.5, l.6, l.7, l.8, l.9
		FROM (SELECT user_id, device_token, anyMerge(fingerprint) AS fp, minMerge(first_seen_ms) AS first_seen,
			maxMerge(last_seen_ms) AS seen, argMaxMerge(last_event) AS l
			FROM %s.device_states WHERE %s GROUP BY user_id, device_token)
		ORDER BY seen DESC, device_token LIMIT %d`, schemas.QuoteIdent(s.database), where, limit)
}

// UserDevices returns a user's devices, most recently seen first.
func (s *Store) UserDevices(ctx context.Context, appID, userID string) ([]deviceRow, error) {
	q := s.devicesQuery("app_id = ? AND user_id = ?", 1000)
	// The devices and the commands about them are independent queries:
	// run them at once.
	var (
		cmds    userCommands
		cmdsErr error
		done    = make(chan struct{})
	)
	go func() {
		defer close(done)
		cmds, cmdsErr = s.commands(ctx, appID, userID)
	}()
	rows, err := s.query(ctx, q, appID, userID)
	<-done
	if err != nil {
		return nil, err
	}
	if cmdsErr != nil {
		return nil, cmdsErr
	}
	rows = cmds.apply(rows)
	return s.visibleDevices(ctx, appID, rows)
}

// Device returns one device of the app by token.
func (s *Store) Device(ctx context.Context, appID, token string) (deviceRow, error) {
	userID, err := s.deviceUser(ctx, appID, token)
	if err != nil {
		return deviceRow{}, err
	}
	q := s.devicesQuery("app_id = ? AND user_id = ? AND device_token = ?", 1)
	rows, err := s.query(ctx, q, appID, userID, token)
	if err != nil {
		return deviceRow{}, err
	}
	if len(rows) == 0 {
		return deviceRow{}, ErrNotFound
	}
	if rows, err = s.withFeedback(ctx, appID, rows[0].UserID, rows[:1]); err != nil {
		return deviceRow{}, err
	}
	if rows, err = s.visibleDevices(ctx, appID, rows); err != nil {
		return deviceRow{}, err
	} else if len(rows) == 0 {
		return deviceRow{}, ErrNotFound
	}
	return rows[0], nil
}

// deviceUser returns the user a device token belongs to (ErrNotFound when
// the app has no such device).
func (s *Store) deviceUser(ctx context.Context, appID, token string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	q := fmt.Sprintf(`SELECT user_id FROM %s.device_users WHERE app_id = ? AND device_token = ? LIMIT 1`, schemas.QuoteIdent(s.database))
	rows, err := s.conn.Query(ctx, q, appID, token)
	if err != nil {
		return "", fmt.Errorf("api: query device user: %w", err)
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return "", fmt.Errorf("api: read device user: %w", err)
		}
		return "", ErrNotFound
	}
	var userID string
	if err := rows.Scan(&userID); err != nil {
		return "", fmt.Errorf("api: scan device user: %w", err)
	}
	return userID, nil
}

// withFeedback fills in the device feedback of a user's devices.
// Devices the end user forgot (and that were not seen since) are left out.
func (s *Store) withFeedback(ctx context.Context, appID, userID string, rows []deviceRow) ([]deviceRow, error) {
	if len(rows) == 0 {
		return rows, nil
	}
	c, err := s.commands(ctx, appID, userID)
	if err != nil {
		return nil, err
	}
	return c.apply(rows), nil
}

// userCommands are the commands about one user's devices: the latest
// approve and report per device, and the latest account recoveries.
type userCommands struct {
	byToken                 map[string]feedback
	archivedMs, recoveredMs uint64
}

// apply sets each device's feedback. Archiving mitigates every device seen
// before it; recovering, every device reported before it.
func (c userCommands) apply(rows []deviceRow) []deviceRow {
	out := rows[:0]
	for i := range rows {
		f := c.byToken[rows[i].Token]
		if f.ForgottenMs != 0 && rows[i].LastSeenMs <= f.ForgottenMs {
			continue // forgotten by the end user, not seen since
		}
		if c.archivedMs != 0 && rows[i].FirstSeenMs <= c.archivedMs {
			f.MitigatedMs = c.archivedMs
		}
		if c.recoveredMs != 0 && f.ReportedMs != 0 && f.ReportedMs <= c.recoveredMs {
			f.MitigatedMs = max(f.MitigatedMs, c.recoveredMs)
		}
		rows[i].Feedback = f
		out = append(out, rows[i])
	}
	return out
}

// Device feedback kinds, as the devices API shows them: the end users'
// verify and activate approve a device like Castle's approve, their hijack
// reports it like Castle's report, and their forget and trust revocation
// withdraw an approval (a report stays).
const (
	approveKinds  = `'device.approve', 'device.verify', 'trust.activate'`
	reportKinds   = `'device.report', 'device.hijack'`
	withdrawKinds = `'device.forget', 'trust.revoke'`
)

// commands reads a user's device and account commands from the timeline
// in one query (the user's rows are contiguous in events' sort order).
func (s *Store) commands(ctx context.Context, appID, userID string) (userCommands, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	q := fmt.Sprintf(`SELECT target_device_token,
		maxIf(received_at_ms, kind IN (%[2]s)), maxIf(received_at_ms, kind IN (%[3]s)),
		maxIf(received_at_ms, kind IN (%[4]s)), maxIf(received_at_ms, kind = 'device.forget'),
		maxIf(received_at_ms, kind = 'user.archive_devices'), maxIf(received_at_ms, kind = 'user.recover')
		FROM %[1]s.events WHERE app_id = ? AND user_id = ?
		AND kind IN (%[2]s, %[3]s, %[4]s, 'user.archive_devices', 'user.recover')
		GROUP BY target_device_token`, schemas.QuoteIdent(s.database), approveKinds, reportKinds, withdrawKinds)
	res, err := s.conn.Query(ctx, q, appID, userID)
	if err != nil {
		return userCommands{}, fmt.Errorf("api: query device commands: %w", err)
	}
	defer res.Close()
	c := userCommands{byToken: map[string]feedback{}}
	for res.Next() {
		var token string
		var f feedback
		var withdrawn, archived, recovered uint64
		if err := res.Scan(&token, &f.ApprovedMs, &f.ReportedMs, &withdrawn, &f.ForgottenMs, &archived, &recovered); err != nil {
			return userCommands{}, fmt.Errorf("api: scan device commands: %w", err)
		}
		c.archivedMs, c.recoveredMs = max(c.archivedMs, archived), max(c.recoveredMs, recovered)
		if token == "" {
			continue
		}
		if withdrawn >= f.ApprovedMs {
			f.ApprovedMs = 0
		}
		switch {
		case f.ReportedMs > f.ApprovedMs:
			f.Latest = "report"
		case f.ApprovedMs > 0:
			f.Latest = "approve"
		}
		c.byToken[token] = f
	}
	if err := res.Err(); err != nil {
		return userCommands{}, fmt.Errorf("api: read device commands: %w", err)
	}
	return c, nil
}

// Visible reports whether the event is in the timeline yet.
func (s *Store) Visible(ctx context.Context, appID, userID, eventID string) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	q := fmt.Sprintf(`SELECT count() FROM %s.events WHERE app_id = ? AND user_id = ? AND id = toUUID(?)`, schemas.QuoteIdent(s.database))
	var n uint64
	if err := s.conn.QueryRow(ctx, q, appID, userID, eventID).Scan(&n); err != nil {
		return false, fmt.Errorf("api: query event visibility: %w", err)
	}
	return n > 0, nil
}

func (s *Store) query(ctx context.Context, q string, args ...any) ([]deviceRow, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	rows, err := s.conn.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("api: query devices: %w", err)
	}
	defer rows.Close()
	var out []deviceRow
	for rows.Next() {
		var r deviceRow
		if err := rows.Scan(&r.UserID, &r.Token, &r.Fingerprint, &r.FirstSeenMs, &r.LastSeenMs, &r.LastIP,
			&r.UA.Raw, &r.UA.Browser, &r.UA.BrowserVersion, &r.UA.OS, &r.UA.OSVersion, &r.UA.Platform,
			&r.UA.DeviceFamily, &r.UA.DeviceType); err != nil {
			return nil, fmt.Errorf("api: scan device: %w", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("api: read devices: %w", err)
	}
	return out, nil
}
