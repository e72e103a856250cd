package projector_test

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/moat-dev/moat/internal/chtest"
	"github.com/moat-dev/moat/projector"
	"github.com/moat-dev/moat/schemas"
	"github.com/twmb/franz-go/pkg/kgo"
)

// forgetUser is an Erasures that has forgotten one user id.
type forgetUser string

func (f forgetUser) Forgotten(_, userID, _ string, _ time.Time) bool { return userID == string(f) }
func (forgetUser) Note(_, _, _ string, _ time.Time)                  {}

func record(t testing.TB, d *schemas.Decision, partition int32, offset int64) *kgo.Record {
	t.Helper()
	b, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	return &kgo.Record{Topic: schemas.TopicDecisions, Partition: partition, Offset: offset, Value: b}
}

// zeroRow is an events row of empty values, typed as read back.
func zeroRow() map[string]any {
	row := map[string]any{
		"id": uuid.UUID{}, "created_at_ms": int64(0), "received_at": time.Time{}, "received_at_ms": uint64(0),
		"risk": float64(0), "kafka_partition": int32(0), "kafka_offset": int64(0), "version": uint64(0),
		"score_account_takeover": float64(0), "score_account_abuse": float64(0), "score_bot": float64(0),
		"contribution_values": []float64{}, "ip_asn": uint32(0),
		"ip_datacenter": uint8(0), "email_disposable": uint8(0), "trusted": uint8(0), "impersonated": uint8(0),
		"session_started_ms": []uint64{}, "session_last_activity_ms": []uint64{}, "session_ended_ms": []uint64{},
	}
	for _, c := range []string{"header_names", "header_values", "signals", "contribution_names",
		"session_uuids", "session_ids", "session_device_tokens", "session_statuses", "session_reasons",
		"list_ids", "list_item_ids", "list_fields"} {
		row[c] = []string{}
	}
	for _, c := range projector.EventColumns {
		if _, ok := row[c]; !ok {
			row[c] = ""
		}
	}
	return row
}

// TestEventRowsRoundTrip inserts decisions, one with every field set
// (unicode, arrays of several lengths), one with none, an end-user command
// and one of a forgotten user, twice as a retried batch, and reads every
// column of events back: each row is stored twice, as written, and the
// forgotten one not at all.
func TestEventRowsRoundTrip(t *testing.T) {
	conn, db := chtest.NewDatabase(t)
	received := time.Date(2025, 3, 4, 5, 6, 7, 891_000_000, time.UTC)
	created := received.Add(-2500 * time.Millisecond)
	full := schemas.Decision{V: 3,
		Event: schemas.Event{V: 1, ID: "0195a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", AppID: "app-ü", Kind: schemas.KindRisk,
			Type: "$login", Status: "$succeeded", Name: "Anmeldung 🚀", LegacyEvent: "$login.succeeded",
			User: schemas.User{ID: "usér-1", Email: "Jörg@Example.com", Traits: json.RawMessage(`{"plan":"pro","名前":"ユーザー"}`)},
			Context: schemas.Context{IP: "2001:db8::1", RequestToken: "tok-1", ClientID: "cid-1", Library: &schemas.Library{Name: "castle-go", Version: "1.2.3"},
				Headers: map[string]string{"user-agent": "Mozilla/5.0", "accept-language": "de-DE,de;q=0.9", "x-ünï": "wert ✓", "dnt": ""}},
			Properties: json.RawMessage(`{"a":1,"b":["x","ÿ"]}`),
			Extra:      map[string]json.RawMessage{"session": json.RawMessage(`{"id":"s-1"}`), "address": json.RawMessage(`{"city":"Köln"}`)},
			CreatedAt:  &created, ReceivedAt: received},
		Device: schemas.Device{Token: "dev-1", Fingerprint: "fp-1", UserAgent: schemas.UserAgent{Raw: "Mozilla/5.0 (X11)", Browser: "Chrome",
			BrowserVersion: "120.0.1", BrowserType: "browser", Engine: "Blink", OS: "Linux", OSVersion: "6.1", Platform: "desktop",
			DeviceFamily: "Other", DeviceBrand: "Brand", DeviceModel: "Model ä", DeviceType: "desktop"}},
		Risk: 0.875, Action: "challenge", Scores: schemas.Scores{AccountTakeover: 0.5, AccountAbuse: 0.25, Bot: 0.125},
		Signals:       []string{"new_device", "proxy_ip", "ünusual"},
		Policy:        &schemas.PolicyOutcome{Action: "challenge", ID: "pol-1", Name: "Régle", RevisionID: "rev-1"},
		Contributions: []schemas.Contribution{{Name: "bot", Kind: "signal", Value: 0.5}, {Name: "ip", Kind: "feature", Value: -0.25}},
		IP:            &schemas.IPInfo{CountryCode: "DE", City: "München", ASN: 3320, ISP: "Telekom", Datacenter: true},
		Email:         &schemas.EmailInfo{Domain: "example.com", Disposable: true},
		Trusted:       true,
		Lists:         []schemas.ListMatch{{ListID: "l-1", ItemID: "i-1", Field: "ip"}, {ListID: "l-2", ItemID: "i-2", Field: "email"}, {ListID: "l-3", ItemID: "i-3", Field: "device"}},
		Sessions: []schemas.SessionChange{
			{UUID: "su-1", ID: "s-1", DeviceToken: "dev-1", Status: "active", StartedAtMs: 1700000000123, LastActivityAtMs: 1700000100456},
			{UUID: "su-2", ID: "s-2", DeviceToken: "dev-0", Status: "ended", Reason: "logout ✓", StartedAtMs: 1600000000000, LastActivityAtMs: 1600000000001, EndedAtMs: 1700000000999},
		},
	}
	empty := schemas.Decision{V: 1, Event: schemas.Event{V: 1, ID: "0195a1b2-c3d4-7e5f-8a9b-000000000002", Kind: schemas.KindTrack, ReceivedAt: received.Add(time.Millisecond)}}
	endUser := schemas.Decision{V: 2, Event: schemas.Event{V: 1, ID: "0195a1b2-c3d4-7e5f-8a9b-000000000003", AppID: "app", Kind: schemas.KindDeviceApprove,
		User: schemas.User{ID: "u-3"}, ReceivedAt: received.Add(2 * time.Millisecond)},
		Device: schemas.Device{Token: "dev-3", Fingerprint: "fp-3"}, Signals: []string{"one"}}
	gone := schemas.Decision{V: 1, Event: schemas.Event{V: 1, ID: "0195a1b2-c3d4-7e5f-8a9b-000000000004", AppID: "app", Kind: schemas.KindTrack,
		User: schemas.User{ID: "gone"}, ReceivedAt: received}, Signals: []string{"x", "y"}, Device: schemas.Device{Token: "dev-4"}}
	impersonated := schemas.Decision{V: 1, Event: schemas.Event{V: 1, ID: "0195a1b2-c3d4-7e5f-8a9b-000000000005", AppID: "app", Kind: schemas.KindTrack,
		User: schemas.User{ID: "u-5"}, ReceivedAt: received}, Impersonated: true,
		Device:   schemas.Device{Token: "dev-5", Fingerprint: "fp-5"},
		Sessions: []schemas.SessionChange{{UUID: "su-5", StartedAtMs: -5, LastActivityAtMs: 7}}}

	want := []map[string]any{zeroRow(), zeroRow(), zeroRow(), zeroRow()}
	for k, v := range map[string]any{
		"app_id": "app-ü", "id": uuid.MustParse(full.Event.ID), "kind": "risk", "type": "$login", "status": "$succeeded",
		"name": "Anmeldung 🚀", "legacy_event": "$login.succeeded", "user_id": "usér-1", "user_email": "Jörg@Example.com",
		"user_traits": `{"plan":"pro","名前":"ユーザー"}`, "ip": "2001:db8::1",
		"header_names":  []string{"accept-language", "dnt", "user-agent", "x-ünï"},
		"header_values": []string{"de-DE,de;q=0.9", "", "Mozilla/5.0", "wert ✓"},
		"request_token": "tok-1", "client_id": "cid-1", "library": "castle-go 1.2.3", "properties": `{"a":1,"b":["x","ÿ"]}`,
		"extra": `{"address":{"city":"Köln"},"session":{"id":"s-1"}}`, "created_at_ms": created.UnixMilli(),
		"received_at": received.Truncate(time.Second), "received_at_ms": uint64(received.UnixMilli()),
		"device_token": "dev-1", "fingerprint": "fp-1", "ua_raw": "Mozilla/5.0 (X11)", "ua_browser": "Chrome",
		"ua_browser_version": "120.0.1", "ua_browser_type": "browser", "ua_engine": "Blink", "ua_os": "Linux", "ua_os_version": "6.1",
		"ua_platform": "desktop", "ua_device_family": "Other", "ua_device_brand": "Brand", "ua_device_model": "Model ä", "ua_device_type": "desktop",
		"risk": 0.875, "action": "challenge", "kafka_partition": int32(1), "kafka_offset": int64(100), "version": uint64(3),
		"score_account_takeover": 0.5, "score_account_abuse": 0.25, "score_bot": 0.125, "signals": []string{"new_device", "proxy_ip", "ünusual"},
		"policy_id": "pol-1", "policy_name": "Régle", "policy_revision_id": "rev-1",
		"contribution_names": []string{"bot", "ip"}, "contribution_values": []float64{0.5, -0.25},
		"ip_country": "DE", "ip_city": "München", "ip_asn": uint32(3320), "ip_isp": "Telekom", "ip_datacenter": uint8(1),
		"email_domain": "example.com", "email_disposable": uint8(1), "trusted": uint8(1), "target_device_token": "", "impersonated": uint8(0),
		"session_uuids": []string{"su-1", "su-2"}, "session_ids": []string{"s-1", "s-2"}, "session_device_tokens": []string{"dev-1", "dev-0"},
		"session_statuses": []string{"active", "ended"}, "session_reasons": []string{"", "logout ✓"},
		"session_started_ms": []uint64{1700000000123, 1600000000000}, "session_last_activity_ms": []uint64{1700000100456, 1600000000001},
		"session_ended_ms": []uint64{0, 1700000000999},
		"list_ids":         []string{"l-1", "l-2", "l-3"}, "list_item_ids": []string{"i-1", "i-2", "i-3"}, "list_fields": []string{"ip", "email", "device"},
	} {
		if _, ok := want[0][k]; !ok {
			t.Fatalf("no column %s", k)
		}
		want[0][k] = v
	}
	set := func(row map[string]any, kv map[string]any) {
		for k, v := range kv {
			if _, ok := row[k]; !ok {
				t.Fatalf("no column %s", k)
			}
			row[k] = v
		}
	}
	set(want[1], map[string]any{"id": uuid.MustParse(empty.Event.ID), "kind": "track", "received_at": received.Truncate(time.Second),
		"received_at_ms": uint64(received.UnixMilli() + 1), "kafka_partition": int32(0), "kafka_offset": int64(7), "version": uint64(1)})
	set(want[2], map[string]any{"app_id": "app", "id": uuid.MustParse(endUser.Event.ID), "kind": "device.approve", "user_id": "u-3",
		"received_at": received.Truncate(time.Second), "received_at_ms": uint64(received.UnixMilli() + 2), "target_device_token": "dev-3",
		"kafka_partition": int32(1), "kafka_offset": int64(101), "version": uint64(2), "signals": []string{"one"}})
	set(want[3], map[string]any{"app_id": "app", "id": uuid.MustParse(impersonated.Event.ID), "kind": "track", "user_id": "u-5",
		"received_at": received.Truncate(time.Second), "received_at_ms": uint64(received.UnixMilli()), "target_device_token": "dev-5",
		"impersonated": uint8(1), "kafka_partition": int32(1), "kafka_offset": int64(103), "version": uint64(1),
		"session_uuids": []string{"su-5"}, "session_ids": []string{""}, "session_device_tokens": []string{""}, "session_statuses": []string{""},
		"session_reasons": []string{""}, "session_started_ms": []uint64{0}, "session_last_activity_ms": []uint64{7}, "session_ended_ms": []uint64{0}})

	w := projector.NewBare(projector.Config{Database: db, BatchSize: 100, FlushInterval: time.Second, InsertTimeout: 10 * time.Second, Erasures: forgetUser("gone")}, conn)
	w.Add(record(t, &full, 1, 100))
	w.Add(record(t, &empty, 0, 7))
	w.Add(&kgo.Record{Partition: 0, Offset: 8, Value: []byte(`{"v":1,"event":{"id":"not a uuid"}}`)}) // left out
	w.Add(record(t, &endUser, 1, 101))
	w.Add(record(t, &gone, 1, 102)) // forgotten: left out
	w.Add(record(t, &impersonated, 1, 103))
	ctx := context.Background()
	for range 2 { // the second insert is a retry of the same batch
		n, err := w.InsertBuffered(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if n != 4 {
			t.Fatalf("inserted %d rows, want 4", n)
		}
	}

	rows, err := conn.Query(ctx, fmt.Sprintf("SELECT %s FROM events ORDER BY kafka_offset, kafka_partition", strings.Join(projector.EventColumns, ", ")))
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var got []map[string]any
	for rows.Next() {
		dest := make([]any, len(projector.EventColumns))
		for i, c := range projector.EventColumns {
			dest[i] = reflect.New(reflect.TypeOf(want[0][c])).Interface()
		}
		if err := rows.Scan(dest...); err != nil {
			t.Fatal(err)
		}
		row := map[string]any{}
		for i, c := range projector.EventColumns {
			row[c] = reflect.ValueOf(dest[i]).Elem().Interface()
		}
		got = append(got, row)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	order := []map[string]any{want[1], want[1], want[0], want[0], want[2], want[2], want[3], want[3]} // by offset
	if len(got) != len(order) {
		t.Fatalf("read %d rows back, want %d", len(got), len(order))
	}
	for i, g := range got {
		for _, c := range projector.EventColumns {
			if !sameValue(g[c], order[i][c]) {
				t.Errorf("row %d (%s) %s = %#v, want %#v", i, order[i]["id"], c, g[c], order[i][c])
			}
		}
	}
}

func sameValue(got, want any) bool {
	if g, ok := got.(time.Time); ok {
		return g.Equal(want.(time.Time))
	}
	g, wv := reflect.ValueOf(got), reflect.ValueOf(want)
	if g.Kind() == reflect.Slice && g.Len() == 0 && wv.Len() == 0 {
		return true
	}
	return reflect.DeepEqual(got, want)
}

// benchDecision is a decision as the scorer writes one for a browser's
// login: a dozen headers, user agent, enrichments, signals and
// contributions; every fifth starts a session and every tenth carries an
// extra object and a list match.
func benchDecision(i int) schemas.Decision {
	received := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC).Add(time.Duration(i) * time.Millisecond)
	d := schemas.Decision{V: 1,
		Event: schemas.Event{V: 1, ID: uuid.Must(uuid.NewV7()).String(), AppID: "app-1", Kind: schemas.KindRisk,
			Type: "$login", Status: "$succeeded",
			User: schemas.User{ID: fmt.Sprintf("user-%d", i%5000), Email: fmt.Sprintf("user%d@example.com", i%5000), Traits: json.RawMessage(`{"plan":"pro"}`)},
			Context: schemas.Context{IP: fmt.Sprintf("198.51.%d.%d", i%200, i%250), RequestToken: "test_" + strings.Repeat("x", 40), ClientID: "client-" + fmt.Sprint(i%3000),
				Library: &schemas.Library{Name: "castle-node", Version: "2.1.0"},
				Headers: map[string]string{
					"user-agent":         "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
					"accept":             "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
					"accept-language":    "en-US,en;q=0.9",
					"accept-encoding":    "gzip, deflate, br",
					"host":               "app.example.com",
					"origin":             "https://app.example.com",
					"referer":            "https://app.example.com/login",
					"content-type":       "application/json",
					"content-length":     "123",
					"sec-ch-ua":          `"Chromium";v="120", "Google Chrome";v="120"`,
					"sec-ch-ua-platform": `"macOS"`,
					"x-forwarded-for":    "198.51.100.7",
				}},
			Properties: json.RawMessage(`{"plan":"pro","attempt":1}`),
			ReceivedAt: received, CreatedAt: &received},
		Device: schemas.Device{Token: fmt.Sprintf("dev-%d", i%8000), Fingerprint: fmt.Sprintf("fp-%d", i%8000), UserAgent: schemas.UserAgent{
			Raw:     "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
			Browser: "Chrome", BrowserVersion: "120.0.0", BrowserType: "browser", Engine: "Blink", OS: "Mac OS X", OSVersion: "10.15.7",
			Platform: "macOS", DeviceFamily: "Mac", DeviceBrand: "Apple", DeviceModel: "Mac", DeviceType: "desktop"}},
		Risk: 0.42, Action: "allow", Scores: schemas.Scores{AccountTakeover: 0.42, AccountAbuse: 0.1, Bot: 0.05},
		Signals:       []string{"new_device", "new_ip", "proxy_ip"},
		Policy:        &schemas.PolicyOutcome{Action: "allow", ID: "pol-default", Name: "Default", RevisionID: "rev-7"},
		Contributions: []schemas.Contribution{{Name: "new_device", Value: 0.2}, {Name: "new_ip", Value: 0.1}, {Name: "proxy_ip", Value: 0.1}, {Name: "velocity", Value: 0.02}},
		IP:            &schemas.IPInfo{CountryCode: "US", City: "Ashburn", ASN: 14618, ISP: "Amazon", Datacenter: i%7 == 0},
		Email:         &schemas.EmailInfo{Domain: "example.com"},
	}
	if i%5 == 0 {
		ms := received.UnixMilli()
		d.Sessions = []schemas.SessionChange{{UUID: uuid.NewString(), ID: "sess-" + fmt.Sprint(i), DeviceToken: d.Device.Token, Status: "active", StartedAtMs: ms, LastActivityAtMs: ms}}
	}
	if i%10 == 0 {
		d.Event.Extra = map[string]json.RawMessage{"authentication_method": json.RawMessage(`{"type":"$password"}`)}
		d.Lists = []schemas.ListMatch{{ListID: "list-1", ItemID: "item-1", Field: "ip"}}
	}
	return d
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		panic(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkEventRows buffers a batch of 1,000 decision records and
// inserts them into ClickHouse, as a flush does: decoding, the rows and
// the batch. cpu-µs/decision is this process's CPU time (ClickHouse's
// own is not counted).
func BenchmarkEventRows(b *testing.B) {
	const n = 1000
	conn, db := chtest.NewDatabase(b)
	recs := make([]*kgo.Record, n)
	for i := range recs {
		d := benchDecision(i)
		recs[i] = record(b, &d, int32(i%2), int64(i))
	}
	w := projector.NewBare(projector.Config{Database: db, BatchSize: n, FlushInterval: time.Second, InsertTimeout: 30 * time.Second}, conn)
	ctx := context.Background()
	var ms0, ms1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms0)
	cpu := cpuTime()
	b.ResetTimer()
	for range b.N {
		for _, r := range recs {
			w.Add(r)
		}
		if _, err := w.InsertBuffered(ctx); err != nil {
			b.Fatal(err)
		}
		w.Reset()
	}
	b.StopTimer()
	used := cpuTime() - cpu
	runtime.ReadMemStats(&ms1)
	per := float64(b.N * n)
	b.ReportMetric(float64(used.Nanoseconds())/1e3/per, "cpu-µs/decision")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/1e3/per, "µs/decision")
	b.ReportMetric(float64(ms1.Mallocs-ms0.Mallocs)/per, "allocs/decision")
	b.ReportMetric(float64(ms1.TotalAlloc-ms0.TotalAlloc)/per, "B/decision")
}
