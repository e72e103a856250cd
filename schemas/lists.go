package schemas

import (
	"bytes"
	"time"
)

// ListRecordVersion is the version of ListRecord written by this build.
const ListRecordVersion = 1

// ListRecord is one record of TopicLists: the full current state of one
// list or of one list item (exactly one of List and Item is set). The
// topic is compacted, so only each key's latest record matters; a record
// with no value (a tombstone) deletes the list or the item of its key.
type ListRecord struct {
	V     int       `json:"v"`
	AppID string    `json:"app_id"`
	List  *List     `json:"list,omitempty"`
	Item  *ListItem `json:"item,omitempty"`
}

// List is one of an app's lists (Castle's Lists API).
type List struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	// Color is one of Castle's colours ($red, $orange, $yellow, $green,
	// $blue, $purple, $gray, $black).
	Color string `json:"color"`
	// DefaultItemArchivationTime is how many seconds after creation an item
	// archives itself when it names no auto_archives_at (0: never).
	DefaultItemArchivationTime int `json:"default_item_archivation_time,omitempty"`
	// PrimaryField and SecondaryField are the event fields (ListField*)
	// whose values the items hold.
	PrimaryField   string     `json:"primary_field"`
	SecondaryField string     `json:"secondary_field,omitempty"`
	CreatedAt      time.Time  `json:"created_at"`
	UpdatedAt      time.Time  `json:"updated_at"`
	ArchivedAt     *time.Time `json:"archived_at,omitempty"`
}

// ListAuthor says who added an item: Type is one of $analyst_email,
// $castle_dashboard_user, $castle_policy, $user, $user_email, $other.
type ListAuthor struct {
	Type       string `json:"type"`
	Identifier string `json:"identifier"`
}

// ListItem is one value on a list. An item is archived when ArchivedAt is
// set or AutoArchivesAt has passed (archiving by time is evaluated when
// the item is read or matched: nothing is written when the time passes).
type ListItem struct {
	ID     string `json:"id"`
	ListID string `json:"list_id"`
	// PrimaryValue (and SecondaryValue, when the list has a secondary
	// field) are normalized for their field (canonical IP or CIDR range,
	// lower-case email, ...).
	PrimaryValue   string     `json:"primary_value"`
	SecondaryValue string     `json:"secondary_value,omitempty"`
	Comment        string     `json:"comment,omitempty"`
	Author         ListAuthor `json:"author"`
	AutoArchivesAt *time.Time `json:"auto_archives_at,omitempty"`
	ArchivedAt     *time.Time `json:"archived_at,omitempty"`
	CreatedAt      time.Time  `json:"created_at"`
	UpdatedAt      time.Time  `json:"updated_at"`
}

// Archived reports whether the item is archived at time at.
func (it *ListItem) Archived(at time.Time) bool {
	return it.ArchivedAt != nil || (it.AutoArchivesAt != nil && !at.Before(*it.AutoArchivesAt))
}

// Event fields a list's primary_field or secondary_field can name, and a
// policy's list condition can look up (Castle's field paths).
const (
	ListFieldIPValue           = "ip.value"
	ListFieldIPAddress         = "ip.address" // same as ip.value
	ListFieldIPASN             = "ip.asn"
	ListFieldIPCountryCode     = "ip.location.country_code"
	ListFieldUserID            = "user.id"
	ListFieldUserEmail         = "user.email"
	ListFieldEmailNormalized   = "email.normalized"
	ListFieldEmailDomain       = "email.domain"
	ListFieldDeviceFingerprint = "device.fingerprint"
	ListFieldDeviceToken       = "device.token"
)

// ListFields lists every field a list can hold, in documentation order.
func ListFields() []string {
	return []string{ListFieldIPValue, ListFieldIPAddress, ListFieldIPASN, ListFieldIPCountryCode, ListFieldUserID,
		ListFieldUserEmail, ListFieldEmailNormalized, ListFieldEmailDomain, ListFieldDeviceFingerprint, ListFieldDeviceToken}
}

// KnownListField reports whether f is one of ListFields.
func KnownListField(f string) bool {
	for _, k := range ListFields() {
		if k == f {
			return true
		}
	}
	return false
}

// ListValues are an event's values by list field (ListField*), as the
// scorer derived them: canonical IP, ASN in decimal, upper-case country,
// lower-case email, ... A field the event has no value for is absent.
type ListValues map[string]string

// ListMatch records that an event's value was on a list: the list item
// that matched, and the field that was looked up. Decisions keep the
// matches their policy used, so a replay under other lists is explainable.
type ListMatch struct {
	ListID string `json:"list_id"`
	ItemID string `json:"item_id"`
	Field  string `json:"field"`
}

// ListKey is the TopicLists record key of a list: app id, NUL, list id.
func ListKey(appID, listID string) []byte { return []byte(appID + "\x00" + listID) }

// ListItemKey is the TopicLists record key of an item: app id, NUL, list
// id, NUL, item id. Records are partitioned by the list key prefix (see
// ListPartitionKey), so a list and its items stay in order on one
// partition.
func ListItemKey(appID, listID, itemID string) []byte {
	return []byte(appID + "\x00" + listID + "\x00" + itemID)
}

// ParseListKey splits a TopicLists key; itemID is empty for a list's key.
func ParseListKey(k []byte) (appID, listID, itemID string, ok bool) {
	parts := bytes.Split(k, []byte{0})
	switch {
	case len(parts) == 2 && len(parts[0]) > 0 && len(parts[1]) > 0:
		return string(parts[0]), string(parts[1]), "", true
	case len(parts) == 3 && len(parts[0]) > 0 && len(parts[1]) > 0 && len(parts[2]) > 0:
		return string(parts[0]), string(parts[1]), string(parts[2]), true
	}
	return "", "", "", false
}

// ListPartitionKey is the part of a TopicLists key that picks the
// partition: the list key (app id, NUL, list id). Producers hash it with
// Kafka's default murmur2 partitioner.
func ListPartitionKey(k []byte) []byte {
	first := bytes.IndexByte(k, 0)
	if first < 0 {
		return k
	}
	if second := bytes.IndexByte(k[first+1:], 0); second >= 0 {
		return k[:first+1+second]
	}
	return k
}
