package api

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"
	"github.com/moat-dev/moat/internal/httpapi"
	"github.com/moat-dev/moat/schemas"
)

// Trusted devices ("remember this device"). A trusted device is an
// approved one: activating trusts the device exactly as Castle's approve
// and the end-user verify do (later decisions from it are Trusted, risk 0,
// so the app can skip MFA), and revoking withdraws the approval.
//
// Activation tokens are issued to the app's backend after its MFA step,
// for the user's current device: 256 random bits, valid ActivationTTL.
// Only their SHA-256 leaves the api, in a trust.token event on the log;
// the scorer owning the user keeps it in the user's state (restored from
// the changelog after restarts) and consumes it with the first
// trust.activate naming it from the same device. Single use holds across
// api instances because the scorer is the user's single writer and applies
// the commands in log order.

// activationPrefix marks activation tokens.
const activationPrefix = "mat_"

// ActivationResponse is the answer of
// POST /v1/users/{user_id}/devices/activation_tokens.
type ActivationResponse struct {
	Token       string `json:"token"`
	ExpiresAt   string `json:"expires_at"`
	DeviceToken string `json:"device_token"`
}

// issueActivation serves POST /v1/users/{user_id}/devices/activation_tokens
// (API secret).
func (h *EndUserHandler) issueActivation(c echo.Context) error {
	app := httpapi.App(c)
	userID, req, err := tokenRequest(c)
	if err != nil {
		return err
	}
	if req.DeviceToken == "" && req.ClientID == "" {
		return invalidParam("device_token or client_id is required")
	}
	d, err := h.userDevice(c.Request().Context(), app.ID, userID, req)
	if err != nil {
		return err
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return fmt.Errorf("api: activation token: %w", err)
	}
	tok := activationPrefix + base64.RawURLEncoding.EncodeToString(raw)
	id, err := uuid.NewV7()
	if err != nil {
		return fmt.Errorf("api: command id: %w", err)
	}
	now := time.Now().UTC().Truncate(time.Millisecond)
	expires := now.Add(h.cfg.ActivationTTL)
	act, _ := json.Marshal(schemas.Activation{SHA256: tokenHash(tok), ExpiresAtMs: expires.UnixMilli()}) // strings and numbers
	ev := &schemas.Event{
		V: schemas.EnvelopeVersion, ID: id.String(), AppID: app.ID, Kind: schemas.KindTrustToken,
		User: schemas.User{ID: userID}, Device: &schemas.DeviceRef{Token: d.row.Token, Fingerprint: d.row.Fingerprint},
		Extra: map[string]json.RawMessage{schemas.ExtraActivation: act}, ReceivedAt: now,
	}
	// The activation that uses the token comes later on the same
	// partition, so the token is known to the scorer by then: no wait.
	if err := h.cfg.Out.Append(c.Request().Context(), ev); err != nil {
		h.log.Warn("activation token not issued: broker unavailable", "app_id", app.ID, "err", err)
		return errLogUnavailable
	}
	return c.JSON(http.StatusCreated, ActivationResponse{Token: tok, ExpiresAt: expires.Format(time.RFC3339), DeviceToken: d.row.Token})
}

func tokenHash(tok string) string {
	h := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(h[:])
}

// TrustedDevice is a device in the trusted devices API.
type TrustedDevice struct {
	ID         string `json:"id"`
	Name       string `json:"name"`
	Browser    string `json:"browser"`
	Platform   string `json:"platform"`
	DeviceType string `json:"device_type"`
	IPAddress  string `json:"ip_address"`
	TrustedAt  string `json:"trusted_at"`
	LastUsedAt string `json:"last_used_at"`
	IsCurrent  bool   `json:"is_current"`
}

func (h *EndUserHandler) trustedDevice(appID string, d *viewDevice, current string) TrustedDevice {
	ua := h.cfg.UA.Parse(d.row.UA.Raw)
	browser, platform := orUnknown(ua.Browser), platformLabel(ua)
	return TrustedDevice{
		ID: deviceUUID(appID, d.row.Token), Name: browser + " on " + platform, Browser: browser, Platform: platform,
		DeviceType: hardware(ua).Type, IPAddress: d.row.LastIP, TrustedAt: seconds(d.verifiedMs), LastUsedAt: seconds(d.row.LastSeenMs),
		IsCurrent: current != "" && current == d.row.Token,
	}
}

// GET /api/v1/devices: the user's trusted devices.
func (h *EndUserHandler) listTrusted(c echo.Context) error {
	cl := claims(c)
	v, err := h.view(c, cl)
	if err != nil {
		return err
	}
	out := []TrustedDevice{}
	for _, d := range v.devices {
		if d.status == statusVerified {
			out = append(out, h.trustedDevice(cl.AppID, d, cl.DeviceToken))
		}
	}
	return c.JSON(http.StatusOK, map[string]any{"data": out})
}

var errInvalidActivation = &httpapi.MessageError{Status: http.StatusUnprocessableEntity, Message: "The activation token is invalid or has expired."}

// POST /api/v1/devices/activate {"token": ...}: trusts the current device.
func (h *EndUserHandler) activate(c echo.Context) error {
	cl := claims(c)
	var body struct {
		Token           string `json:"token"`
		ActivationToken string `json:"activation_token"`
	}
	if err := c.Bind(&body); err != nil {
		if httpapi.IsTooLarge(err) {
			return err
		}
		return errInvalidBody
	}
	tok := strings.TrimSpace(body.Token)
	if tok == "" {
		tok = strings.TrimSpace(body.ActivationToken)
	}
	if tok == "" || len(tok) > 256 {
		return errInvalidBody
	}
	if cl.DeviceToken == "" {
		return errForbidden
	}
	v, err := h.view(c, cl)
	if err != nil {
		return err
	}
	d := v.byToken(cl.DeviceToken)
	if d == nil {
		return errDeviceNotFound
	}
	if d.status == statusHijacked {
		return errForbidden
	}
	act, _ := json.Marshal(schemas.Activation{SHA256: tokenHash(tok)}) // a string
	dec, err := h.command(c, cl, schemas.KindTrustActivate, &schemas.DeviceRef{Token: d.row.Token, Fingerprint: d.row.Fingerprint},
		map[string]json.RawMessage{schemas.ExtraActivation: act})
	if err != nil {
		return err
	}
	if !dec.Trusted {
		return errInvalidActivation
	}
	d.status, d.verifiedMs = statusVerified, uint64(dec.Event.ReceivedAt.UnixMilli())
	return c.JSON(http.StatusOK, map[string]any{"message": "Device activated successfully", "data": h.trustedDevice(cl.AppID, d, cl.DeviceToken)})
}

// POST /api/v1/devices/skip: the user declined to trust the current
// device; the event in the timeline records it.
func (h *EndUserHandler) skip(c echo.Context) error {
	cl := claims(c)
	if cl.DeviceToken == "" {
		return errForbidden
	}
	if _, err := h.command(c, cl, schemas.KindTrustSkip, &schemas.DeviceRef{Token: cl.DeviceToken}, nil); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]string{"message": "Device activation skipped"})
}

// DELETE /api/v1/devices/{device_id}: revokes the trust of one of the
// user's trusted devices.
func (h *EndUserHandler) revoke(c echo.Context) error {
	cl := claims(c)
	v, err := h.view(c, cl)
	if err != nil {
		return err
	}
	d := v.device(cl.AppID, c.Param("device_id"))
	if d == nil || d.status != statusVerified {
		return errDeviceNotFound
	}
	if cur := v.byToken(cl.DeviceToken); cur != nil && cur.status == statusHijacked {
		return errForbidden
	}
	if _, err := h.command(c, cl, schemas.KindTrustRevoke, &schemas.DeviceRef{Token: d.row.Token, Fingerprint: d.row.Fingerprint}, nil); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]string{"message": "Trusted device revoked"})
}
