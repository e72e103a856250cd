package schemas

import (
	"encoding/json"
	"time"
)

// NotificationVersion is the version of Notification written by this build.
const NotificationVersion = 1

// Notification types carried on TopicIncidents. The first five are
// Castle's webhook types; the others are Moat's device and session events.
const (
	NotifyIncidentConfirmed  = "$incident.confirmed"
	NotifyReviewOpened       = "$review.opened"
	NotifyPolicyMatched      = "$policy.matched"
	NotifyListItemCreated    = "$list_item.created"
	NotifyListItemArchived   = "$list_item.archived"
	NotifyListItemUnarchived = "$list_item.unarchived"
	NotifyDeviceUpdated      = "$device.updated"
	NotifySessionEnded       = "$session.ended"
	NotifySessionStarted     = "$session.started"
	// NotifyWebhookTest is the test notification of
	// POST /v1/webhooks/endpoints/{id}/test, addressed to one endpoint
	// (Notification.EndpointID).
	NotifyWebhookTest = "$webhook.test"
)

// NotificationTypes returns every notification type, the values an
// endpoint may subscribe to.
func NotificationTypes() []string {
	return []string{
		NotifyIncidentConfirmed, NotifyReviewOpened, NotifyPolicyMatched,
		NotifyListItemCreated, NotifyListItemArchived, NotifyListItemUnarchived,
		NotifyDeviceUpdated, NotifySessionEnded, NotifyWebhookTest, NotifySessionStarted,
	}
}

// Notification is one webhook-worthy fact on TopicIncidents, keyed by app
// and user. Downstream systems may consume the topic directly; the
// webhooker delivers each notification to the app's endpoints that
// subscribed to its type.
type Notification struct {
	V int `json:"v"`
	// ID is unique per notification and stable across redelivery; the
	// webhooker sends it as the delivery id so receivers can deduplicate.
	ID    string `json:"id"`
	AppID string `json:"app_id"`
	// Type is one of the Notify* constants.
	Type      string    `json:"type"`
	CreatedAt time.Time `json:"created_at"`
	UserID    string    `json:"user_id,omitempty"`
	// DeviceToken is the device concerned, if any.
	DeviceToken string `json:"device_token,omitempty"`
	// EventID is the event that caused the notification, if any.
	EventID string `json:"event_id,omitempty"`
	// Data is the Castle webhook `data` object, ready to send.
	Data json.RawMessage `json:"data"`
	// EndpointID, when set, addresses the notification to that one
	// endpoint of the app (a test notification): the webhooker delivers it
	// there only, whatever types the endpoint subscribed to. Other
	// consumers of the topic should ignore addressed notifications.
	EndpointID string `json:"endpoint_id,omitempty"`
}

// Key is the record key: app and user, so one user's notifications stay in
// order.
func (n *Notification) Key() []byte { return []byte(n.AppID + "\x00u:" + n.UserID) }
