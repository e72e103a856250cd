package scorer

import (
	"strconv"
	"strings"

	"github.com/moat-dev/moat/schemas"
	"github.com/moat-dev/moat/scorer/risk"
)

// SetLists gives the policies' list conditions (any_lists, in_list) the
// apps' lists to look values up in; without it no list condition holds.
// Call it before the decider is used. The scorer role passes the index of
// a follower of the lists topic (internal/lists): membership is evaluated
// against the lists as of scoring time, with the event's received_at as
// the clock for items that archive themselves, and the matched item ids
// are recorded in the decision (Decision.Lists). Decisions of events with
// list conditions are therefore a function of the lists too: a replay
// after the lists changed may match other items.
func (d *Decider) SetLists(m risk.Membership) { d.lists = m }

// listValues are the event's values that list items can hold, by Castle
// field path.
func listValues(ev *schemas.Event, dev *schemas.Device, ip *schemas.IPInfo, email *schemas.EmailInfo) schemas.ListValues {
	v := schemas.ListValues{}
	set := func(k, s string) {
		if s != "" {
			v[k] = s
		}
	}
	set(schemas.ListFieldIPValue, ev.Context.IP)
	set(schemas.ListFieldIPAddress, ev.Context.IP)
	if ip != nil {
		if ip.ASN != 0 {
			set(schemas.ListFieldIPASN, strconv.FormatUint(uint64(ip.ASN), 10))
		}
		set(schemas.ListFieldIPCountryCode, strings.ToUpper(ip.CountryCode))
	}
	set(schemas.ListFieldUserID, ev.User.ID)
	set(schemas.ListFieldUserEmail, strings.ToLower(strings.TrimSpace(ev.Email())))
	if email != nil {
		set(schemas.ListFieldEmailNormalized, email.Normalized)
		set(schemas.ListFieldEmailDomain, email.Domain)
	}
	set(schemas.ListFieldDeviceFingerprint, dev.Fingerprint)
	set(schemas.ListFieldDeviceToken, dev.Token)
	return v
}
