package e2e_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/moat-dev/moat/internal/stacktest"
	"github.com/moat-dev/moat/schemas"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

const firefoxUA = "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0"

// privacyLogin posts a $login via /v1/risk and returns its decision's
// signals, event id and device token. While a restarted scorer restores
// its partitions a call may time out (503); it is scored anyway, so the
// decision is then read from the timeline.
func privacyLogin(t *testing.T, s *stacktest.Stack, app, user, ua, token string) (signals map[string]bool, id, device string) {
	t.Helper()
	body := fmt.Sprintf(`{"type":"$login","status":"$succeeded","user":{"id":%q,"email":"%s@example.com"},"request_token":%q,"expand":["all"],
		"context":{"ip":"203.0.113.7","headers":{"User-Agent":%q,"Accept-Language":"en-US","Accept":"*/*"}}}`, user, user, token, ua)
	code, resp := s.Post("/v1/risk", stacktest.Secret(app), body)
	if code == 201 {
		var r struct {
			ID     string `json:"id"`
			Device struct {
				Token string `json:"token"`
			} `json:"device"`
		}
		if err := json.Unmarshal([]byte(resp), &r); err != nil {
			t.Fatal(err)
		}
		return signalsOf(t, resp), r.ID, r.Device.Token
	}
	if code != 503 {
		t.Fatalf("login %s: %d %s", user, code, resp)
	}
	q := "SELECT count() FROM events FINAL WHERE app_id = ? AND request_token = ?"
	s.WaitCount(30*time.Second, 1, q, app, token)
	var sig []string
	if err := s.Conn.QueryRow(context.Background(), "SELECT signals, toString(id), device_token FROM events FINAL WHERE app_id = ? AND request_token = ?", app, token).
		Scan(&sig, &id, &device); err != nil {
		t.Fatal(err)
	}
	signals = map[string]bool{}
	for _, x := range sig {
		signals[x] = true
	}
	return signals, id, device
}

// groupOffsets returns the offsets group committed on topic.
func groupOffsets(t *testing.T, s *stacktest.Stack, group, topic string) map[int32]int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := s.Admin.FetchOffsets(ctx, group)
	if err == nil {
		err = res.Error()
	}
	out := map[int32]int64{}
	if errors.Is(err, kerr.GroupIDNotFound) { // not (re)joined yet: nothing committed
		return out
	}
	if err != nil {
		t.Fatalf("offsets of %s: %v", group, err)
	}
	res.Each(func(o kadm.OffsetResponse) {
		if o.Topic == topic {
			out[o.Partition] = o.At
		}
	})
	return out
}

// settledOffsets returns group's offsets on topic once two reads half a
// second apart agree (the running role has committed all it read).
func settledOffsets(t *testing.T, s *stacktest.Stack, group, topic string) map[int32]int64 {
	t.Helper()
	last := groupOffsets(t, s, group, topic)
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
		time.Sleep(500 * time.Millisecond)
		now := groupOffsets(t, s, group, topic)
		if maps.Equal(now, last) {
			return now
		}
		last = now
	}
	t.Fatalf("%s keeps committing on %s", group, topic)
	return nil
}

// waitGroupAt waits until group has committed at least want on topic (a
// replay from offset 0 got as far as the first run).
func waitGroupAt(t *testing.T, s *stacktest.Stack, group, topic string, want map[int32]int64) {
	t.Helper()
	if len(want) == 0 {
		t.Fatalf("%s committed nothing on %s", group, topic)
	}
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		got, done := groupOffsets(t, s, group, topic), true
		for p, o := range want {
			if got[p] < o {
				done = false
			}
		}
		if done {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s is at %v on %s, want %v", group, got, topic, want)
		}
	}
}

// resetGroup deletes a stopped role's consumer group, so that it starts
// again from offset 0 (a rebuild from the log).
func resetGroup(t *testing.T, s *stacktest.Stack, group string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := s.Admin.DeleteGroups(ctx, group)
	if err == nil {
		err = res.Error()
	}
	if err != nil && !errors.Is(err, kerr.GroupIDNotFound) { // kfake drops empty groups
		t.Fatalf("delete group %s: %v", group, err)
	}
	for _, topic := range []string{schemas.TopicEvents, schemas.TopicDecisions} {
		if got := groupOffsets(t, s, group, topic); len(got) != 0 {
			t.Fatalf("%s still has offsets %v on %s: no replay from 0", group, got, topic)
		}
	}
}

// TestPrivacyDeleteForgetsTheUser is the erasure scenario: after DELETE
// /v1/privacy/users no API and no ClickHouse view returns the user, the
// scorer treats the user's next login as a brand-new user's (also after a
// restart that restores state from the changelog), and replaying the
// projector or the scorer from offset 0 brings nothing back; another user
// and another app keep everything. Deletes by $id, by $email and by the
// legacy path; the access request and export before.
func TestPrivacyDeleteForgetsTheUser(t *testing.T) {
	s := stacktest.New(t, stacktest.Options{})
	a := stacktest.Secret("app-a")
	count := func(q string, args ...any) uint64 { t.Helper(); return s.Count(q, args...) }
	rows := func(app, user string) uint64 {
		t.Helper()
		return count("SELECT count() FROM events FINAL WHERE app_id = ? AND user_id = ?", app, user)
	}
	devices := func(app, user string) uint64 {
		t.Helper()
		return count("SELECT count() FROM devices_state WHERE app_id = ? AND user_id = ?", app, user)
	}

	// ann's history: Chrome, with a challenged login (a review).
	var annOld []string
	_, id, annChrome := privacyLogin(t, s, "app-a", "ann", chromeUA, "test|policy.action:challenge")
	annOld = append(annOld, id)
	for i := 0; i < 2; i++ {
		_, id, _ := privacyLogin(t, s, "app-a", "ann", chromeUA, fmt.Sprintf("ann-%d", i))
		annOld = append(annOld, id)
	}
	review := annOld[0]
	for i := 0; i < 2; i++ {
		privacyLogin(t, s, "app-a", "bob", chromeUA, fmt.Sprintf("bob-%d", i))
		privacyLogin(t, s, "app-b", "ann", chromeUA, fmt.Sprintf("b-ann-%d", i))
		privacyLogin(t, s, "app-a", "carl", chromeUA, fmt.Sprintf("carl-%d", i))
		privacyLogin(t, s, "app-a", "dan", chromeUA, fmt.Sprintf("dan-%d", i))
	}
	s.WaitCount(20*time.Second, 3, "SELECT count() FROM events FINAL WHERE app_id = 'app-a' AND user_id = 'ann'")
	for _, u := range []string{"bob", "carl", "dan"} {
		s.WaitCount(20*time.Second, 2, "SELECT count() FROM events FINAL WHERE app_id = 'app-a' AND user_id = ?", u)
	}
	s.WaitCount(20*time.Second, 2, "SELECT count() FROM events FINAL WHERE app_id = 'app-b' AND user_id = 'ann'")
	s.WaitCount(20*time.Second, 1, "SELECT count() FROM devices_state WHERE app_id = 'app-a' AND user_id = 'ann'")
	if code, body := s.Do("GET", "/v1/reviews/"+review, a, ""); code != 200 {
		t.Fatalf("review before the delete: %d %s", code, body)
	}

	// A data-access request is recorded in the timeline; the export holds
	// the user's events and devices.
	if code, body := s.Do("POST", "/v1/privacy/users", a, `{"identifier":"ann","identifier_type":"$id"}`); code != 202 || body != "{}\n" {
		t.Fatalf("access request: %d %q", code, body)
	}
	s.WaitCount(20*time.Second, 1, "SELECT count() FROM events FINAL WHERE app_id = 'app-a' AND user_id = 'ann' AND kind = 'user.access'")
	var export struct {
		UserIDs []string `json:"user_ids"`
		Events  []struct {
			ID, Kind, UserID, Email, IP string
			Headers                     map[string]string
		} `json:"events"`
		Devices []struct{ Token string } `json:"devices"`
	}
	code, body := s.Do("GET", "/v1/privacy/users/ann/export", a, "")
	if err := json.Unmarshal([]byte(body), &export); code != 200 || err != nil || len(export.Events) != 4 || len(export.Devices) != 1 ||
		export.Devices[0].Token != annChrome || export.Events[0].ID != annOld[0] || export.Events[0].Email != "ann@example.com" ||
		export.Events[0].Headers["user-agent"] != chromeUA || export.Events[3].Kind != "user.access" {
		t.Fatalf("export: %d %s", code, body)
	}
	code, body = s.Do("GET", "/v1/privacy/users/ANN@example.com/export?identifier_type=$email", a, "")
	if err := json.Unmarshal([]byte(body), &export); code != 200 || err != nil || len(export.UserIDs) != 1 || export.UserIDs[0] != "ann" || len(export.Events) != 4 {
		t.Fatalf("export by email: %d %s", code, body)
	}
	if code, body := s.Do("GET", "/v1/privacy/users/ann/export", stacktest.Secret("app-c"), ""); code != 404 {
		t.Errorf("another app exported ann: %d %s", code, body)
	}

	// Delete ann by id: from the answer on, the API shows nothing of her.
	bobRows, bAnnRows := rows("app-a", "bob"), rows("app-b", "ann")
	if code, body := s.Do("DELETE", "/v1/privacy/users", a, `{"identifier":"ann","identifier_type":"$id"}`); code != 202 || body != "{}\n" {
		t.Fatalf("delete: %d %q", code, body)
	}
	for _, c := range []struct {
		method, path string
		status       int
		body         string
	}{
		{"GET", "/v1/users/ann/devices", 200, `{"total_count":0,"data":[]}`},
		{"GET", "/v1/devices/" + annChrome, 404, ""},
		{"PUT", "/v1/devices/" + annChrome + "/approve", 404, ""},
		{"GET", "/v1/reviews/" + review, 404, ""},
		{"GET", "/v1/privacy/users/ann/export", 404, ""},
		{"PUT", "/v1/users/ann/archive_devices", 404, ""},
	} {
		code, body := s.Do(c.method, c.path, a, "")
		if code != c.status || (c.body != "" && strings.TrimSpace(body) != c.body) {
			t.Errorf("%s %s after the delete: %d %s", c.method, c.path, code, body)
		}
	}
	// ClickHouse forgets her too (the projector's mutations), the
	// command itself stores nothing, and no one else lost a row.
	s.WaitCount(30*time.Second, 0, "SELECT count() FROM events FINAL WHERE app_id = 'app-a' AND user_id = 'ann'")
	s.WaitCount(30*time.Second, 0, "SELECT count() FROM devices_state WHERE app_id = 'app-a' AND user_id = 'ann'")
	s.WaitCount(30*time.Second, 0, "SELECT count() FROM system.mutations WHERE database = ? AND is_done = 0", s.DB)
	if n := count("SELECT count() FROM events WHERE kind = 'user.delete' OR user_email = 'ann@example.com' AND app_id = 'app-a'"); n != 0 {
		t.Errorf("%d rows of the delete command or of ann's email", n)
	}
	if rows("app-a", "bob") != bobRows || rows("app-b", "ann") != bAnnRows || devices("app-a", "bob") != 1 || devices("app-b", "ann") != 1 {
		t.Errorf("other users lost rows: bob %d/%d, app-b ann %d/%d", rows("app-a", "bob"), bobRows, rows("app-b", "ann"), bAnnRows)
	}
	if code, body := s.Do("GET", "/v1/users/ann/devices", stacktest.Secret("app-b"), ""); code != 200 || !strings.Contains(body, `"total_count":1`) {
		t.Errorf("app-b's ann: %d %s", code, body)
	}

	// The scorer forgot her, also after a restart that restores state
	// from the changelog: Chrome, known before, is a new device now.
	s.StopScorer()
	s.StartScorer()
	privacyLogin(t, s, "app-a", "warmup-privacy", chromeUA, "warm-privacy")
	if sig, _, _ := privacyLogin(t, s, "app-a", "ann", firefoxUA, "ann-new-1"); sig["new_device"] {
		t.Errorf("ann's first login after the delete has history: %v", sig)
	}
	if sig, _, _ := privacyLogin(t, s, "app-a", "ann", chromeUA, "ann-new-2"); !sig["new_device"] {
		t.Errorf("ann's old device was remembered after the delete: %v", sig)
	}
	// Her new life is hers: the API and ClickHouse show it.
	s.WaitCount(20*time.Second, 2, "SELECT count() FROM events FINAL WHERE app_id = 'app-a' AND user_id = 'ann'")
	s.WaitCount(20*time.Second, 2, "SELECT count() FROM devices_state WHERE app_id = 'app-a' AND user_id = 'ann'")
	if code, body := s.Do("GET", "/v1/users/ann/devices", a, ""); code != 200 || !strings.Contains(body, `"total_count":2`) {
		t.Errorf("ann's new devices: %d %s", code, body)
	}

	// Delete by email (case and spaces do not matter): carl's id is found
	// in the timeline. The scorer forgets him without a restart.
	if code, body := s.Do("DELETE", "/v1/privacy/users", a, `{"identifier":" Carl@Example.com","identifier_type":"$email"}`); code != 202 {
		t.Fatalf("delete by email: %d %s", code, body)
	}
	if code, body := s.Do("GET", "/v1/users/carl/devices", a, ""); code != 200 || strings.TrimSpace(body) != `{"total_count":0,"data":[]}` {
		t.Errorf("carl's devices after the delete: %d %s", code, body)
	}
	// Delete by the legacy path.
	if code, body := s.Do("DELETE", "/v1/privacy/users/dan", a, ""); code != 202 || body != "{}\n" {
		t.Fatalf("legacy delete: %d %q", code, body)
	}
	for _, u := range []string{"carl", "dan"} {
		s.WaitCount(30*time.Second, 0, "SELECT count() FROM events FINAL WHERE app_id = 'app-a' AND user_id = ?", u)
		s.WaitCount(30*time.Second, 0, "SELECT count() FROM devices_state WHERE app_id = 'app-a' AND user_id = ?", u)
	}
	if sig, _, _ := privacyLogin(t, s, "app-a", "carl", firefoxUA, "carl-new-1"); sig["new_device"] {
		t.Errorf("carl's first login after the delete has history: %v", sig)
	}
	if sig, _, _ := privacyLogin(t, s, "app-a", "carl", chromeUA, "carl-new-2"); !sig["new_device"] {
		t.Errorf("carl's old device was remembered after the delete: %v", sig)
	}
	s.WaitCount(20*time.Second, 2, "SELECT count() FROM events FINAL WHERE app_id = 'app-a' AND user_id = 'carl'")

	// Rebuild ClickHouse from the log: the projector replays every
	// decision from offset 0 and inserts none of the forgotten rows.
	firstRun := settledOffsets(t, s, schemas.GroupProjector, schemas.TopicDecisions)
	s.StopProjector()
	resetGroup(t, s, schemas.GroupProjector)
	s.StartProjector()
	waitGroupAt(t, s, schemas.GroupProjector, schemas.TopicDecisions, firstRun)
	s.WaitCount(30*time.Second, 0, "SELECT count() FROM system.mutations WHERE database = ? AND is_done = 0", s.DB)
	for _, c := range []struct {
		app, user     string
		rows, devices uint64
	}{{"app-a", "ann", 2, 2}, {"app-a", "carl", 2, 2}, {"app-a", "dan", 0, 0}, {"app-a", "bob", bobRows, 1}, {"app-b", "ann", bAnnRows, 1}} {
		if r, d := rows(c.app, c.user), devices(c.app, c.user); r != c.rows || d != c.devices {
			t.Errorf("after the projector's replay %s/%s has %d rows and %d devices, want %d and %d", c.app, c.user, r, d, c.rows, c.devices)
		}
	}
	if n := count("SELECT count() FROM events WHERE app_id = 'app-a' AND has(?, toString(id))", annOld); n != 0 {
		t.Errorf("the replay re-inserted %d of ann's erased rows", n)
	}

	// Rebuild the scorer's decisions from the log: the replay decides
	// none of ann's erased events again.
	end := s.Records(schemas.TopicDecisions)
	firstRun = settledOffsets(t, s, schemas.GroupScorer, schemas.TopicEvents)
	s.StopScorer()
	resetGroup(t, s, schemas.GroupScorer)
	s.StartScorer()
	waitGroupAt(t, s, schemas.GroupScorer, schemas.TopicEvents, firstRun)
	redecided := map[string]int{}
	cl, err := kgo.NewClient(kgo.SeedBrokers(s.Kafka.Brokers...), kgo.ConsumeTopics(schemas.TopicDecisions),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	total := s.Records(schemas.TopicDecisions)
	for idle := 0; idle < 3; { // the topic is read when three polls in a row bring nothing
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		fs := cl.PollFetches(ctx)
		cancel()
		if fs.NumRecords() == 0 {
			idle++
			continue
		}
		idle = 0
		fs.EachRecord(func(r *kgo.Record) {
			var d schemas.Decision
			if json.Unmarshal(r.Value, &d) == nil && d.Event.AppID == "app-a" {
				redecided[d.Event.User.ID+"/"+d.Event.ID]++
			}
		})
	}
	if total <= end {
		t.Fatalf("the scorer's replay decided nothing (%d decisions before, %d after)", end, total)
	}
	for _, id := range annOld {
		if n := redecided["ann/"+id]; n != 1 {
			t.Errorf("ann's erased event %s has %d decisions, want only the original one", id, n)
		}
	}
	bobDecisions := 0
	for k, n := range redecided {
		if strings.HasPrefix(k, "bob/") && n == 2 {
			bobDecisions++
		}
	}
	if bobDecisions != 2 {
		t.Errorf("bob's events were decided again %d times, want 2 (the replay happened)", bobDecisions)
	}
}
