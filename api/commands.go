package api

import (
	"context"
	"net/http"

	"github.com/labstack/echo/v4"
	"github.com/moat-dev/moat/internal/httpapi"
	"github.com/moat-dev/moat/schemas"
)

// Appender appends commands to the event log (ingest.Producer).
type Appender interface {
	Append(ctx context.Context, ev *schemas.Event) error
}

// feedback handles PUT /v1/devices/{token}/approve and /report: the command
// goes to the log, keyed like the user's events, so the scorer that owns
// the user applies it in order with the user's logins; the response shows
// the device with the feedback applied, and a read after it shows it too
// (Handler.command).
func (h *Handler) feedback(kind schemas.Kind) echo.HandlerFunc {
	return func(c echo.Context) error {
		app := httpapi.App(c)
		token := c.Param("device_token")
		if token == "" || len(token) > 256 {
			return errNotFound
		}
		ctx := c.Request().Context()
		r, err := h.store.Device(ctx, app.ID, token)
		if err == ErrNotFound {
			return errNotFound
		}
		if err != nil {
			h.log.Error("get device", "app_id", app.ID, "err", err)
			return unavailable()
		}
		ev, err := h.command(ctx, app.ID, kind, r.UserID, &schemas.DeviceRef{Token: r.Token, Fingerprint: r.Fingerprint})
		if err != nil {
			return err
		}
		now := ev.ReceivedAt
		fb := r.Feedback
		if kind == schemas.KindDeviceApprove {
			fb.ApprovedMs, fb.Latest = uint64(now.UnixMilli()), "approve"
		} else {
			fb.ReportedMs, fb.Latest = uint64(now.UnixMilli()), "report"
		}
		r.Feedback = fb
		return c.JSON(http.StatusOK, r.device(""))
	}
}
