package e2e_test

import (
	"context"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/moat-dev/moat/internal/stacktest"
)

var sqlBlock = regexp.MustCompile("(?s)```sql\n(.*?)```")

// TestAnalyticsQueriesRun runs every sql block of docs/analytics.md on a
// real ClickHouse holding real pipeline data, so the documented queries
// keep working.
func TestAnalyticsQueriesRun(t *testing.T) {
	doc, err := os.ReadFile("../../docs/analytics.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := sqlBlock.FindAllStringSubmatch(string(doc), -1)
	if len(blocks) < 5 {
		t.Fatalf("only %d sql blocks", len(blocks))
	}
	s := stacktest.New(t, stacktest.Options{})
	secret := stacktest.Secret("app-a")
	calls := []struct{ path, body string }{
		{"/v1/log", `{"type":"$login","status":"$failed","user":{"id":"u2"},"context":{"ip":"198.51.100.9","headers":{"User-Agent":"curl/8"}}}`},
		{"/v1/log", `{"type":"$custom","name":"Plan changed","user":{"id":"u1"},"properties":{"plan":"pro"},"context":{"ip":"203.0.113.1"}}`},
		// u3 signs in from u1's browser: one device, two accounts.
		{"/v1/track", `{"event":"$login.succeeded","user_id":"u3","context":{"client_id":"cid-u1","ip":"203.0.113.1","headers":{"User-Agent":"curl/8"}}}`},
		{"/v1/risk", riskBody("u1", "tok-docs", "")},
	}
	for i := 0; i < 5; i++ {
		calls = append(calls, struct{ path, body string }{"/v1/track", trackBody("u1", i)})
	}
	for _, c := range calls {
		if code, body := s.Post(c.path, secret, c.body); code != 204 && code != 201 {
			t.Fatalf("%s: %d %s", c.path, code, body)
		}
	}
	s.WaitEvents("app-a", uint64(len(calls)), 20*time.Second)
	s.WaitCount(10*time.Second, 4, "SELECT count() FROM devices_state WHERE app_id = 'app-a'") // u1 (two devices), u2, u3
	// Feedback and an account recovery for u1, through the API.
	var token string
	if err := s.Conn.QueryRow(context.Background(), "SELECT any(device_token) FROM devices_state WHERE app_id = 'app-a' AND user_id = 'u1'").Scan(&token); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/v1/devices/" + token + "/report", "/v1/users/u1/recover"} {
		if code, body := s.Do("PUT", path, secret, ""); code != 200 && code != 204 {
			t.Fatalf("PUT %s: %d %s", path, code, body)
		}
	}
	for i, b := range blocks {
		q := strings.ReplaceAll(b[1], "'default'", "'app-a'")
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		rows, err := s.Conn.Query(ctx, q)
		if err != nil {
			cancel()
			t.Errorf("query %d failed: %v\n%s", i+1, err, q)
			continue
		}
		n := 0
		for rows.Next() {
			n++
		}
		if err := rows.Err(); err != nil {
			t.Errorf("query %d: %v", i+1, err)
		}
		rows.Close()
		cancel()
		if n == 0 {
			t.Errorf("query %d returned no rows on data that should match:\n%s", i+1, q)
		}
	}
}
