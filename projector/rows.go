package projector

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/google/uuid"
	"github.com/moat-dev/moat/schemas"
)

// eventRow is one buffered row of events: the decision, where it was read,
// and what the columns derive from it (eventRow.derive).
type eventRow struct {
	d         schemas.Decision
	partition int32
	offset    int64

	id uuid.UUID
	// headers are the header names, sorted, then their values.
	headers           []string
	library, extra    string
	createdAtMs       int64
	token, fp, target string // device_token, fingerprint, target_device_token
}

// derive checks the decision read at partition and offset and computes
// what the columns need beyond its fields.
func (r *eventRow) derive(partition int32, offset int64) error {
	d := &r.d
	ev := &d.Event
	id, err := uuid.Parse(ev.ID)
	if err != nil {
		return fmt.Errorf("event id %q: %w", ev.ID, err)
	}
	r.partition, r.offset, r.id = partition, offset, id
	r.headers = nil
	if n := len(ev.Context.Headers); n > 0 {
		r.headers = make([]string, 0, 2*n)
		for k := range ev.Context.Headers {
			r.headers = append(r.headers, k)
		}
		slices.Sort(r.headers)
		for _, k := range r.headers[:n] {
			r.headers = append(r.headers, ev.Context.Headers[k])
		}
	}
	r.library = ""
	if l := ev.Context.Library; l != nil {
		r.library = strings.TrimSpace(l.Name + " " + l.Version)
	}
	r.extra = ""
	if len(ev.Extra) > 0 {
		b, err := json.Marshal(ev.Extra) // map keys are sorted: deterministic
		if err != nil {
			return fmt.Errorf("event %s extra: %w", ev.ID, err)
		}
		r.extra = string(b)
	}
	r.createdAtMs = 0
	if ev.CreatedAt != nil {
		r.createdAtMs = ev.CreatedAt.UnixMilli()
	}
	r.token, r.fp, r.target = d.Device.Token, d.Device.Fingerprint, ""
	if ev.Kind == schemas.KindDeviceApprove || ev.Kind == schemas.KindDeviceReport || ev.Kind.EndUser() || d.Impersonated {
		r.token, r.fp, r.target = "", "", d.Device.Token
	}
	return nil
}

func (r *eventRow) headerNames() []string  { return r.headers[:len(r.headers)/2] }
func (r *eventRow) headerValues() []string { return r.headers[len(r.headers)/2:] }

// eventColumn is a column of events and how a batch's rows fill it.
type eventColumn struct {
	name string
	// fill appends the column's values of rows to c, with buf's memory.
	fill func(c driver.BatchColumn, rows []eventRow, buf *fillBuffer) error
}

// fillBuffer is memory the columns of a batch reuse: clickhouse-go copies
// what is appended to a batch.
type fillBuffer struct {
	strs []string
}

// scalar is a column of one value of type T per row, appended to the batch
// a column at a time (T is the type clickhouse-go takes for the column
// type, slices of it whole).
func scalar[T any](name string, value func(r *eventRow) T) eventColumn {
	return eventColumn{name: name, fill: func(c driver.BatchColumn, rows []eventRow, _ *fillBuffer) error {
		vs := make([]T, len(rows))
		for i := range rows {
			vs[i] = value(&rows[i])
		}
		return c.Append(vs)
	}}
}

// str is a String column: a scalar with its values in the shared buffer.
func str(name string, value func(r *eventRow) string) eventColumn {
	return eventColumn{name: name, fill: func(c driver.BatchColumn, rows []eventRow, buf *fillBuffer) error {
		vs := buf.strs[:0]
		for i := range rows {
			vs = append(vs, value(&rows[i]))
		}
		buf.strs = vs
		return c.Append(vs)
	}}
}

// array is an Array(T) column, appended a row at a time: clickhouse-go
// takes a whole Array column only through reflection, and a row's []T
// boxes every element, but a []*T boxes none (the values are copied as
// they are appended, so the buffers are reused).
func array[T any](name string, values func(r *eventRow, dst []T) []T) eventColumn {
	return eventColumn{name: name, fill: func(c driver.BatchColumn, rows []eventRow, _ *fillBuffer) error {
		var vs []T
		var ps []*T
		for i := range rows {
			vs, ps = values(&rows[i], vs[:0]), ps[:0]
			for j := range vs {
				ps = append(ps, &vs[j])
			}
			var row any = ([]*T)(nil) // an empty array, boxed without allocating
			if len(ps) > 0 {
				row = ps
			}
			if err := c.AppendRow(row); err != nil {
				return err
			}
		}
		return nil
	}}
}

func boolByte(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}

// eventSchema is every column of the inserts into events, in order.
var eventSchema = []eventColumn{
	str("app_id", func(r *eventRow) string { return r.d.Event.AppID }),
	scalar("id", func(r *eventRow) uuid.UUID { return r.id }),
	str("kind", func(r *eventRow) string { return string(r.d.Event.Kind) }),
	str("type", func(r *eventRow) string { return r.d.Event.Type }),
	str("status", func(r *eventRow) string { return r.d.Event.Status }),
	str("name", func(r *eventRow) string { return r.d.Event.Name }),
	str("legacy_event", func(r *eventRow) string { return r.d.Event.LegacyEvent }),
	str("user_id", func(r *eventRow) string { return r.d.Event.User.ID }),
	str("user_email", func(r *eventRow) string { return r.d.Event.User.Email }),
	str("user_traits", func(r *eventRow) string { return string(r.d.Event.User.Traits) }),
	str("ip", func(r *eventRow) string { return r.d.Event.Context.IP }),
	array("header_names", func(r *eventRow, dst []string) []string { return append(dst, r.headerNames()...) }),
	array("header_values", func(r *eventRow, dst []string) []string { return append(dst, r.headerValues()...) }),
	str("request_token", func(r *eventRow) string { return r.d.Event.Context.RequestToken }),
	str("client_id", func(r *eventRow) string { return r.d.Event.Context.ClientID }),
	str("library", func(r *eventRow) string { return r.library }),
	str("properties", func(r *eventRow) string { return string(r.d.Event.Properties) }),
	str("extra", func(r *eventRow) string { return r.extra }),
	scalar("created_at_ms", func(r *eventRow) int64 { return r.createdAtMs }),
	scalar("received_at", func(r *eventRow) time.Time { return r.d.Event.ReceivedAt.UTC().Truncate(time.Second) }),
	scalar("received_at_ms", func(r *eventRow) uint64 { return uint64(r.d.Event.ReceivedAt.UnixMilli()) }),
	str("device_token", func(r *eventRow) string { return r.token }),
	str("fingerprint", func(r *eventRow) string { return r.fp }),
	str("ua_raw", func(r *eventRow) string { return r.d.Device.UserAgent.Raw }),
	str("ua_browser", func(r *eventRow) string { return r.d.Device.UserAgent.Browser }),
	str("ua_browser_version", func(r *eventRow) string { return r.d.Device.UserAgent.BrowserVersion }),
	str("ua_browser_type", func(r *eventRow) string { return r.d.Device.UserAgent.BrowserType }),
	str("ua_engine", func(r *eventRow) string { return r.d.Device.UserAgent.Engine }),
	str("ua_os", func(r *eventRow) string { return r.d.Device.UserAgent.OS }),
	str("ua_os_version", func(r *eventRow) string { return r.d.Device.UserAgent.OSVersion }),
	str("ua_platform", func(r *eventRow) string { return r.d.Device.UserAgent.Platform }),
	str("ua_device_family", func(r *eventRow) string { return r.d.Device.UserAgent.DeviceFamily }),
	str("ua_device_brand", func(r *eventRow) string { return r.d.Device.UserAgent.DeviceBrand }),
	str("ua_device_model", func(r *eventRow) string { return r.d.Device.UserAgent.DeviceModel }),
	str("ua_device_type", func(r *eventRow) string { return r.d.Device.UserAgent.DeviceType }),
	scalar("risk", func(r *eventRow) float64 { return r.d.Risk }),
	str("action", func(r *eventRow) string { return r.d.Action }),
	scalar("kafka_partition", func(r *eventRow) int32 { return r.partition }),
	scalar("kafka_offset", func(r *eventRow) int64 { return r.offset }),
	scalar("version", func(r *eventRow) uint64 { return uint64(r.d.V) }),
	scalar("score_account_takeover", func(r *eventRow) float64 { return r.d.Scores.AccountTakeover }),
	scalar("score_account_abuse", func(r *eventRow) float64 { return r.d.Scores.AccountAbuse }),
	scalar("score_bot", func(r *eventRow) float64 { return r.d.Scores.Bot }),
	array("signals", func(r *eventRow, dst []string) []string { return append(dst, r.d.Signals...) }),
	str("policy_id", func(r *eventRow) string { return policy(r).ID }),
	str("policy_name", func(r *eventRow) string { return policy(r).Name }),
	str("policy_revision_id", func(r *eventRow) string { return policy(r).RevisionID }),
	array("contribution_names", func(r *eventRow, dst []string) []string {
		for _, c := range r.d.Contributions {
			dst = append(dst, c.Name)
		}
		return dst
	}),
	array("contribution_values", func(r *eventRow, dst []float64) []float64 {
		for _, c := range r.d.Contributions {
			dst = append(dst, c.Value)
		}
		return dst
	}),
	str("ip_country", func(r *eventRow) string { return ipInfo(r).CountryCode }),
	str("ip_city", func(r *eventRow) string { return ipInfo(r).City }),
	scalar("ip_asn", func(r *eventRow) uint32 { return ipInfo(r).ASN }),
	str("ip_isp", func(r *eventRow) string { return ipInfo(r).ISP }),
	scalar("ip_datacenter", func(r *eventRow) uint8 { return boolByte(ipInfo(r).Datacenter) }),
	str("email_domain", func(r *eventRow) string { return emailInfo(r).Domain }),
	scalar("email_disposable", func(r *eventRow) uint8 { return boolByte(emailInfo(r).Disposable) }),
	scalar("trusted", func(r *eventRow) uint8 { return boolByte(r.d.Trusted) }),
	str("target_device_token", func(r *eventRow) string { return r.target }),
	scalar("impersonated", func(r *eventRow) uint8 { return boolByte(r.d.Impersonated) }),
	// The session changes as parallel arrays (migration 0006); sessions_mv
	// folds them into sessions.
	sessionColumn("session_uuids", func(s *schemas.SessionChange) string { return s.UUID }),
	sessionColumn("session_ids", func(s *schemas.SessionChange) string { return s.ID }),
	sessionColumn("session_device_tokens", func(s *schemas.SessionChange) string { return s.DeviceToken }),
	sessionColumn("session_statuses", func(s *schemas.SessionChange) string { return s.Status }),
	sessionColumn("session_reasons", func(s *schemas.SessionChange) string { return s.Reason }),
	sessionColumn("session_started_ms", func(s *schemas.SessionChange) uint64 { return uint64(max(s.StartedAtMs, 0)) }),
	sessionColumn("session_last_activity_ms", func(s *schemas.SessionChange) uint64 { return uint64(max(s.LastActivityAtMs, 0)) }),
	sessionColumn("session_ended_ms", func(s *schemas.SessionChange) uint64 { return uint64(max(s.EndedAtMs, 0)) }),
	listColumn("list_ids", func(m *schemas.ListMatch) string { return m.ListID }),
	listColumn("list_item_ids", func(m *schemas.ListMatch) string { return m.ItemID }),
	listColumn("list_fields", func(m *schemas.ListMatch) string { return m.Field }),
}

// eventColumns is the explicit column list of every insert into events.
// ClickHouse 18.16 silently inserts nothing when the list is left out, so it
// is never left out, and the batch is checked against it.
var eventColumns = func() []string {
	names := make([]string, len(eventSchema))
	for i, c := range eventSchema {
		names[i] = c.name
	}
	return names
}()

// insertEvents is the INSERT statement for a batch of event rows.
func insertEvents(database string) string {
	return fmt.Sprintf("INSERT INTO %s.events (%s)", schemas.QuoteIdent(database), strings.Join(eventColumns, ", "))
}

// The empty policy outcome and enrichments of a decision without them.
var (
	noPolicy schemas.PolicyOutcome
	noIP     schemas.IPInfo
	noEmail  schemas.EmailInfo
)

func policy(r *eventRow) *schemas.PolicyOutcome {
	if r.d.Policy == nil {
		return &noPolicy
	}
	return r.d.Policy
}

func ipInfo(r *eventRow) *schemas.IPInfo {
	if r.d.IP == nil {
		return &noIP
	}
	return r.d.IP
}

func emailInfo(r *eventRow) *schemas.EmailInfo {
	if r.d.Email == nil {
		return &noEmail
	}
	return r.d.Email
}
