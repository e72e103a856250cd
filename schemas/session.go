package schemas

// Session statuses (SessionChange.Status).
const (
	SessionActive   = "active"
	SessionFinished = "finished"
	SessionBlocked  = "blocked"
)

// Reasons a session ended (SessionChange.Reason).
const (
	SessionEndLogout     = "logout"
	SessionEndInactivity = "inactivity"
	SessionEndSignout    = "signout"
	SessionEndForget     = "forget"
	SessionEndHijack     = "hijack"
	// SessionEndEvicted: the user had too many active sessions and this,
	// the oldest, made room for a new one.
	SessionEndEvicted = "evicted"
)

// SessionChange is the new state of one of a user's sessions after an
// event: the scorer derives sessions from events (a successful $login
// starts one, $logout ends it, activity of the same device extends it,
// inactivity finishes it) and from end-user commands (signout, forget and
// hijack end them). Times are epoch milliseconds.
type SessionChange struct {
	// UUID identifies the session: the app's session id when it is a
	// UUID, else a UUIDv5 of app, user and that id.
	UUID string `json:"uuid"`
	// ID is the app's session id (the event's `session.id`) or, when the
	// login carried none, the id of the login event.
	ID string `json:"id"`
	// DeviceToken is the device the session is on.
	DeviceToken string `json:"device_token"`
	// Status is SessionActive, SessionFinished or SessionBlocked.
	Status string `json:"status"`
	// Reason says why a session ended (SessionEnd*); empty while active.
	Reason           string `json:"reason,omitempty"`
	StartedAtMs      int64  `json:"started_at_ms"`
	LastActivityAtMs int64  `json:"last_activity_at_ms"`
	EndedAtMs        int64  `json:"ended_at_ms,omitempty"`
}

// ExtraActivation is the Event.Extra key of the activation token of the
// trust.token and trust.activate commands (an Activation object).
const ExtraActivation = "activation"

// Activation names an activation token of the trusted devices API by its
// SHA-256 (hex); the token itself is never stored. trust.token sets
// ExpiresAtMs, the end of the token's validity (epoch milliseconds).
type Activation struct {
	SHA256      string `json:"sha256"`
	ExpiresAtMs int64  `json:"expires_at_ms,omitempty"`
}
