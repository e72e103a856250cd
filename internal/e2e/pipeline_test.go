package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moat-dev/moat/internal/stacktest"
	"github.com/twmb/franz-go/pkg/kmsg"
)

const chromeUA = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"

func trackBody(user string, i int) string {
	return fmt.Sprintf(`{"event":"$login.succeeded","user_id":%q,"user_traits":{"email":"%s@example.com"},"properties":{"i":%d},
		"context":{"client_id":"cid-%s","ip":"203.0.113.%d","headers":{"User-Agent":%q,"Accept-Language":"en-US"}},
		"sent_at":"2026-11-22T02:23:15.915860"}`, user, user, i, user, i%250, chromeUA)
}

// TestEventsReachClickHouseExactlyOnce posts a mix of calls for two apps
// and checks that each app sees exactly its rows, with the right fields.
func TestEventsReachClickHouseExactlyOnce(t *testing.T) {
	s := stacktest.New(t, stacktest.Options{})
	a, b := stacktest.Secret("app-a"), stacktest.Secret("app-b")
	const n = 120
	for i := 0; i < n; i++ {
		var path, body string
		switch i % 3 {
		case 0:
			path, body = "/v1/track", trackBody(fmt.Sprintf("u%d", i%7), i)
		case 1:
			path, body = "/v1/log", fmt.Sprintf(`{"type":"$login","status":"$failed","user":{"id":"u%d"},"context":{"ip":"198.51.100.1","headers":[["User-Agent",%q]]}}`, i%7, chromeUA)
		default:
			path, body = "/v1/identify.json", fmt.Sprintf(`{"user_id":"u%d","user_traits":{"name":"U"}}`, i%7)
		}
		if code, resp := s.Post(path, a, body); code != http.StatusNoContent {
			t.Fatalf("%s: %d %s", path, code, resp)
		}
	}
	for i := 0; i < 5; i++ {
		if code, resp := s.Post("/v1/track", b, trackBody("u0", i)); code != http.StatusNoContent {
			t.Fatalf("app b: %d %s", code, resp)
		}
	}
	s.WaitEvents("app-a", n, 20*time.Second)
	s.WaitEvents("app-b", 5, 20*time.Second)

	ctx := context.Background()
	var (
		kind, typ, status, legacy, userID, email, ip, browser, token, fp string
		partition                                                        int32
		offset                                                           int64
		receivedMs                                                       uint64
		createdMs                                                        int64
	)
	err := s.Conn.QueryRow(ctx, `SELECT kind, type, status, legacy_event, user_id, user_email, ip, ua_browser, device_token, fingerprint,
		kafka_partition, kafka_offset, received_at_ms, created_at_ms
		FROM events FINAL WHERE app_id = 'app-a' AND kind = 'track' AND user_id = 'u0' ORDER BY received_at_ms LIMIT 1`).
		Scan(&kind, &typ, &status, &legacy, &userID, &email, &ip, &browser, &token, &fp, &partition, &offset, &receivedMs, &createdMs)
	if err != nil {
		t.Fatal(err)
	}
	if kind != "track" || typ != "$login" || status != "$succeeded" || legacy != "$login.succeeded" || userID != "u0" ||
		email != "u0@example.com" || ip != "203.0.113.0" || browser != "Chrome" || token == "" || len(fp) != 32 || partition < 0 || offset < 0 {
		t.Errorf("row = %q %q %q %q %q %q %q %q %q %q %d %d", kind, typ, status, legacy, userID, email, ip, browser, token, fp, partition, offset)
	}
	if time.Since(time.UnixMilli(int64(receivedMs))) > time.Minute {
		t.Errorf("received_at_ms %d is not now", receivedMs)
	}
	// Naive Python timestamps are UTC: sent_at is not created_at, which is absent.
	if createdMs != 0 {
		t.Errorf("created_at_ms = %d, want 0 (only sent_at was given)", createdMs)
	}

	// Per device: u0 used one client id in track calls and a header-only
	// fingerprint in log calls, so it has two devices; counts are exact.
	// u0 gets i = 0, 7, 14, ... ; i%3 picks track (device 1), log (device 2), identify (no device).
	var wantTrack, wantLog uint64
	for i := 0; i < n; i++ {
		if i%7 == 0 {
			switch i % 3 {
			case 0:
				wantTrack++
			case 1:
				wantLog++
			}
		}
	}
	s.WaitCount(10*time.Second, wantTrack+wantLog, `SELECT sum(event_count) FROM devices_state WHERE app_id = 'app-a' AND user_id = 'u0'`)
	if n := s.Count(`SELECT count() FROM devices_state WHERE app_id = 'app-a' AND user_id = 'u0'`); n != 2 {
		t.Errorf("u0 has %d devices, want 2", n)
	}
}

// TestProjectorRestartMidStream stops the projector while events flow and
// starts it again: every event is in ClickHouse exactly once.
func TestProjectorRestartMidStream(t *testing.T) {
	s := stacktest.New(t, stacktest.Options{})
	secret := stacktest.Secret("app-a")
	const n = 3000
	var posted atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < n; i += 8 {
				if code, _ := s.Post("/v1/track", secret, trackBody(fmt.Sprintf("u%d", i%50), i)); code != http.StatusNoContent {
					t.Errorf("post %d: status %d", i, code)
					return
				}
				posted.Add(1)
			}
		}(w)
	}
	for s.Events("app-a") < 300 {
		time.Sleep(20 * time.Millisecond)
	}
	s.StopProjector()
	stoppedAt := s.Events("app-a")
	time.Sleep(300 * time.Millisecond)
	s.StartProjector()
	wg.Wait()
	if posted.Load() != n {
		t.Fatalf("posted %d of %d", posted.Load(), n)
	}
	s.WaitEvents("app-a", n, 30*time.Second)
	if stoppedAt >= n {
		t.Logf("projector was stopped after all events were written (%d); the restart was not mid-stream", stoppedAt)
	}
	// Duplicates may exist before the merge but never as a query sees them.
	if dup := s.Count("SELECT count() FROM (SELECT id FROM events FINAL WHERE app_id = 'app-a' GROUP BY id HAVING count() > 1)"); dup != 0 {
		t.Fatalf("%d duplicated events", dup)
	}
}

// TestBrokerOutageGives503AndLosesNothing makes the broker refuse writes:
// ingest answers 503 service_unavailable; once the broker is back, every
// accepted event and every retried one is in ClickHouse exactly once.
func TestBrokerOutageGives503AndLosesNothing(t *testing.T) {
	s := stacktest.New(t, stacktest.Options{ProduceTimeout: 500 * time.Millisecond})
	secret := stacktest.Secret("app-a")
	var refuse atomic.Bool
	s.Cluster.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		s.Cluster.KeepControl()
		if !refuse.Load() {
			return nil, nil, false
		}
		// Refuse the batch: every partition answers NOT_ENOUGH_REPLICAS.
		pr := req.(*kmsg.ProduceRequest)
		resp := pr.ResponseKind().(*kmsg.ProduceResponse)
		for _, rt := range pr.Topics {
			st := kmsg.NewProduceResponseTopic()
			st.Topic = rt.Topic
			st.TopicID = rt.TopicID
			for _, rp := range rt.Partitions {
				sp := kmsg.NewProduceResponseTopicPartition()
				sp.Partition = rp.Partition
				sp.ErrorCode = 19 // NOT_ENOUGH_REPLICAS: retriable, nothing written
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		return resp, nil, true
	})

	accepted := 0
	for i := 0; i < 10; i++ {
		if code, _ := s.Post("/v1/track", secret, trackBody("before", i)); code == http.StatusNoContent {
			accepted++
		}
	}
	refuse.Store(true)
	var failed []string
	for i := 0; i < 5; i++ {
		body := trackBody("during", i)
		code, resp := s.Post("/v1/track", secret, body)
		if code != http.StatusServiceUnavailable {
			t.Fatalf("during outage: %d %s, want 503", code, resp)
		}
		var e struct{ Type, Message string }
		if err := json.Unmarshal([]byte(resp), &e); err != nil || e.Type != "service_unavailable" || e.Message == "" {
			t.Fatalf("during outage: body %s", resp)
		}
		failed = append(failed, body)
	}
	refuse.Store(false)
	for _, body := range failed { // the app retries until accepted
		for attempt := 1; ; attempt++ {
			code, resp := s.Post("/v1/track", secret, body)
			if code == http.StatusNoContent {
				accepted++
				break
			}
			if code != http.StatusServiceUnavailable || attempt == 20 {
				t.Fatalf("retry %d: %d %s", attempt, code, resp)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	s.WaitEvents("app-a", uint64(accepted), 20*time.Second)
	time.Sleep(500 * time.Millisecond) // a late ghost write would show up here
	if got := s.Events("app-a"); got != uint64(accepted) {
		t.Fatalf("%d events, want %d", got, accepted)
	}
}

// TestAuthAndTenantIsolation checks that every route authenticates and that
// one app never sees another app's devices.
func TestAuthAndTenantIsolation(t *testing.T) {
	s := stacktest.New(t, stacktest.Options{})
	a, b := stacktest.Secret("app-a"), stacktest.Secret("app-b")
	if code, resp := s.Post("/v1/track", a, trackBody("victim", 1)); code != http.StatusNoContent {
		t.Fatalf("%d %s", code, resp)
	}
	s.WaitEvents("app-a", 1, 20*time.Second)

	for _, tt := range []struct{ method, path string }{
		{"POST", "/v1/track"}, {"POST", "/v1/log"}, {"POST", "/v1/identify"}, {"POST", "/v1/track.json"},
		{"GET", "/v1/users/victim/devices"}, {"GET", "/v1/devices/x"},
	} {
		for name, secret := range map[string]string{"none": "", "wrong": "wrong-secret-0123456789abcdef01234", "empty": ":"} {
			code, body := s.Do(tt.method, tt.path, secret, "{}")
			if code != http.StatusUnauthorized || !strings.Contains(body, `"type":"unauthorized"`) {
				t.Errorf("%s %s with %s secret: %d %s", tt.method, tt.path, name, code, body)
			}
		}
	}

	// The devices view is written by the same insert as the timeline but
	// becomes visible a moment after it: poll.
	var list struct {
		TotalCount int `json:"total_count"`
		Data       []struct {
			Token string `json:"token"`
		} `json:"data"`
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		code, body := s.Do("GET", "/v1/users/victim/devices", a, "")
		if err := json.Unmarshal([]byte(body), &list); code != 200 || err != nil {
			t.Fatalf("app a devices: %d %s", code, body)
		}
		if list.TotalCount == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("app a devices: %s", body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	token := list.Data[0].Token
	// The device's owner is looked up in device_users, another view of the
	// same insert, which can show a moment after device_states: poll.
	for deadline := time.Now().Add(10 * time.Second); ; {
		code, body := s.Do("GET", "/v1/devices/"+token, a, "")
		if code == 200 && strings.Contains(body, `"user_id":"victim"`) {
			break
		}
		if code != 404 || time.Now().After(deadline) {
			t.Fatalf("app a device: %d %s", code, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if code, body := s.Do("GET", "/v1/users/victim/devices", b, ""); code != 200 || !strings.Contains(body, `"total_count":0`) {
		t.Errorf("app b sees app a's devices: %d %s", code, body)
	}
	if code, body := s.Do("GET", "/v1/devices/"+token, b, ""); code != 404 || !strings.Contains(body, `"type":"not_found"`) {
		t.Errorf("app b reads app a's device: %d %s", code, body)
	}
	// The caller's current device is marked by its client id.
	if code, body := s.Do("GET", "/v1/users/victim/devices?cid=cid-victim", a, ""); code != 200 || !strings.Contains(body, `"is_current_device":true`) {
		t.Errorf("current device not marked: %d %s", code, body)
	}
}

// TestUnknownRoutesAndLimits checks the JSON errors of the HTTP layer.
func TestUnknownRoutesAndLimits(t *testing.T) {
	s := stacktest.New(t, stacktest.Options{NoWorkers: true})
	a := stacktest.Secret("app-a")
	big := `{"event":"$login.succeeded","user_id":"u","properties":{"pad":"` + strings.Repeat("x", 1<<20) + `"}}`
	tests := []struct {
		name, method, path, body string
		status                   int
		typ                      string
	}{
		{"too large", "POST", "/v1/track", big, 413, "request_entity_too_large"},
		{"unknown route", "POST", "/v1/nope", "{}", 404, "route_not_found"},
		{"wrong method", "GET", "/v1/track", "", 405, "method_not_allowed"},
	}
	for _, tt := range tests {
		code, body := s.Do(tt.method, tt.path, a, tt.body)
		if code != tt.status || !strings.Contains(body, `"type":"`+tt.typ+`"`) {
			t.Errorf("%s: %d %s, want %d %s", tt.name, code, body, tt.status, tt.typ)
		}
	}
	if n := s.Records("moat.events.v1"); n != 0 {
		t.Errorf("%d records reached the log", n)
	}
}
