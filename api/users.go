package api

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"
	"github.com/moat-dev/moat/internal/httpapi"
	"github.com/moat-dev/moat/schemas"
)

// DefaultVisibilityTimeout bounds how long a command waits for its event to
// reach the timeline before answering (see awaitVisible).
const DefaultVisibilityTimeout = 5 * time.Second

// ArchivedUser is the answer to PUT /v1/users/{user_id}/archive_devices.
type ArchivedUser struct {
	ID              string `json:"id"`
	DevicesArchived int    `json:"devices_archived"`
	ArchivedAt      string `json:"archived_at"`
}

// recovery handles PUT /v1/users/{user_id}/archive_devices and
// /v1/users/{user_id}/recover: Castle's account recovery. The command goes
// to the log keyed by the user; the scorer withdraws approvals (archive)
// and re-arms the security notifications, and the devices API reports
// mitigated_at on the devices it covered. Unknown users are 404.
func (h *Handler) recovery(kind schemas.Kind) echo.HandlerFunc {
	return func(c echo.Context) error {
		app := httpapi.App(c)
		userID := c.Param("user_id")
		if userID == "" || len(userID) > 1024 {
			return &httpapi.Error{Status: http.StatusUnprocessableEntity, Type: "invalid_parameters", Message: "user_id is invalid"}
		}
		ctx := c.Request().Context()
		rows, err := h.store.UserDevices(ctx, app.ID, userID)
		if err != nil {
			h.log.Warn("list devices", "app_id", app.ID, "err", err)
			return unavailable()
		}
		if len(rows) == 0 {
			return errNotFound
		}
		ev, err := h.command(ctx, app.ID, kind, userID, nil)
		if err != nil {
			return err
		}
		if kind == schemas.KindUserRecover {
			return c.NoContent(http.StatusNoContent)
		}
		return c.JSON(http.StatusOK, ArchivedUser{ID: userID, DevicesArchived: len(rows), ArchivedAt: msTime(uint64(ev.ReceivedAt.UnixMilli()))})
	}
}

// command appends a command about a user (and a device) to the log and
// waits until it is in the timeline, so that a read after the answer sees
// it.
func (h *Handler) command(ctx context.Context, appID string, kind schemas.Kind, userID string, dev *schemas.DeviceRef) (*schemas.Event, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return nil, fmt.Errorf("api: command id: %w", err)
	}
	ev := &schemas.Event{
		V: schemas.EnvelopeVersion, ID: id.String(), AppID: appID, Kind: kind,
		User: schemas.User{ID: userID}, Device: dev,
		ReceivedAt: time.Now().UTC().Truncate(time.Millisecond),
	}
	if err := h.out.Append(ctx, ev); err != nil {
		h.log.Warn("command not accepted: broker unavailable", "app_id", appID, "kind", kind, "err", err)
		return nil, errLogUnavailable
	}
	h.awaitVisible(ctx, ev)
	return ev, nil
}

// awaitVisible waits until the scorer and the projector have put a command
// into the timeline, at most h.visibleTimeout (Store.WaitVisible). The
// command is durable on the log either way: when the pipeline lags longer,
// the answer (which shows the new state) still goes out, and reads catch
// up as soon as the projector does.
func (h *Handler) awaitVisible(ctx context.Context, ev *schemas.Event) {
	if !h.store.WaitVisible(ctx, ev, h.visibleTimeout) {
		h.log.Warn("command answered before it reached the timeline", "app_id", ev.AppID, "kind", ev.Kind, "event_id", ev.ID)
	}
}

// WaitVisible waits until an event is in the timeline, at most timeout,
// and reports whether it is. Reads come from ClickHouse, so once a command
// is there, no read (from any api instance) shows the state before it.
func (s *Store) WaitVisible(ctx context.Context, ev *schemas.Event, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for wait := 20 * time.Millisecond; ; wait = min(wait*2, 200*time.Millisecond) {
		if ok, _ := s.Visible(ctx, ev.AppID, ev.User.ID, ev.ID); ok {
			return true
		}
		if time.Now().Add(wait).After(deadline) {
			return false
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(wait):
		}
	}
}
