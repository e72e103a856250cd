// Package schemas holds Moat's contracts: the versioned event envelope that
// ingest appends to the log, the records the scorer and the webhooker
// exchange, the topic names, and the ClickHouse migrations that store them.
//
// It imports no Kafka, HTTP or ClickHouse client, so every role can depend on
// it. Changes are add-only within a version: a rename or a removal means a new
// version number and a new topic.
package schemas

import (
	"encoding/json"
	"strings"
	"time"
)

// EnvelopeVersion is the version of Event written by this build.
const EnvelopeVersion = 1

// Kind says which API call produced an event.
type Kind string

// The kinds of calls ingest accepts. Device commands get their own kinds
// when they are added; consumers must skip kinds they do not know.
const (
	KindTrack        Kind = "track"
	KindIdentify     Kind = "identify"
	KindLog          Kind = "log"
	KindRisk         Kind = "risk"
	KindFilter       Kind = "filter"
	KindAuthenticate Kind = "authenticate"
	// Device feedback commands (Castle's devices API): the app approves
	// (trusts) or reports (flags as compromised) one of the user's devices.
	KindDeviceApprove Kind = "device.approve"
	KindDeviceReport  Kind = "device.report"
	// Impersonation commands: while a user is impersonated (support staff
	// acting as them), their events are kept, marked, and neither create
	// devices nor change scores.
	KindImpersonateStart Kind = "impersonate.start"
	KindImpersonateEnd   Kind = "impersonate.end"
	// Account recovery commands (Castle's archive_devices and recover):
	// archiving marks every device seen so far as mitigated and withdraws
	// their approvals; recovering marks the reported devices as mitigated.
	// Both re-arm the once-per-device security notifications.
	KindUserArchiveDevices Kind = "user.archive_devices"
	KindUserRecover        Kind = "user.recover"
	// Privacy commands (Castle's privacy API, docs/privacy.md): an access
	// request is recorded in the timeline; a delete makes the scorer forget
	// the user and the projector erase the user's rows (the command itself
	// is never stored in ClickHouse).
	KindUserAccess Kind = "user.access"
	KindUserDelete Kind = "user.delete"
	// End-user commands (/api/devices, /api/v1/devices), given with a
	// bearer token about the user's own devices (see Kind.EndUser).
	KindDeviceVerify  Kind = "device.verify"
	KindDeviceHijack  Kind = "device.hijack"
	KindDeviceForget  Kind = "device.forget"
	KindDeviceSignout Kind = "device.signout"
	KindTrustToken    Kind = "trust.token"
	KindTrustActivate Kind = "trust.activate"
	KindTrustSkip     Kind = "trust.skip"
	KindTrustRevoke   Kind = "trust.revoke"
)

// Known reports whether k is a kind this build understands.
func (k Kind) Known() bool {
	switch k {
	case KindTrack, KindIdentify, KindLog, KindRisk, KindFilter, KindAuthenticate, KindDeviceApprove, KindDeviceReport,
		KindImpersonateStart, KindImpersonateEnd, KindUserArchiveDevices, KindUserRecover,
		KindUserAccess, KindUserDelete:
		return true
	}
	return k.EndUser()
}

// EndUser reports whether k is an end-user command: device.verify,
// device.hijack, device.forget and device.signout (end-user device
// management), trust.token (an activation token was issued; the event
// holds only its SHA-256), trust.activate, trust.skip and trust.revoke
// (trusted devices). They name their device in Device.
func (k Kind) EndUser() bool {
	switch k {
	case KindDeviceVerify, KindDeviceHijack, KindDeviceForget, KindDeviceSignout,
		KindTrustToken, KindTrustActivate, KindTrustSkip, KindTrustRevoke:
		return true
	}
	return false
}

// Event is the envelope of every call ingest accepted. It is the unit of the
// event log (TopicEvents); everything else is derived from it.
type Event struct {
	// V is the envelope version (EnvelopeVersion when written).
	V int `json:"v"`
	// ID is server generated, unique and time sortable (UUIDv7).
	ID string `json:"id"`
	// AppID is the tenant the call authenticated as.
	AppID string `json:"app_id"`
	// Kind is the API call (track, log, risk, ...).
	Kind Kind `json:"kind"`
	// Type is the event type ("$login"); Status its status ("$succeeded");
	// Name the custom name ($custom events, or legacy non-$ events).
	Type   string `json:"type,omitempty"`
	Status string `json:"status,omitempty"`
	Name   string `json:"name,omitempty"`
	// LegacyEvent keeps the original dot-style name ("$login.succeeded")
	// when the call used the legacy `event` field.
	LegacyEvent string `json:"legacy_event,omitempty"`
	// User is who the event is about (empty ID for anonymous events).
	User User `json:"user"`
	// Context is the end user's request as the app saw it.
	Context Context `json:"context"`
	// Properties are the app's free-form properties (a JSON object).
	Properties json.RawMessage `json:"properties,omitempty"`
	// Params are the filter call's form parameters (email, phone, username).
	Params json.RawMessage `json:"params,omitempty"`
	// MatchingUserID is the filter call's matching user.
	MatchingUserID string `json:"matching_user_id,omitempty"`
	// Extra keeps the structured objects of the current API that Moat does
	// not model yet (session, product, authentication_method, changeset,
	// transaction, address, review_id, device_token), verbatim.
	Extra map[string]json.RawMessage `json:"extra,omitempty"`
	// Options are the per-call flags of risk and filter.
	Options *Options `json:"options,omitempty"`
	// CreatedAt is the client's event time, SentAt the SDK's send time.
	CreatedAt *time.Time `json:"created_at,omitempty"`
	SentAt    *time.Time `json:"sent_at,omitempty"`
	// ReceivedAt is when ingest accepted the call (UTC, millisecond precision).
	ReceivedAt time.Time `json:"received_at"`
	// Device names the device a command is about (device kinds only).
	Device *DeviceRef `json:"device,omitempty"`
	// ReplyTo names the ingest instance waiting for this event's decision
	// (risk, filter and authenticate calls); the scorer then also writes the
	// decision to TopicReplies.
	ReplyTo string `json:"reply_to,omitempty"`
}

// User identifies the account an event is about.
type User struct {
	ID           string          `json:"id,omitempty"`
	Email        string          `json:"email,omitempty"`
	Phone        string          `json:"phone,omitempty"`
	Name         string          `json:"name,omitempty"`
	RegisteredAt *time.Time      `json:"registered_at,omitempty"`
	Traits       json.RawMessage `json:"traits,omitempty"`
}

// Context describes the end user's request.
type Context struct {
	IP string `json:"ip,omitempty"`
	// Headers are the end user's request headers, names lower-cased with
	// '_' folded to '-'. A value "true" marks a header the SDK scrubbed.
	Headers map[string]string `json:"headers,omitempty"`
	// RequestToken is the browser/mobile SDK token (Castle request_token).
	RequestToken string `json:"request_token,omitempty"`
	// ClientID is the legacy Castle client id (__cid cookie).
	ClientID string `json:"client_id,omitempty"`
	// Library is the server SDK that sent the call.
	Library *Library `json:"library,omitempty"`
}

// DeviceRef identifies a device in a command.
type DeviceRef struct {
	Token       string `json:"token"`
	Fingerprint string `json:"fingerprint"`
}

// Library names the server SDK that sent a call.
type Library struct {
	Name    string `json:"name,omitempty"`
	Version string `json:"version,omitempty"`
}

// Options are per-call flags of the risk and filter APIs.
type Options struct {
	SkipRequestTokenValidation bool     `json:"skip_request_token_validation,omitempty"`
	SkipContextValidation      bool     `json:"skip_context_validation,omitempty"`
	Expand                     []string `json:"expand,omitempty"`
	// TestApp is set by ingest for sandbox apps: Castle test request
	// tokens ("test|policy.action:deny|risk:0.9") then force the decision.
	TestApp bool `json:"test_app,omitempty"`
}

// Header returns the value of the named header (case-insensitive, '_' and
// '-' equivalent) and whether it was sent.
func (c Context) Header(name string) (string, bool) {
	v, ok := c.Headers[NormalizeHeaderName(name)]
	return v, ok
}

// NormalizeHeaderName lower-cases a header name and folds '_' to '-', so
// "User_Agent", "USER-AGENT" and "user-agent" are one header.
func NormalizeHeaderName(name string) string {
	return strings.ReplaceAll(strings.ToLower(strings.TrimSpace(name)), "_", "-")
}

// SplitLegacyEvent turns a legacy dot-style event name into type and status:
// "$login.succeeded" is ("$login", "$succeeded"). Names that do not start
// with '$' are custom events: ("$custom", "") with the name kept by the
// caller. A '$' name without a dot is a type with no status.
func SplitLegacyEvent(event string) (typ, status string) {
	if !strings.HasPrefix(event, "$") {
		return "$custom", ""
	}
	i := strings.LastIndexByte(event, '.')
	if i <= 0 || i == len(event)-1 {
		return event, ""
	}
	return event[:i], "$" + event[i+1:]
}

// Key is the record key of the event on the log: app and user id, or the
// request token, client id or IP when there is no user, so that one user's
// (or one anonymous visitor's) events stay in order on one partition.
func (e *Event) Key() []byte {
	sub := e.User.ID
	switch {
	case sub != "":
		sub = "u:" + sub
	case e.Context.RequestToken != "":
		sub = "t:" + e.Context.RequestToken
	case e.Context.ClientID != "":
		sub = "c:" + e.Context.ClientID
	default:
		sub = "i:" + e.Context.IP
	}
	return []byte(e.AppID + "\x00" + sub)
}

// Email is the email the event is about: the user's, or the form email of
// a filter call (params.email).
func (e *Event) Email() string {
	if e.User.Email != "" {
		return e.User.Email
	}
	if len(e.Params) > 0 {
		var p struct {
			Email string `json:"email"`
		}
		if json.Unmarshal(e.Params, &p) == nil {
			return p.Email
		}
	}
	return ""
}
