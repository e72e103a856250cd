package api

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"
	"github.com/moat-dev/moat/internal/httpapi"
	"github.com/moat-dev/moat/schemas"
)

// Review is Castle's legacy review object: a $succeeded event a policy
// challenged ($review.opened carries its id).
type Review struct {
	ID      string        `json:"id"`
	UserID  string        `json:"user_id"`
	Context ReviewContext `json:"context"`

	// email and receivedMs say whether the event's user was forgotten.
	email      string
	receivedMs uint64
}

// ReviewContext is where the reviewed event came from.
type ReviewContext struct {
	IP        string          `json:"ip"`
	UserAgent ReviewUserAgent `json:"user_agent"`
	Location  *ReviewLocation `json:"location"`
}

// ReviewUserAgent is the legacy parsed user agent of a review.
type ReviewUserAgent struct {
	Raw     string `json:"raw"`
	Browser string `json:"browser"`
	Mobile  bool   `json:"mobile"`
	OS      string `json:"os"`
	Version string `json:"version"`
}

// ReviewLocation is the review's geolocation.
type ReviewLocation struct {
	CountryCode string `json:"country_code"`
	City        string `json:"city"`
}

// review handles GET /v1/reviews/{review_id} (and, as Castle's reference
// lists it, /v1/reviews/{review_id}.json).
func (h *Handler) review(c echo.Context) error {
	app := httpapi.App(c)
	id := strings.TrimSuffix(c.Param("review_id"), ".json")
	if len(id) != 36 {
		return errNotFound
	}
	r, err := h.store.Review(c.Request().Context(), app.ID, id)
	if err == ErrNotFound {
		return errNotFound
	}
	if err != nil {
		h.log.Warn("get review", "app_id", app.ID, "err", err)
		return unavailable()
	}
	return c.JSON(http.StatusOK, r)
}

// Review reads the challenged $succeeded event id of the app.
func (s *Store) Review(ctx context.Context, appID, id string) (Review, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	q := fmt.Sprintf(`SELECT toString(id), user_id, ip, ua_raw, ua_browser, ua_browser_version, ua_os, ua_device_type, ip_country, ip_city,
		user_email, received_at_ms
		FROM %s.events FINAL
		WHERE app_id = ? AND id = toUUID(?) AND action = 'challenge' AND status = '$succeeded' LIMIT 1`, schemas.QuoteIdent(s.database))
	rows, err := s.conn.Query(ctx, q, appID, id)
	if err != nil {
		return Review{}, fmt.Errorf("api: query review: %w", err)
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return Review{}, fmt.Errorf("api: read review: %w", err)
		}
		return Review{}, ErrNotFound
	}
	var r Review
	var deviceType, country, city string
	if err := rows.Scan(&r.ID, &r.UserID, &r.Context.IP, &r.Context.UserAgent.Raw, &r.Context.UserAgent.Browser,
		&r.Context.UserAgent.Version, &r.Context.UserAgent.OS, &deviceType, &country, &city, &r.email, &r.receivedMs); err != nil {
		return Review{}, fmt.Errorf("api: scan review: %w", err)
	}
	r.Context.UserAgent.Mobile = deviceType == "mobile"
	if country != "" {
		r.Context.Location = &ReviewLocation{CountryCode: country, City: city}
	}
	if err := s.visibleEvent(ctx, appID, r.UserID, r.email, r.receivedMs); err != nil {
		return Review{}, err
	}
	return r, nil
}
