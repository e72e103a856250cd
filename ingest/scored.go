package ingest

import (
	"net/http"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/moat-dev/moat/internal/httpapi"
	"github.com/moat-dev/moat/schemas"
)

// scoredRoutes registers the calls answered with a decision.
func (h *Handler) scoredRoutes(g *echo.Group) {
	g.POST("/v1/risk", h.scored(schemas.KindRisk))
	g.POST("/v1/filter", h.scored(schemas.KindFilter))
	g.POST("/v1/authenticate", h.scored(schemas.KindAuthenticate))
	g.POST("/v1/authenticate.json", h.scored(schemas.KindAuthenticate))
}

// scored appends the call and answers 201 with the scorer's decision. On
// the app's deadline it answers with the app's failover (503 by default);
// the event is in the log either way and is scored and kept.
func (h *Handler) scored(kind schemas.Kind) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		app := httpapi.App(c)
		ev, err := h.decode(c, kind)
		if err != nil {
			return err
		}
		if ev.Options == nil {
			ev.Options = &schemas.Options{}
		}
		ev.Options.TestApp = app.Test
		ev.ReplyTo = h.replies.Instance()
		reply, done := h.replies.Await(ev.ID)
		defer done()
		if err := h.out.Append(c.Request().Context(), &ev); err != nil {
			h.log.Warn("event not accepted: broker unavailable", "event_id", ev.ID, "app_id", ev.AppID, "err", err)
			return ErrServiceUnavailable
		}
		timer := time.NewTimer(app.Risk.Timeout() - time.Since(start))
		defer timer.Stop()
		var d schemas.Decision
		select {
		case d = <-reply:
		case <-timer.C:
			action := app.Risk.FailoverAction()
			h.log.Warn("decision late; failing over", "event_id", ev.ID, "app_id", ev.AppID, "failover", action)
			if action == "" {
				return &APIError{Status: http.StatusServiceUnavailable, Type: TypeServiceUnavailable, Message: "Risk assessment timed out, please apply your failover"}
			}
			d = failoverDecision(ev, action)
		case <-c.Request().Context().Done():
			return c.Request().Context().Err()
		}
		if kind == schemas.KindAuthenticate {
			return c.JSON(http.StatusCreated, authenticateBody(&d))
		}
		return c.JSON(http.StatusCreated, riskBody(&d, expandAll(ev.Options)))
	}
}

func expandAll(o *schemas.Options) bool {
	for _, e := range o.Expand {
		if e == "all" {
			return true
		}
	}
	return false
}

func failoverDecision(ev schemas.Event, action string) schemas.Decision {
	return schemas.Decision{
		V: schemas.DecisionVersion, Event: ev, Action: action, Failover: true,
		Policy: &schemas.PolicyOutcome{Action: action, ID: "failover", Name: "Failover", RevisionID: "failover"},
	}
}

type scoreBody struct {
	Score float64 `json:"score"`
}

type policyBody struct {
	Action     string `json:"action"`
	Name       string `json:"name"`
	ID         string `json:"id"`
	RevisionID string `json:"revision_id"`
}

type riskPolicyBody struct {
	ID         string `json:"id"`
	RevisionID string `json:"revision_id"`
	Name       string `json:"name"`
	Type       string `json:"type"`
}

type deviceBody struct {
	Token       string `json:"token"`
	Fingerprint string `json:"fingerprint,omitempty"`
}

// RiskResponse is Castle's /v1/risk and /v1/filter response (§3.1). With
// expand it also carries the expanded event.
type RiskResponse struct {
	Risk           float64              `json:"risk"`
	Scores         map[string]scoreBody `json:"scores"`
	Policy         policyBody           `json:"policy"`
	Signals        map[string]struct{}  `json:"signals"`
	Metrics        map[string]struct{}  `json:"metrics"`
	Device         deviceBody           `json:"device"`
	Failover       bool                 `json:"failover,omitempty"`
	FailoverReason string               `json:"failover_reason,omitempty"`
	*Expanded
}

// Expanded is the event part of an expanded risk response. It has no
// top-level "type" key collision with errors: Castle clients that treat a
// top-level type as an error only see it when they asked for expand.
type Expanded struct {
	ID            string                 `json:"id"`
	Name          string                 `json:"name,omitempty"`
	Type          string                 `json:"type"`
	Status        string                 `json:"status,omitempty"`
	CreatedAt     string                 `json:"created_at"`
	Authenticated bool                   `json:"authenticated"`
	Endpoint      string                 `json:"endpoint"`
	IP            *expandedIP            `json:"ip,omitempty"`
	Email         *expandedEmail         `json:"email,omitempty"`
	User          *expandedUser          `json:"user,omitempty"`
	Properties    any                    `json:"properties"`
	Contributions []schemas.Contribution `json:"contributions"`
}

type expandedIP struct {
	Address string `json:"address"`
	Type    string `json:"type"`
	ASN     uint32 `json:"asn,omitempty"`
	ISP     *struct {
		Name string `json:"name"`
	} `json:"isp,omitempty"`
	Location *expandedLocation `json:"location,omitempty"`
	Privacy  expandedPrivacy   `json:"privacy"`
}

type expandedLocation struct {
	City        string  `json:"city,omitempty"`
	CountryCode string  `json:"country_code,omitempty"`
	RegionCode  string  `json:"region_code,omitempty"`
	Latitude    float64 `json:"latitude,omitempty"`
	Longitude   float64 `json:"longitude,omitempty"`
}

type expandedPrivacy struct {
	Anonymous  bool `json:"anonymous"`
	Datacenter bool `json:"datacenter"`
	Proxy      bool `json:"proxy"`
	Tor        bool `json:"tor"`
}

type expandedEmail struct {
	Normalized string `json:"normalized"`
	Domain     string `json:"domain"`
	Disposable bool   `json:"disposable"`
}

type expandedUser struct {
	ID    string `json:"id,omitempty"`
	Email string `json:"email,omitempty"`
	Name  string `json:"name,omitempty"`
	Phone string `json:"phone,omitempty"`
}

func policyOf(d *schemas.Decision) policyBody {
	if d.Policy == nil {
		return policyBody{Action: orAllow(d.Action)}
	}
	return policyBody{Action: d.Policy.Action, Name: d.Policy.Name, ID: d.Policy.ID, RevisionID: d.Policy.RevisionID}
}

func orAllow(a string) string {
	if a == "" {
		return "allow"
	}
	return a
}

func signalsOf(d *schemas.Decision) map[string]struct{} {
	out := make(map[string]struct{}, len(d.Signals))
	for _, s := range d.Signals {
		out[s] = struct{}{}
	}
	return out
}

func riskBody(d *schemas.Decision, expand bool) RiskResponse {
	r := RiskResponse{
		Risk: d.Risk,
		Scores: map[string]scoreBody{
			"account_takeover": {d.Scores.AccountTakeover},
			"account_abuse":    {d.Scores.AccountAbuse},
			"bot":              {d.Scores.Bot},
		},
		Policy:  policyOf(d),
		Signals: signalsOf(d),
		Metrics: map[string]struct{}{},
		Device:  deviceBody{Token: d.Device.Token, Fingerprint: d.Device.Fingerprint},
	}
	if d.Failover {
		r.Failover, r.FailoverReason = true, "timeout"
	}
	if !expand {
		return r
	}
	ev := &d.Event
	x := &Expanded{
		ID: ev.ID, Name: ev.Name, Type: ev.Type, Status: ev.Status,
		CreatedAt:     ev.ReceivedAt.UTC().Format("2006-01-02T15:04:05.000Z"),
		Authenticated: ev.Kind != schemas.KindFilter && ev.User.ID != "",
		Endpoint:      "/v1/" + string(ev.Kind),
		Properties:    rawOrEmpty(ev.Properties),
		Contributions: d.Contributions,
	}
	if x.Contributions == nil {
		x.Contributions = []schemas.Contribution{}
	}
	if ev.CreatedAt != nil {
		x.CreatedAt = ev.CreatedAt.UTC().Format("2006-01-02T15:04:05.000Z")
	}
	if ev.Context.IP != "" {
		ip := &expandedIP{Address: ev.Context.IP, Type: "ipv4"}
		if !isIPv4(ev.Context.IP) {
			ip.Type = "ipv6"
		}
		if i := d.IP; i != nil {
			ip.ASN = i.ASN
			if i.ISP != "" {
				ip.ISP = &struct {
					Name string `json:"name"`
				}{i.ISP}
			}
			if i.CountryCode != "" {
				ip.Location = &expandedLocation{City: i.City, CountryCode: i.CountryCode, RegionCode: i.Region, Latitude: i.Lat, Longitude: i.Lon}
			}
			ip.Privacy = expandedPrivacy{Anonymous: i.Proxy || i.Tor, Datacenter: i.Datacenter, Proxy: i.Proxy, Tor: i.Tor}
		}
		x.IP = ip
	}
	if e := d.Email; e != nil && e.Normalized != "" {
		x.Email = &expandedEmail{Normalized: e.Normalized, Domain: e.Domain, Disposable: e.Disposable}
	}
	if u := ev.User; u.ID != "" || u.Email != "" {
		x.User = &expandedUser{ID: u.ID, Email: u.Email, Name: u.Name, Phone: u.Phone}
	}
	r.Expanded = x
	return r
}

func rawOrEmpty(b []byte) any {
	if len(b) == 0 {
		return map[string]any{}
	}
	return rawJSON(b)
}

type rawJSON []byte

func (r rawJSON) MarshalJSON() ([]byte, error) { return r, nil }

func isIPv4(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == ':' {
			return false
		}
	}
	return true
}

// AuthenticateResponse is the legacy /v1/authenticate response (§3.2).
type AuthenticateResponse struct {
	Action         string              `json:"action"`
	UserID         string              `json:"user_id"`
	DeviceToken    string              `json:"device_token"`
	Risk           float64             `json:"risk"`
	Signals        map[string]struct{} `json:"signals"`
	Policy         policyBody          `json:"policy"`
	RiskPolicy     riskPolicyBody      `json:"risk_policy"`
	Failover       bool                `json:"failover,omitempty"`
	FailoverReason string              `json:"failover_reason,omitempty"`
}

func authenticateBody(d *schemas.Decision) AuthenticateResponse {
	p := policyOf(d)
	r := AuthenticateResponse{
		Action: p.Action, UserID: d.Event.User.ID, DeviceToken: d.Device.Token, Risk: d.Risk,
		Signals: signalsOf(d), Policy: p,
		RiskPolicy: riskPolicyBody{ID: p.ID, RevisionID: p.RevisionID, Name: p.Name, Type: "authentication"},
	}
	if d.Failover {
		r.Failover, r.FailoverReason = true, "timeout"
	}
	return r
}
