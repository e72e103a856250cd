package api

import (
	"context"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/moat-dev/moat/internal/bearer"
	"github.com/moat-dev/moat/internal/httpapi"
	"github.com/moat-dev/moat/scorer/fingerprint"
)

const claimsKey = "moat.bearer"

// claims returns the bearer claims of an authenticated end-user request.
// It panics when the route is not behind Authenticate (a wiring bug).
func claims(c echo.Context) bearer.Claims { return c.Get(claimsKey).(bearer.Claims) }

// Authenticate is the end-user routes' authentication
// (httpapi.WithBearer): first the client IP's rate limit (unauthenticated
// attempts count too), then the bearer token's signature and expiry, its
// app, and the token's own rate limit. Every failure is the same 401, so a
// client learns nothing about why; the token is never logged.
func (h *EndUserHandler) Authenticate(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if ok, wait := h.cfg.IPLimit.Allow("ip:" + clientIP(c)); !ok {
			return tooManyAttempts(wait)
		}
		scheme, tok, ok := strings.Cut(c.Request().Header.Get("Authorization"), " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") {
			return errUnauthenticated
		}
		cl, err := h.cfg.Signer.Verify(strings.TrimSpace(tok))
		if err != nil {
			return errUnauthenticated
		}
		app, ok := h.cfg.Apps.Get(cl.AppID)
		if !ok {
			return errUnauthenticated
		}
		if ok, wait := h.cfg.TokenLimit.Allow("token:" + cl.ID); !ok {
			return tooManyAttempts(wait)
		}
		httpapi.SetApp(c, app)
		c.Set(claimsKey, cl)
		return next(c)
	}
}

// TokenRequest is the body of POST /v1/users/{user_id}/tokens and of
// POST /v1/users/{user_id}/devices/activation_tokens: the user's current
// device, by its token (from a risk response) or by the Castle client id.
type TokenRequest struct {
	DeviceToken string `json:"device_token"`
	ClientID    string `json:"client_id"`
}

// TokenResponse is the answer of POST /v1/users/{user_id}/tokens.
type TokenResponse struct {
	Token       string `json:"token"`
	TokenType   string `json:"token_type"`
	ExpiresAt   string `json:"expires_at"`
	ExpiresIn   int    `json:"expires_in"`
	UserID      string `json:"user_id"`
	DeviceToken string `json:"device_token,omitempty"`
}

// issueToken serves POST /v1/users/{user_id}/tokens (API secret): a bearer
// token for one user of the app and, optionally, their current device,
// which must be one of the user's devices.
func (h *EndUserHandler) issueToken(c echo.Context) error {
	app := httpapi.App(c)
	userID, req, err := tokenRequest(c)
	if err != nil {
		return err
	}
	device := ""
	if req.DeviceToken != "" || req.ClientID != "" {
		d, err := h.userDevice(c.Request().Context(), app.ID, userID, req)
		if err != nil {
			return err
		}
		device = d.row.Token
	}
	tok, cl, err := h.cfg.Signer.Issue(app.ID, userID, device)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, TokenResponse{
		Token: tok, TokenType: "Bearer", ExpiresAt: cl.ExpiresAt().Format(time.RFC3339),
		ExpiresIn: int(h.cfg.Signer.TTL().Seconds()), UserID: userID, DeviceToken: device,
	})
}

func tokenRequest(c echo.Context) (string, TokenRequest, error) {
	userID := c.Param("user_id")
	if userID == "" || len(userID) > 1024 {
		return "", TokenRequest{}, invalidParam("user_id is invalid")
	}
	var req TokenRequest
	if c.Request().ContentLength != 0 {
		if err := c.Bind(&req); err != nil {
			if httpapi.IsTooLarge(err) {
				return "", req, err
			}
			return "", req, &httpapi.Error{Status: http.StatusBadRequest, Type: "bad_request", Message: "Request body is not valid JSON"}
		}
	}
	if len(req.DeviceToken) > 256 || len(req.ClientID) > 256 {
		return "", req, invalidParam("device_token is invalid")
	}
	return userID, req, nil
}

// userDevice finds the user's device a backend request names (404 when it
// is not one of the user's devices).
func (h *EndUserHandler) userDevice(ctx context.Context, appID, userID string, req TokenRequest) (*viewDevice, error) {
	ctx, cancel := context.WithTimeout(ctx, readTimeout)
	defer cancel()
	v, err := h.loadView(ctx, appID, userID)
	if err != nil {
		h.log.Warn("read user devices", "app_id", appID, "err", err)
		return nil, unavailable()
	}
	if req.DeviceToken != "" {
		if d := v.byToken(req.DeviceToken); d != nil {
			return d, nil
		}
		return nil, errNotFound
	}
	fp := h.cfg.FP.Fingerprint(appID, fingerprint.Attributes{ClientID: req.ClientID})
	for _, d := range v.devices { // most recently seen first
		if d.row.Fingerprint == fp {
			return d, nil
		}
	}
	return nil, errNotFound
}
