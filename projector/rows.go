package projector

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/moat-dev/moat/schemas"
)

// eventColumns is the explicit column list of every insert into events.
// ClickHouse 18.16 silently inserts nothing when the list is left out, so it
// is never left out, and the batch is checked against it.
var eventColumns = []string{
	"app_id", "id", "kind", "type", "status", "name", "legacy_event",
	"user_id", "user_email", "user_traits",
	"ip", "header_names", "header_values", "request_token", "client_id", "library",
	"properties", "extra", "created_at_ms", "received_at", "received_at_ms",
	"device_token", "fingerprint",
	"ua_raw", "ua_browser", "ua_browser_version", "ua_browser_type", "ua_engine",
	"ua_os", "ua_os_version", "ua_platform", "ua_device_family", "ua_device_brand", "ua_device_model", "ua_device_type",
	"risk", "action", "kafka_partition", "kafka_offset", "version",
	"score_account_takeover", "score_account_abuse", "score_bot", "signals",
	"policy_id", "policy_name", "policy_revision_id", "contribution_names", "contribution_values",
	"ip_country", "ip_city", "ip_asn", "ip_isp", "ip_datacenter", "email_domain", "email_disposable", "trusted",
	"target_device_token", "impersonated",
	"session_uuids", "session_ids", "session_device_tokens", "session_statuses", "session_reasons",
	"session_started_ms", "session_last_activity_ms", "session_ended_ms",
	"list_ids", "list_item_ids", "list_fields",
}

// insertEvents is the INSERT statement for a batch of event rows.
func insertEvents(database string) string {
	return fmt.Sprintf("INSERT INTO %s.events (%s)", schemas.QuoteIdent(database), strings.Join(eventColumns, ", "))
}

// eventRow flattens one decision into the values of eventColumns.
func eventRow(d *schemas.Decision, partition int32, offset int64) ([]any, error) {
	ev := &d.Event
	id, err := uuid.Parse(ev.ID)
	if err != nil {
		return nil, fmt.Errorf("event id %q: %w", ev.ID, err)
	}
	names := make([]string, 0, len(ev.Context.Headers))
	for k := range ev.Context.Headers {
		names = append(names, k)
	}
	sort.Strings(names)
	values := make([]string, len(names))
	for i, k := range names {
		values[i] = ev.Context.Headers[k]
	}
	var library string
	if l := ev.Context.Library; l != nil {
		library = strings.TrimSpace(l.Name + " " + l.Version)
	}
	var extra string
	if len(ev.Extra) > 0 {
		b, err := json.Marshal(ev.Extra) // map keys are sorted: deterministic
		if err != nil {
			return nil, fmt.Errorf("event %s extra: %w", ev.ID, err)
		}
		extra = string(b)
	}
	var createdAt int64
	if ev.CreatedAt != nil {
		createdAt = ev.CreatedAt.UnixMilli()
	}
	received := ev.ReceivedAt.UTC()
	ua := d.Device.UserAgent
	var policyID, policyName, policyRev string
	if p := d.Policy; p != nil {
		policyID, policyName, policyRev = p.ID, p.Name, p.RevisionID
	}
	cNames := make([]string, len(d.Contributions))
	cValues := make([]float64, len(d.Contributions))
	for i, c := range d.Contributions {
		cNames[i], cValues[i] = c.Name, c.Value
	}
	var ip schemas.IPInfo
	if d.IP != nil {
		ip = *d.IP
	}
	var email schemas.EmailInfo
	if d.Email != nil {
		email = *d.Email
	}
	token, fp, target := d.Device.Token, d.Device.Fingerprint, ""
	if ev.Kind == schemas.KindDeviceApprove || ev.Kind == schemas.KindDeviceReport || ev.Kind.EndUser() || d.Impersonated {
		token, fp, target = "", "", d.Device.Token
	}
	sc := sessionColumns(d.Sessions)
	signals := d.Signals
	if signals == nil {
		signals = []string{}
	}
	listIDs, listItemIDs, listFields := make([]string, len(d.Lists)), make([]string, len(d.Lists)), make([]string, len(d.Lists))
	for i, m := range d.Lists {
		listIDs[i], listItemIDs[i], listFields[i] = m.ListID, m.ItemID, m.Field
	}
	return []any{
		ev.AppID, id, string(ev.Kind), ev.Type, ev.Status, ev.Name, ev.LegacyEvent,
		ev.User.ID, ev.User.Email, string(ev.User.Traits),
		ev.Context.IP, names, values, ev.Context.RequestToken, ev.Context.ClientID, library,
		string(ev.Properties), extra, createdAt, received.Truncate(time.Second), uint64(received.UnixMilli()),
		token, fp,
		ua.Raw, ua.Browser, ua.BrowserVersion, ua.BrowserType, ua.Engine,
		ua.OS, ua.OSVersion, ua.Platform, ua.DeviceFamily, ua.DeviceBrand, ua.DeviceModel, ua.DeviceType,
		d.Risk, d.Action, partition, offset, uint64(d.V),
		d.Scores.AccountTakeover, d.Scores.AccountAbuse, d.Scores.Bot, signals,
		policyID, policyName, policyRev, cNames, cValues,
		ip.CountryCode, ip.City, ip.ASN, ip.ISP, boolByte(ip.Datacenter), email.Domain, boolByte(email.Disposable), boolByte(d.Trusted),
		target, boolByte(d.Impersonated),
		sc.uuids, sc.ids, sc.devices, sc.statuses, sc.reasons, sc.started, sc.last, sc.ended,
		listIDs, listItemIDs, listFields,
	}, nil
}

func boolByte(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}
