package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"
	"github.com/moat-dev/moat/internal/apps"
	"github.com/moat-dev/moat/internal/endpoints"
	"github.com/moat-dev/moat/internal/httpapi"
	"github.com/moat-dev/moat/schemas"
	"github.com/moat-dev/moat/webhooker"
)

// Limits of endpoint fields.
const (
	maxEndpointURL         = 2048
	maxEndpointDescription = 512
	maxEndpointID          = 128
)

// Sources of an endpoint, as WebhookEndpoint.Source shows them.
const (
	SourceAPI    = "api"
	SourceConfig = "config"
)

// WebhookEndpoint is a webhook endpoint as the API shows it. Secrets are
// never shown, except Secret in the answer of a create or a rotation.
type WebhookEndpoint struct {
	ID          string `json:"id"`
	URL         string `json:"url"`
	Description string `json:"description"`
	// Types it subscribed to; empty: every type.
	Types   []string `json:"types"`
	Enabled bool     `json:"enabled"`
	// Source is "api" (managed here) or "config" (the apps file; read-only).
	Source string `json:"source"`
	// SecretHints are the masked active secrets, newest first.
	SecretHints []string `json:"secret_hints"`
	CreatedAt   *string  `json:"created_at"`
	UpdatedAt   *string  `json:"updated_at"`
	// Secret is the new signing secret: only in the answer of the create
	// or of a rotation, never again.
	Secret string `json:"secret,omitempty"`
}

// WebhookEndpointList is the list envelope.
type WebhookEndpointList struct {
	TotalCount int               `json:"total_count"`
	Data       []WebhookEndpoint `json:"data"`
}

// WebhookTest answers POST /v1/webhooks/endpoints/{id}/test.
type WebhookTest struct {
	// ID is the test notification's id; DeliveryID the X-Moat-Delivery-Id
	// it is delivered with (and the delivery log's delivery_id).
	ID         string `json:"id"`
	Type       string `json:"type"`
	EndpointID string `json:"endpoint_id"`
	DeliveryID string `json:"delivery_id"`
}

// WithEndpoints serves the webhook endpoint routes with m (which needs a
// running endpoints.Table).
func (h *Handler) WithEndpoints(m *endpoints.Manager) *Handler {
	h.endpoints = m
	return h
}

func (h *Handler) endpointRoutes(g *echo.Group) {
	g.POST("/v1/webhooks/endpoints", h.createEndpoint)
	g.GET("/v1/webhooks/endpoints", h.listEndpoints)
	g.GET("/v1/webhooks/endpoints/:endpoint_id", h.getEndpoint)
	g.PATCH("/v1/webhooks/endpoints/:endpoint_id", h.updateEndpoint)
	g.DELETE("/v1/webhooks/endpoints/:endpoint_id", h.deleteEndpoint)
	g.POST("/v1/webhooks/endpoints/:endpoint_id/test", h.testEndpoint)
}

func invalidParam(format string, args ...any) *httpapi.Error {
	return &httpapi.Error{Status: http.StatusUnprocessableEntity, Type: "invalid_parameters", Message: fmt.Sprintf(format, args...)}
}

func readOnlyEndpoint(id string) *httpapi.Error {
	return &httpapi.Error{Status: http.StatusConflict, Type: "read_only",
		Message: fmt.Sprintf("Endpoint %q is defined in the apps file and is read-only through the API; change it there", id)}
}

// endpointErr renders a Manager error.
func (h *Handler) endpointErr(app apps.App, what string, err error) error {
	switch {
	case errors.Is(err, endpoints.ErrNotFound):
		return errNotFound
	case errors.Is(err, endpoints.ErrLimit):
		return invalidParam("Too many endpoints: an app may have at most %d", h.endpoints.MaxPerApp())
	case errors.Is(err, endpoints.ErrUnavailable):
		h.log.Warn("webhook endpoints: "+what+" failed: registry unavailable", "app_id", app.ID, "err", err)
		return errLogUnavailable
	}
	return fmt.Errorf("api: %s endpoint: %w", what, err)
}

// configEndpoint returns the apps-file endpoint id of app.
func configEndpoint(app apps.App, id string) (apps.Webhook, bool) {
	for _, w := range app.Webhooks {
		if w.ID == id && id != "" {
			return w, true
		}
	}
	return apps.Webhook{}, false
}

func showTime(t time.Time) *string {
	if t.IsZero() {
		return nil
	}
	s := t.UTC().Format("2006-01-02T15:04:05.000Z07:00")
	return &s
}

func showManaged(e endpoints.Endpoint) WebhookEndpoint {
	return WebhookEndpoint{
		ID: e.ID, URL: e.URL, Description: e.Description, Types: nonNil(e.Types), Enabled: e.Enabled,
		Source: SourceAPI, SecretHints: nonNil(e.SecretHints), CreatedAt: showTime(e.CreatedAt), UpdatedAt: showTime(e.UpdatedAt),
	}
}

func showConfig(w apps.Webhook) WebhookEndpoint {
	hints := []string{}
	for _, s := range w.Secrets {
		hints = append(hints, endpoints.Hint(s))
	}
	return WebhookEndpoint{ID: w.ID, URL: w.URL, Types: nonNil(slices.Clone(w.Types)), Enabled: true, Source: SourceConfig, SecretHints: hints}
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// listEndpoints handles GET /v1/webhooks/endpoints: the apps file's
// endpoints, then the API-managed ones, oldest first.
func (h *Handler) listEndpoints(c echo.Context) error {
	app := httpapi.App(c)
	managed, err := h.endpoints.List(c.Request().Context(), app.ID)
	if err != nil {
		return h.endpointErr(app, "list", err)
	}
	out := WebhookEndpointList{Data: []WebhookEndpoint{}}
	for _, w := range app.Webhooks {
		out.Data = append(out.Data, showConfig(w))
	}
	for _, e := range managed {
		if _, shadowed := configEndpoint(app, e.ID); !shadowed {
			out.Data = append(out.Data, showManaged(e))
		}
	}
	out.TotalCount = len(out.Data)
	return c.JSON(http.StatusOK, out)
}

// getEndpoint handles GET /v1/webhooks/endpoints/{id}.
func (h *Handler) getEndpoint(c echo.Context) error {
	app := httpapi.App(c)
	id := c.Param("endpoint_id")
	if w, ok := configEndpoint(app, id); ok {
		return c.JSON(http.StatusOK, showConfig(w))
	}
	if id == "" || len(id) > maxEndpointID {
		return errNotFound
	}
	e, err := h.endpoints.Get(c.Request().Context(), app.ID, id)
	if err != nil {
		return h.endpointErr(app, "get", err)
	}
	return c.JSON(http.StatusOK, showManaged(e))
}

// createEndpoint handles POST /v1/webhooks/endpoints.
func (h *Handler) createEndpoint(c echo.Context) error {
	app := httpapi.App(c)
	f, err := readFields(c, "url", "description", "types", "enabled")
	if err != nil {
		return err
	}
	spec := endpoints.Spec{Enabled: true}
	u, err := f.str("url")
	if err != nil {
		return err
	}
	if u == nil {
		return invalidParam("url is required")
	}
	if spec.URL, err = checkURL(*u, app.AllowPrivateEndpoints); err != nil {
		return err
	}
	if spec.Description, err = f.description(); err != nil {
		return err
	}
	if t, err := f.types(); err != nil {
		return err
	} else if t != nil {
		spec.Types = *t
	}
	if b, err := f.boolean("enabled"); err != nil {
		return err
	} else if b != nil {
		spec.Enabled = *b
	}
	e, secret, err := h.endpoints.Create(c.Request().Context(), app.ID, spec)
	if err != nil {
		return h.endpointErr(app, "create", err)
	}
	out := showManaged(e)
	out.Secret = secret
	return c.JSON(http.StatusCreated, out)
}

// updateEndpoint handles PATCH /v1/webhooks/endpoints/{id}.
func (h *Handler) updateEndpoint(c echo.Context) error {
	app := httpapi.App(c)
	id := c.Param("endpoint_id")
	if _, ok := configEndpoint(app, id); ok {
		return readOnlyEndpoint(id)
	}
	if id == "" || len(id) > maxEndpointID {
		return errNotFound
	}
	f, err := readFields(c, "url", "description", "types", "enabled", "rotate_secret", "revoke_previous_secret")
	if err != nil {
		return err
	}
	var p endpoints.Patch
	if u, err := f.str("url"); err != nil {
		return err
	} else if u != nil {
		s, err := checkURL(*u, app.AllowPrivateEndpoints)
		if err != nil {
			return err
		}
		p.URL = &s
	}
	if _, ok := f["description"]; ok {
		d, err := f.description()
		if err != nil {
			return err
		}
		p.Description = &d
	}
	if p.Types, err = f.types(); err != nil {
		return err
	}
	if p.Enabled, err = f.boolean("enabled"); err != nil {
		return err
	}
	for _, flag := range []struct {
		name string
		dst  *bool
	}{{"rotate_secret", &p.RotateSecret}, {"revoke_previous_secret", &p.RevokePrevious}} {
		b, err := f.boolean(flag.name)
		if err != nil {
			return err
		}
		*flag.dst = b != nil && *b
	}
	e, secret, err := h.endpoints.Update(c.Request().Context(), app.ID, id, p)
	if err != nil {
		return h.endpointErr(app, "update", err)
	}
	out := showManaged(e)
	out.Secret = secret
	return c.JSON(http.StatusOK, out)
}

// deleteEndpoint handles DELETE /v1/webhooks/endpoints/{id}.
func (h *Handler) deleteEndpoint(c echo.Context) error {
	app := httpapi.App(c)
	id := c.Param("endpoint_id")
	if _, ok := configEndpoint(app, id); ok {
		return readOnlyEndpoint(id)
	}
	if id == "" || len(id) > maxEndpointID {
		return errNotFound
	}
	if err := h.endpoints.Delete(c.Request().Context(), app.ID, id); err != nil {
		return h.endpointErr(app, "delete", err)
	}
	return c.NoContent(http.StatusNoContent)
}

// testEndpoint handles POST /v1/webhooks/endpoints/{id}/test: a $webhook.test
// notification addressed to that endpoint goes to the incidents topic, so
// it takes the normal delivery path (signing, retries, delivery log).
func (h *Handler) testEndpoint(c echo.Context) error {
	app := httpapi.App(c)
	id := c.Param("endpoint_id")
	ctx := c.Request().Context()
	if _, ok := configEndpoint(app, id); !ok {
		if id == "" || len(id) > maxEndpointID {
			return errNotFound
		}
		if _, err := h.endpoints.Get(ctx, app.ID, id); err != nil {
			return h.endpointErr(app, "test", err)
		}
	}
	nid, err := uuid.NewV7()
	if err != nil {
		return fmt.Errorf("api: notification id: %w", err)
	}
	now := time.Now().UTC().Truncate(time.Millisecond)
	data, err := json.Marshal(map[string]string{
		"id": nid.String(), "endpoint_id": id, "message": "This is a test notification from Moat.",
	})
	if err != nil {
		return fmt.Errorf("api: encode test notification: %w", err)
	}
	n := &schemas.Notification{
		V: schemas.NotificationVersion, ID: nid.String(), AppID: app.ID, Type: schemas.NotifyWebhookTest,
		CreatedAt: now, EndpointID: id, Data: data,
	}
	if err := h.endpoints.Notify(ctx, n); err != nil {
		return h.endpointErr(app, "test", err)
	}
	return c.JSON(http.StatusAccepted, WebhookTest{
		ID: n.ID, Type: n.Type, EndpointID: id, DeliveryID: webhooker.DeliveryID(app.ID, id, n.ID),
	})
}

// fields is a JSON object body, field by field.
type fields map[string]json.RawMessage

// readFields reads a JSON object body with only the allowed fields: 400 for
// a body that is not a JSON object, 422 naming an unknown field.
func readFields(c echo.Context, allowed ...string) (fields, error) {
	raw, err := io.ReadAll(c.Request().Body)
	if err != nil {
		if httpapi.IsTooLarge(err) {
			return nil, httpapi.TooLarge(0)
		}
		return nil, &httpapi.Error{Status: http.StatusBadRequest, Type: "bad_request", Message: "Could not read the request body"}
	}
	var f fields
	if err := json.Unmarshal(raw, &f); err != nil || f == nil {
		return nil, &httpapi.Error{Status: http.StatusBadRequest, Type: "bad_request", Message: "Malformed JSON body: want a JSON object"}
	}
	for name := range f {
		if !slices.Contains(allowed, name) {
			return nil, invalidParam("%s is not a known field (allowed: %s)", name, strings.Join(allowed, ", "))
		}
	}
	return f, nil
}

// str returns string field name (nil when absent).
func (f fields) str(name string) (*string, error) {
	raw, ok := f[name]
	if !ok {
		return nil, nil
	}
	var s string
	if json.Unmarshal(raw, &s) != nil || string(raw) == "null" {
		return nil, invalidParam("%s must be a string", name)
	}
	return &s, nil
}

// boolean returns boolean field name (nil when absent).
func (f fields) boolean(name string) (*bool, error) {
	raw, ok := f[name]
	if !ok {
		return nil, nil
	}
	var b bool
	if json.Unmarshal(raw, &b) != nil || string(raw) == "null" {
		return nil, invalidParam("%s must be true or false", name)
	}
	return &b, nil
}

// description returns the description field ("" when absent).
func (f fields) description() (string, error) {
	d, err := f.str("description")
	if err != nil || d == nil {
		return "", err
	}
	if n := utf8.RuneCountInString(*d); n > maxEndpointDescription {
		return "", invalidParam("description is longer than %d characters", maxEndpointDescription)
	}
	return *d, nil
}

// types returns the types field (nil when absent; empty for null or [],
// which mean every type), each a known notification type.
func (f fields) types() (*[]string, error) {
	raw, ok := f["types"]
	if !ok {
		return nil, nil
	}
	var ts []string
	if err := json.Unmarshal(raw, &ts); err != nil {
		return nil, invalidParam("types must be an array of notification types")
	}
	known := schemas.NotificationTypes()
	for i, t := range ts {
		if !slices.Contains(known, t) {
			return nil, invalidParam("types[%d] %q is not a notification type (one of %s)", i, t, strings.Join(known, ", "))
		}
	}
	if ts == nil {
		ts = []string{}
	}
	return &ts, nil
}

// checkURL validates an endpoint URL: http or https, at most
// maxEndpointURL characters, with a host that is not obviously loopback,
// private or reserved unless allowPrivate (the webhooker checks every
// resolved address again when it connects). Cloud metadata addresses are
// refused always.
func checkURL(raw string, allowPrivate bool) (string, error) {
	switch {
	case raw == "":
		return "", invalidParam("url is required")
	case len(raw) > maxEndpointURL:
		return "", invalidParam("url is longer than %d characters", maxEndpointURL)
	case strings.TrimSpace(raw) != raw || strings.ContainsAny(raw, " \t\r\n"):
		return "", invalidParam("url must not contain white space")
	}
	u, err := url.Parse(raw)
	if err != nil || u.Opaque != "" {
		return "", invalidParam("url is not a valid URL")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", invalidParam("url must be http or https")
	}
	host := strings.ToLower(strings.TrimSuffix(u.Hostname(), "."))
	if host == "" {
		return "", invalidParam("url has no host")
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		if err := webhooker.CheckAddr(ip, allowPrivate); err != nil {
			return "", invalidParam("url points to a loopback, private, reserved or metadata address (%s); the app's allow_private_endpoints setting permits private ones", ip)
		}
	} else if !allowPrivate && (host == "localhost" || strings.HasSuffix(host, ".localhost") ||
		strings.HasSuffix(host, ".local") || strings.HasSuffix(host, ".internal")) {
		return "", invalidParam("url points to a local or internal host name (%s); the app's allow_private_endpoints setting permits it", host)
	}
	return raw, nil
}
