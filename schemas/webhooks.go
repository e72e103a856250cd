package schemas

import (
	"strconv"
	"time"
)

// Webhook delivery topics. The webhooker consumes TopicIncidents and keeps
// the deliveries it could not make yet on retry topics, one per delay tier,
// so that every record in a tier is due in the order it was written and a
// tier consumer only ever waits for the record at its head. Deliveries that
// used up their attempts go to TopicWebhookDeadLetter; `moat webhooks
// replay` puts them back on the first tier.
const (
	// TopicWebhookDeadLetter carries WebhookDelivery records whose last
	// attempt failed, or that failed permanently (4xx other than 408/429,
	// a refused address, a removed endpoint), with the reason in
	// LastError and in the HeaderError header.
	TopicWebhookDeadLetter = "moat.webhooks.deadletter.v1"
	// topicWebhookRetryPrefix + tier name + ".v1" names a retry tier.
	topicWebhookRetryPrefix = "moat.webhooks.retry."
)

// Consumer groups of the webhooker's retry tiers: GroupWebhookerRetry + "-"
// + tier name (e.g. "moat-webhooker-retry-30s"). Like every group name they
// must never be renamed casually: a new name re-reads the whole tier.
const GroupWebhookerRetry = "moat-webhooker-retry"

// Record headers of webhook delivery records (besides HeaderSchema and
// HeaderError).
const (
	// HeaderDueAt is the time (Unix milliseconds) a retry record is due.
	HeaderDueAt = "moat-due-at"
	// HeaderAttempts is the number of attempts made so far.
	HeaderAttempts = "moat-attempts"
)

// WebhookDeliveryVersion is the version of WebhookDelivery written by this
// build; WebhookDeliverySchema is its HeaderSchema value.
const (
	WebhookDeliveryVersion = 1
	WebhookDeliverySchema  = "webhook-delivery.v1"
)

// TopicWebhookRetry returns the retry topic of the tier with the given
// delay, e.g. "moat.webhooks.retry.30s.v1" or "moat.webhooks.retry.12h.v1".
func TopicWebhookRetry(delay time.Duration) string {
	return topicWebhookRetryPrefix + TierName(delay) + ".v1"
}

// GroupWebhookerRetryTier returns the consumer group of a retry tier.
func GroupWebhookerRetryTier(delay time.Duration) string {
	return GroupWebhookerRetry + "-" + TierName(delay)
}

// TierName writes a tier delay compactly in its largest whole unit: "250ms",
// "30s", "2m", "12h".
func TierName(d time.Duration) string {
	switch {
	case d >= time.Hour && d%time.Hour == 0:
		return strconv.FormatInt(int64(d/time.Hour), 10) + "h"
	case d >= time.Minute && d%time.Minute == 0:
		return strconv.FormatInt(int64(d/time.Minute), 10) + "m"
	case d >= time.Second && d%time.Second == 0:
		return strconv.FormatInt(int64(d/time.Second), 10) + "s"
	default:
		return strconv.FormatInt(d.Milliseconds(), 10) + "ms"
	}
}

// WebhookDelivery is one notification on its way to one endpoint, as kept
// on the retry tiers and the webhook dead-letter topic. It carries ids, not
// URLs or secrets: those are looked up in the apps file when the attempt is
// made, so a URL change or a secret rotation applies to pending retries.
// Records are keyed by DeliveryID.
type WebhookDelivery struct {
	V int `json:"v"`
	// DeliveryID is stable per notification and endpoint, identical across
	// attempts and replays (the X-Moat-Delivery-Id header).
	DeliveryID string `json:"delivery_id"`
	AppID      string `json:"app_id"`
	EndpointID string `json:"endpoint_id"`
	// Attempts is the number of attempts made so far (deferrals of a sick
	// or saturated endpoint count).
	Attempts int `json:"attempts"`
	// FirstAttemptAt is when the first attempt was made; DueAt when the
	// next one is due.
	FirstAttemptAt time.Time `json:"first_attempt_at"`
	DueAt          time.Time `json:"due_at"`
	// LastStatus is the HTTP status of the last attempt (0 without a
	// response) and LastError what went wrong.
	LastStatus int    `json:"last_status,omitempty"`
	LastError  string `json:"last_error,omitempty"`
	// Replays counts how often the delivery was replayed from the dead
	// letters.
	Replays      int          `json:"replays,omitempty"`
	Notification Notification `json:"notification"`
}
