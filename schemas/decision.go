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
