// Package risk is Moat's pure scoring core: it turns one event, the device
// it came from, its enrichment and the user's bounded history into signals,
// scores (account takeover, account abuse, bot), a risk and a policy
// decision, and folds the event into the history.
//
// It does no I/O and reads no clock: the event's ReceivedAt is the time.
// Everything it outputs is ordered deterministically, so replaying the same
// events through an Engine in the same order gives identical assessments and
// identical serialized state. See docs/signals.md.
package risk

import (
	"github.com/moat-dev/moat/schemas"
)

// IPInfo is the enrichment of the event's IP address (filled by the scorer).
type IPInfo struct {
	CountryCode, Region, City string
	Lat, Lon                  float64
	ASN                       uint32
	ISP                       string
	Datacenter, Proxy, Tor    bool
	// Found says the address was located (Lat/Lon and CountryCode valid).
	Found bool
}

// EmailInfo is the enrichment of the user's email (filled by the scorer
// from internal/emailcheck whenever the event carries an email, in
// user.email or the filter params). A zero EmailInfo means "no email".
type EmailInfo struct {
	// Normalized is the mailbox shared by all its aliases (emailcheck's
	// Normalized); Domain its domain.
	Normalized, Domain string
	// Alias identifies the alias used: the address as given, lower-cased,
	// when it differs from Normalized (emailcheck's Aliased), else empty.
	Alias                        string
	Valid, Disposable, Generated bool
	// Address is the address as given. Optional: it keeps an address with
	// no '@' (which has no Normalized) visible to invalid_email.
	Address string
}

// Input is everything Assess looks at besides the user's state.
type Input struct {
	// Event is the event to assess; Event.ReceivedAt is THE clock.
	Event *schemas.Event
	// Device is the token, fingerprint and parsed user agent.
	Device schemas.Device
	IP     IPInfo
	Email  EmailInfo
	// Bot says the user agent matched a crawler list; BotName names it.
	Bot     bool
	BotName string
	// Trusted: the device was approved (takeover and risk pegged to 0).
	// Reported: the device was reported (takeover and risk pegged to 1).
	Trusted  bool
	Reported bool

	// Shared is the optional cross-user state keyed by IP, device
	// fingerprint and mailbox (high_activity_ip, high_activity_device,
	// multiple_accounts_per_device, cross-user credential_stuffing and
	// multiple_aliases_per_email). Nil: those signals are not computed.
	Shared Shared
	// DeviceIdentified says the fingerprint identifies one device (it
	// comes from a client id) rather than a kind of device (browser, OS and
	// language, shared by many users): only then is the device counted
	// across users (high_activity_device, multiple_accounts_per_device).
	DeviceIdentified bool
	// IPKey and EmailKey name the event's IP and mailbox in the cross-user
	// state and its observations (for example keyed hashes, so that the
	// state never holds them); empty: the IP and the normalized email.
	IPKey, EmailKey string
	// Policy overrides the engine's policy for this event (per-app
	// policies). Nil: Config.Policy.
	Policy *Policy
	// Lists are the ids of the lists the event's IP, device, email or user
	// is on (computed by the caller); rules can match them.
	Lists []string
}

// Contribution records how much one feature, signal or feedback moved one
// score, in log-odds (logit) units: positive raises the score.
type Contribution struct {
	// Score is account_takeover, account_abuse or bot.
	Score string `json:"score"`
	Name  string `json:"name"`
	// Kind is feature (account-takeover model), signal, base or feedback.
	Kind  string  `json:"kind"`
	Value float64 `json:"value"`
}

// Scores are the three scores in 0..1.
type Scores struct {
	AccountTakeover float64 `json:"account_takeover"`
	AccountAbuse    float64 `json:"account_abuse"`
	Bot             float64 `json:"bot"`
}

// Assessment is the outcome of scoring one event.
type Assessment struct {
	// Risk is the overall risk in 0..1: the largest of the three scores
	// (takeover pegged to 0 for a trusted device, risk pegged to 1 for a
	// reported one).
	Risk   float64 `json:"risk"`
	Scores Scores  `json:"scores"`
	// Signals are the Castle names of the signals that fired, sorted.
	Signals []string `json:"signals"`
	// Contributions explain the scores, sorted by score, then by
	// decreasing |value|, then by name.
	Contributions []Contribution `json:"contributions"`
	Policy        PolicyResult   `json:"policy"`
	// Feedback is "trusted", "reported" or empty.
	Feedback string `json:"feedback,omitempty"`
	// Lists are the Input.Lists, sorted (for policy rules).
	Lists []string `json:"lists,omitempty"`
	// Learned says the event was folded into the user's device, place and
	// network history (velocity counters always are).
	Learned bool `json:"learned"`
	// Shared are the cross-user counts the signals used (zero without
	// Input.Shared).
	Shared SharedCounts `json:"-"`
	// Observations are what the event tells the cross-user state about
	// its IP, device and mailbox, whether or not Input.Shared was given.
	Observations []schemas.Observation `json:"-"`
}

// Has reports whether signal name fired.
func (a *Assessment) Has(name string) bool {
	for _, s := range a.Signals {
		if s == name {
			return true
		}
	}
	return false
}

// Signal names (Castle's catalogue, reference §3.1) computed by this package.
// BruteForce is a Moat extension (Castle has no such name).
const (
	SigNewDevice                 = "new_device"
	SigNewCountry                = "new_country"
	SigNewISP                    = "new_isp"
	SigNewLanguage               = "new_language"
	SigNewOS                     = "new_os"
	SigNewDeviceType             = "new_device_type"
	SigImpossibleTravel          = "impossible_travel"
	SigBotBehavior               = "bot_behavior"
	SigWebCrawler                = "web_crawler"
	SigHeadlessBrowser           = "headless_browser"
	SigHTTPClientLibrary         = "http_client_library"
	SigMissingHeaders            = "missing_headers"
	SigInvalidDeviceData         = "invalid_device_data"
	SigMissingDeviceData         = "missing_device_data"
	SigProxyIP                   = "proxy_ip"
	SigDatacenterIP              = "datacenter_ip"
	SigTor                       = "tor"
	SigSpoofedDevice             = "spoofed_device"
	SigDisposableEmailDomain     = "disposable_email_domain"
	SigInvalidEmail              = "invalid_email"
	SigGeneratedEmail            = "generated_email"
	SigHighActivityAccount       = "high_activity_account"
	SigHighActivityIP            = "high_activity_ip"
	SigHighActivityDevice        = "high_activity_device"
	SigMultipleAccountsPerDevice = "multiple_accounts_per_device"
	SigMultipleAliasesPerEmail   = "multiple_aliases_per_email"
	SigCredentialStuffing        = "credential_stuffing"
	SigBruteForce                = "brute_force"
)

// Score names as used in Contribution.Score and policy rules.
const (
	ScoreRisk            = "risk"
	ScoreAccountTakeover = "account_takeover"
	ScoreAccountAbuse    = "account_abuse"
	ScoreBot             = "bot"
)

// Actions.
const (
	ActionAllow     = "allow"
	ActionChallenge = "challenge"
	ActionDeny      = "deny"
)
