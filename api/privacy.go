package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"
	"github.com/moat-dev/moat/internal/httpapi"
	"github.com/moat-dev/moat/internal/privacy"
	"github.com/moat-dev/moat/schemas"
)

// Erasures is what reads need from the registry of forgotten users
// (internal/privacy.Registry).
type Erasures interface {
	// Sync waits until the registry holds every deletion committed so far.
	Sync(ctx context.Context) error
	// DeletedAt returns when an identifier of the app was last deleted.
	DeletedAt(appID, typ, identifier string) (time.Time, bool)
	// Forgotten reports whether data about userID or email dated at is
	// erased.
	Forgotten(appID, userID, email string, at time.Time) bool
}

// privacySide is the privacy API's registry and writer.
type privacySide struct {
	reg *privacy.Registry
	w   *privacy.Writer
}

// WithPrivacy serves Castle's privacy API with reg (running, caught up
// before the api serves) and w, and makes every read of the handler's
// store hide the users reg names.
func (h *Handler) WithPrivacy(reg *privacy.Registry, w *privacy.Writer) *Handler {
	h.privacy = &privacySide{reg: reg, w: w}
	h.store.erasures = reg
	return h
}

func (h *Handler) privacyRoutes(g *echo.Group) {
	g.DELETE("/v1/privacy/users", h.privacyDelete)
	g.DELETE("/v1/privacy/users/:user_id", h.privacyDeleteLegacy)
	g.GET("/v1/privacy/users/:user_id/export", h.privacyExport)
	if h.out != nil {
		g.POST("/v1/privacy/users", h.privacyAccess)
		g.POST("/v1/privacy/users/:user_id", h.privacyAccessLegacy)
	}
}

// accepted is the answer to every privacy request: 202 with an empty JSON
// object (SDKs parse the body of every answer).
func accepted(c echo.Context) error { return c.JSON(http.StatusAccepted, struct{}{}) }

// privacyBody is the body of POST and DELETE /v1/privacy/users.
type privacyBody struct {
	Identifier     json.RawMessage `json:"identifier"`
	IdentifierType json.RawMessage `json:"identifier_type"`
}

// maxIdentifier bounds user ids and emails.
const maxIdentifier = 1024

// subject reads the request body's identifier: 400 when it is not JSON,
// 422 when the identifier or its type is missing or invalid.
func subject(c echo.Context) (privacy.Subject, error) {
	raw, err := io.ReadAll(c.Request().Body)
	if err != nil {
		if httpapi.IsTooLarge(err) {
			return privacy.Subject{}, httpapi.TooLarge(0)
		}
		return privacy.Subject{}, &httpapi.Error{Status: http.StatusBadRequest, Type: "bad_request", Message: "Could not read the request body"}
	}
	var b privacyBody
	if err := json.Unmarshal(raw, &b); err != nil {
		return privacy.Subject{}, &httpapi.Error{Status: http.StatusBadRequest, Type: "bad_request", Message: "Malformed JSON body"}
	}
	var typ string
	if json.Unmarshal(b.IdentifierType, &typ) != nil || !privacy.ValidType(typ) {
		return privacy.Subject{}, &httpapi.Error{Status: http.StatusUnprocessableEntity, Type: "invalid_parameters", Message: "identifier_type must be $id or $email"}
	}
	id, ok := idString(b.Identifier)
	if typ == privacy.TypeEmail {
		id = privacy.NormalizeEmail(id)
		ok = ok && strings.Contains(id, "@")
	}
	if !ok || id == "" || len(id) > maxIdentifier {
		return privacy.Subject{}, &httpapi.Error{Status: http.StatusUnprocessableEntity, Type: "invalid_parameters", Message: "identifier is missing or invalid"}
	}
	return privacy.Subject{Type: typ, Identifier: id}, nil
}

func legacySubject(c echo.Context) (privacy.Subject, error) {
	id := c.Param("user_id")
	if id == "" || len(id) > maxIdentifier {
		return privacy.Subject{}, &httpapi.Error{Status: http.StatusUnprocessableEntity, Type: "invalid_parameters", Message: "user_id is invalid"}
	}
	return privacy.Subject{Type: privacy.TypeID, Identifier: id}, nil
}

// privacyDelete handles DELETE /v1/privacy/users: erasure by user id or
// email.
func (h *Handler) privacyDelete(c echo.Context) error {
	s, err := subject(c)
	if err != nil {
		return err
	}
	return h.erase(c, s)
}

// privacyDeleteLegacy handles DELETE /v1/privacy/users/{user_id}.
func (h *Handler) privacyDeleteLegacy(c echo.Context) error {
	s, err := legacySubject(c)
	if err != nil {
		return err
	}
	return h.erase(c, s)
}

// erase records the deletion of s in one Kafka transaction: the registry
// records (the identifier and, for an email, every user id seen with it
// in the timeline) and the user.delete commands that make the scorer drop
// the users' state and the projector erase their rows. It answers 202 once
// that committed (503 when Kafka does not acknowledge it), and from then
// on no read of this or any other api instance shows the user's data
// (reads wait for the registry to catch up).
func (h *Handler) erase(c echo.Context, s privacy.Subject) error {
	app := httpapi.App(c)
	ctx := c.Request().Context()
	at := time.Now().UTC().Truncate(time.Millisecond)
	subjects := []privacy.Subject{s}
	var users []string
	email := ""
	switch s.Type {
	case privacy.TypeID:
		users = []string{s.Identifier}
	case privacy.TypeEmail:
		email = s.Identifier
		ids, err := h.store.UserIDsByEmail(ctx, app.ID, email)
		if err != nil {
			h.log.Warn("privacy delete: look up the email's users", "app_id", app.ID, "err", err)
			return unavailable()
		}
		users = ids
		for _, id := range ids {
			subjects = append(subjects, privacy.Subject{Type: privacy.TypeID, Identifier: id})
		}
	}
	var commands []*schemas.Event
	newCommand := func(u schemas.User) error {
		id, err := uuid.NewV7()
		if err != nil {
			return fmt.Errorf("api: command id: %w", err)
		}
		commands = append(commands, &schemas.Event{V: schemas.EnvelopeVersion, ID: id.String(), AppID: app.ID,
			Kind: schemas.KindUserDelete, User: u, ReceivedAt: at})
		return nil
	}
	if email != "" {
		if err := newCommand(schemas.User{Email: email}); err != nil {
			return err
		}
	}
	for _, u := range users {
		if err := newCommand(schemas.User{ID: u}); err != nil {
			return err
		}
	}
	if err := h.privacy.w.Erase(ctx, app.ID, subjects, commands, at); err != nil {
		h.log.Warn("privacy delete not accepted: broker unavailable", "app_id", app.ID, "err", err)
		return errLogUnavailable
	}
	for _, u := range users {
		h.privacy.reg.Note(app.ID, u, "", at)
	}
	h.privacy.reg.Note(app.ID, "", email, at)
	// Never the identifier: deletion requests are logged without it.
	h.log.Info("privacy delete recorded", "app_id", app.ID, "identifier_type", s.Type, "users", len(users))
	return accepted(c)
}

// privacyAccess handles POST /v1/privacy/users: a data-access request. It
// is recorded in the timeline (an event of kind user.access); the data is
// read with GET /v1/privacy/users/{user_id}/export.
func (h *Handler) privacyAccess(c echo.Context) error {
	s, err := subject(c)
	if err != nil {
		return err
	}
	return h.access(c, s)
}

// privacyAccessLegacy handles POST /v1/privacy/users/{user_id} (no body).
func (h *Handler) privacyAccessLegacy(c echo.Context) error {
	s, err := legacySubject(c)
	if err != nil {
		return err
	}
	return h.access(c, s)
}

func (h *Handler) access(c echo.Context, s privacy.Subject) error {
	app := httpapi.App(c)
	id, err := uuid.NewV7()
	if err != nil {
		return fmt.Errorf("api: command id: %w", err)
	}
	ev := &schemas.Event{V: schemas.EnvelopeVersion, ID: id.String(), AppID: app.ID, Kind: schemas.KindUserAccess,
		ReceivedAt: time.Now().UTC().Truncate(time.Millisecond)}
	if s.Type == privacy.TypeEmail {
		ev.User.Email = s.Identifier
	} else {
		ev.User.ID = s.Identifier
	}
	if err := h.out.Append(c.Request().Context(), ev); err != nil {
		h.log.Warn("privacy access request not accepted: broker unavailable", "app_id", app.ID, "err", err)
		return errLogUnavailable
	}
	h.log.Info("privacy access request recorded", "app_id", app.ID, "identifier_type", s.Type, "event_id", ev.ID)
	return accepted(c)
}

// Export is a user's data as Moat keeps it in ClickHouse: every event of
// the timeline (at most maxExportEvents, oldest first) and every device.
type Export struct {
	Identifier     string          `json:"identifier"`
	IdentifierType string          `json:"identifier_type"`
	UserIDs        []string        `json:"user_ids"`
	ExportedAt     string          `json:"exported_at"`
	Events         []ExportedEvent `json:"events"`
	// Truncated says there were more than maxExportEvents events.
	Truncated bool     `json:"truncated"`
	Devices   []Device `json:"devices"`
}

// ExportedEvent is one event of an export.
type ExportedEvent struct {
	ID          string            `json:"id"`
	Kind        string            `json:"kind"`
	Type        string            `json:"type,omitempty"`
	Status      string            `json:"status,omitempty"`
	Name        string            `json:"name,omitempty"`
	UserID      string            `json:"user_id,omitempty"`
	Email       string            `json:"email,omitempty"`
	Traits      json.RawMessage   `json:"traits,omitempty"`
	IP          string            `json:"ip,omitempty"`
	Headers     map[string]string `json:"headers,omitempty"`
	Properties  json.RawMessage   `json:"properties,omitempty"`
	CreatedAt   *string           `json:"created_at"`
	ReceivedAt  string            `json:"received_at"`
	DeviceToken string            `json:"device_token,omitempty"`
	Risk        float64           `json:"risk"`
	Action      string            `json:"action,omitempty"`
	Signals     []string          `json:"signals"`
}

// maxExportEvents bounds one export.
const maxExportEvents = 10000

// privacyExport handles GET /v1/privacy/users/{user_id}/export (with
// ?identifier_type=$email the path names an email): the user's events and
// devices as JSON; 404 when Moat keeps nothing about them, which is also
// the answer after a delete.
func (h *Handler) privacyExport(c echo.Context) error {
	app := httpapi.App(c)
	ctx := c.Request().Context()
	s := privacy.Subject{Type: privacy.TypeID, Identifier: c.Param("user_id")}
	if t := c.QueryParam("identifier_type"); t != "" {
		s.Type = t
	}
	if s.Type == privacy.TypeEmail {
		s.Identifier = privacy.NormalizeEmail(s.Identifier)
	}
	if !privacy.ValidType(s.Type) || s.Identifier == "" || len(s.Identifier) > maxIdentifier {
		return &httpapi.Error{Status: http.StatusUnprocessableEntity, Type: "invalid_parameters", Message: "identifier or identifier_type is invalid"}
	}
	out, err := h.store.Export(ctx, app.ID, s)
	if errors.Is(err, ErrNotFound) {
		return errNotFound
	}
	if err != nil {
		h.log.Warn("privacy export", "app_id", app.ID, "err", err)
		return unavailable()
	}
	return c.JSON(http.StatusOK, out)
}

// UserIDsByEmail returns the user ids the app's events were sent with
// email (normalized), at most 1000.
func (s *Store) UserIDsByEmail(ctx context.Context, appID, email string) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	q := fmt.Sprintf(`SELECT DISTINCT user_id FROM %s.events WHERE app_id = ? AND lowerUTF8(user_email) = ? AND user_id != ''
		ORDER BY user_id LIMIT 1000`, schemas.QuoteIdent(s.database))
	rows, err := s.conn.Query(ctx, q, appID, email)
	if err != nil {
		return nil, fmt.Errorf("api: query the users of an email: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("api: scan a user of an email: %w", err)
		}
		out = append(out, id)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("api: read the users of an email: %w", err)
	}
	return out, nil
}

// Export reads what the timeline and the device view hold about a user id
// or an email (and the user ids seen with it), without what was erased.
func (s *Store) Export(ctx context.Context, appID string, sub privacy.Subject) (Export, error) {
	out := Export{Identifier: sub.Identifier, IdentifierType: sub.Type, ExportedAt: msTime(uint64(time.Now().UnixMilli())),
		UserIDs: []string{}, Events: []ExportedEvent{}, Devices: []Device{}}
	var users []string
	where, args := "user_id = ?", []any{appID, sub.Identifier}
	if sub.Type == privacy.TypeEmail {
		ids, err := s.UserIDsByEmail(ctx, appID, sub.Identifier)
		if err != nil {
			return Export{}, err
		}
		users = ids
		where, args = "lowerUTF8(user_email) = ?", []any{appID, sub.Identifier}
		if len(ids) > 0 {
			where, args = "(lowerUTF8(user_email) = ? OR has(?, user_id))", append(args, ids)
		}
	} else {
		users = []string{sub.Identifier}
	}
	events, err := s.exportEvents(ctx, where, args)
	if err != nil {
		return Export{}, err
	}
	if s.erasures != nil && len(events) > 0 {
		if err := s.erasures.Sync(ctx); err != nil {
			return Export{}, fmt.Errorf("api: privacy registry: %w", err)
		}
	}
	for _, ev := range events {
		if s.erasures != nil && s.erasures.Forgotten(appID, ev.UserID, ev.Email, time.UnixMilli(ev.receivedMs)) {
			continue
		}
		if len(out.Events) == maxExportEvents {
			out.Truncated = true
			break
		}
		out.Events = append(out.Events, ev.ExportedEvent)
	}
	for _, u := range users {
		rows, err := s.UserDevices(ctx, appID, u)
		if err != nil {
			return Export{}, err
		}
		if len(rows) > 0 || slicesContainsUser(out.Events, u) {
			out.UserIDs = append(out.UserIDs, u)
		}
		for _, r := range rows {
			out.Devices = append(out.Devices, r.device(""))
		}
	}
	if len(out.Events) == 0 && len(out.Devices) == 0 {
		return Export{}, ErrNotFound
	}
	return out, nil
}

func slicesContainsUser(evs []ExportedEvent, user string) bool {
	for _, e := range evs {
		if e.UserID == user {
			return true
		}
	}
	return false
}

type exportRow struct {
	ExportedEvent
	receivedMs int64
}

func (s *Store) exportEvents(ctx context.Context, where string, args []any) ([]exportRow, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	q := fmt.Sprintf(`SELECT toString(id), kind, type, status, name, user_id, user_email, user_traits, ip, header_names, header_values,
		properties, created_at_ms, received_at_ms, device_token, risk, action, signals
		FROM %s.events FINAL WHERE app_id = ? AND %s ORDER BY received_at_ms, id LIMIT %d`, schemas.QuoteIdent(s.database), where, maxExportEvents+1)
	rows, err := s.conn.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("api: query export: %w", err)
	}
	defer rows.Close()
	var out []exportRow
	for rows.Next() {
		var (
			r             exportRow
			traits, props string
			names, values []string
			createdMs     int64
			receivedMs    uint64
		)
		if err := rows.Scan(&r.ID, &r.Kind, &r.Type, &r.Status, &r.Name, &r.UserID, &r.Email, &traits, &r.IP, &names, &values,
			&props, &createdMs, &receivedMs, &r.DeviceToken, &r.Risk, &r.Action, &r.Signals); err != nil {
			return nil, fmt.Errorf("api: scan export: %w", err)
		}
		if traits != "" {
			r.Traits = json.RawMessage(traits)
		}
		if props != "" {
			r.Properties = json.RawMessage(props)
		}
		if len(names) > 0 && len(names) == len(values) {
			r.Headers = make(map[string]string, len(names))
			for i, n := range names {
				r.Headers[n] = values[i]
			}
		}
		if createdMs != 0 {
			t := msTime(uint64(createdMs))
			r.CreatedAt = &t
		}
		r.receivedMs = int64(receivedMs)
		r.ReceivedAt = msTime(receivedMs)
		if r.Signals == nil {
			r.Signals = []string{}
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("api: read export: %w", err)
	}
	return out, nil
}

// visibleDevices leaves out of rows what was erased: a device whose
// aggregate holds data from before its user's deletion is hidden until
// the projector has erased and rebuilt it, and feedback given before the
// deletion no longer counts. It first waits for the registry to hold every
// committed deletion, so a read after a delete on any api instance does
// not show the user.
func (s *Store) visibleDevices(ctx context.Context, appID string, rows []deviceRow) ([]deviceRow, error) {
	if s.erasures == nil || len(rows) == 0 {
		return rows, nil
	}
	if err := s.erasures.Sync(ctx); err != nil {
		return nil, fmt.Errorf("api: privacy registry: %w", err)
	}
	out := rows[:0]
	for _, r := range rows {
		t, ok := s.erasures.DeletedAt(appID, privacy.TypeID, r.UserID)
		if !ok {
			out = append(out, r)
			continue
		}
		ms := uint64(t.UnixMilli())
		if r.FirstSeenMs <= ms {
			continue
		}
		f := &r.Feedback
		if f.ApprovedMs <= ms {
			f.ApprovedMs = 0
		}
		if f.ReportedMs <= ms {
			f.ReportedMs = 0
		}
		if f.MitigatedMs <= ms {
			f.MitigatedMs = 0
		}
		switch {
		case f.ApprovedMs == 0 && f.ReportedMs == 0:
			f.Latest = ""
		case f.ApprovedMs == 0:
			f.Latest = "report"
		case f.ReportedMs == 0:
			f.Latest = "approve"
		}
		out = append(out, r)
	}
	return out, nil
}

// visibleEvent returns ErrNotFound when an event of the timeline is about
// a forgotten user.
func (s *Store) visibleEvent(ctx context.Context, appID, userID, email string, receivedMs uint64) error {
	if s.erasures == nil {
		return nil
	}
	if err := s.erasures.Sync(ctx); err != nil {
		return fmt.Errorf("api: privacy registry: %w", err)
	}
	if s.erasures.Forgotten(appID, userID, email, time.UnixMilli(int64(receivedMs))) {
		return ErrNotFound
	}
	return nil
}
