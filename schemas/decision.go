package schemas

// DecisionVersion is the version of Decision written by this build.
const DecisionVersion = 1

// Decision is what the scorer derived from one Event: the device it came
// from and, as the risk engine grows, the scores, signals and policy
// outcome. It carries the full event so that the projector needs no join.
//
// Decisions are deterministic: replaying the same events gives the same
// decisions, so downstream views can be rebuilt from the log.
type Decision struct {
	V     int   `json:"v"`
	Event Event `json:"event"`
	// Device is the device the event came from. Token is empty when the
	// event carries no device data at all (for example an identify call
	// without context).
	Device Device `json:"device"`
	// Risk is the overall risk in 0..1 and Action the policy outcome
	// (allow, challenge, deny); both are empty until the risk engine scores
	// the event.
	Risk   float64 `json:"risk"`
	Action string  `json:"action,omitempty"`
	// Scores are the per-threat scores in 0..1.
	Scores Scores `json:"scores"`
	// Signals are the Castle signal names that fired, sorted.
	Signals []string `json:"signals,omitempty"`
	// Policy is the policy outcome that gave Action.
	Policy *PolicyOutcome `json:"policy,omitempty"`
	// Contributions explain the scores: which feature or signal added how
	// much.
	Contributions []Contribution `json:"contributions,omitempty"`
	// IP and Email are the enrichments the decision used.
	IP    *IPInfo    `json:"ip,omitempty"`
	Email *EmailInfo `json:"email,omitempty"`
	// Trusted says the device was approved or trusted by feedback.
	Trusted bool `json:"trusted,omitempty"`
	// Lists are the list items the app's policy conditions matched, looked
	// up in the lists as of scoring time (lists change: a replay under
	// other lists may match others, and this records what was used).
	Lists []ListMatch `json:"lists,omitempty"`
	// Impersonated marks an event sent while the user was impersonated: it
	// was not scored and taught nothing.
	Impersonated bool `json:"impersonated,omitempty"`
	// Sessions are the user's sessions this event started, extended or
	// ended, each with its new state.
	Sessions []SessionChange `json:"sessions,omitempty"`
	// Failover is set on replies ingest synthesized when the scorer did not
	// answer in time (never on the decisions topic).
	Failover bool `json:"-"`
	// Observations are what the event told the cross-user state about its
	// IP, device and mailbox; the scorer writes them to TopicObservations
	// (never part of the decision record).
	Observations []Observation `json:"-"`
}

// Scores are Castle's per-threat scores.
type Scores struct {
	AccountTakeover float64 `json:"account_takeover"`
	AccountAbuse    float64 `json:"account_abuse"`
	Bot             float64 `json:"bot"`
}

// PolicyOutcome names the policy rule that decided.
type PolicyOutcome struct {
	Action     string `json:"action"`
	ID         string `json:"id"`
	Name       string `json:"name"`
	RevisionID string `json:"revision_id"`
}

// Contribution is one term of a score.
type Contribution struct {
	Name  string  `json:"name"`
	Kind  string  `json:"kind"`
	Value float64 `json:"value"`
}

// IPInfo is what Moat knows about an IP address.
type IPInfo struct {
	CountryCode string  `json:"country_code,omitempty"`
	Region      string  `json:"region,omitempty"`
	City        string  `json:"city,omitempty"`
	Lat         float64 `json:"lat,omitempty"`
	Lon         float64 `json:"lon,omitempty"`
	ASN         uint32  `json:"asn,omitempty"`
	ISP         string  `json:"isp,omitempty"`
	Datacenter  bool    `json:"datacenter,omitempty"`
	Proxy       bool    `json:"proxy,omitempty"`
	Tor         bool    `json:"tor,omitempty"`
}

// EmailInfo is what Moat knows about an email address.
type EmailInfo struct {
	Normalized string `json:"normalized,omitempty"`
	Domain     string `json:"domain,omitempty"`
	Disposable bool   `json:"disposable,omitempty"`
	Valid      bool   `json:"valid,omitempty"`
}

// Device identifies an end user's browser or app.
type Device struct {
	// Token is the unguessable device token returned to apps: a keyed hash
	// bound to app, user and fingerprint.
	Token string `json:"token,omitempty"`
	// Fingerprint is a keyed hash of stable request attributes; the raw
	// attributes are never stored.
	Fingerprint string    `json:"fingerprint,omitempty"`
	UserAgent   UserAgent `json:"user_agent"`
}

// UserAgent is a parsed User-Agent header.
type UserAgent struct {
	Raw            string `json:"raw,omitempty"`
	Browser        string `json:"browser,omitempty"`
	BrowserVersion string `json:"browser_version,omitempty"`
	BrowserMajor   string `json:"browser_major,omitempty"`
	// BrowserType is browser, library (curl, okhttp, ...) or bot.
	BrowserType string `json:"browser_type,omitempty"`
	// Engine is Blink, Gecko, WebKit, Trident or empty when unknown.
	Engine    string `json:"engine,omitempty"`
	OS        string `json:"os,omitempty"`
	OSVersion string `json:"os_version,omitempty"`
	OSMajor   string `json:"os_major,omitempty"`
	// Platform is the OS family: Windows, macOS, iOS, Android, Linux,
	// ChromeOS or Other.
	Platform     string `json:"platform,omitempty"`
	DeviceFamily string `json:"device_family,omitempty"`
	DeviceBrand  string `json:"device_brand,omitempty"`
	DeviceModel  string `json:"device_model,omitempty"`
	// DeviceType is desktop, mobile, tablet, bot or unknown.
	DeviceType string `json:"device_type,omitempty"`
}
