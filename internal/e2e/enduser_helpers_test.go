package e2e_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/moat-dev/moat/internal/stacktest"
	"github.com/moat-dev/moat/schemas"
	"github.com/twmb/franz-go/pkg/kgo"
)

var updateGolden = flag.Bool("update", false, "rewrite the golden responses in testdata")

const euFirefoxUA = "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0"

// euResp is an HTTP answer.
type euResp struct {
	code int
	body string
	hdr  http.Header
}

// bearerCall sends a request with a bearer token ("" for none) and extra
// headers.
func bearerCall(t *testing.T, s *stacktest.Stack, method, path, token, body string, hdr ...string) euResp {
	t.Helper()
	req, err := http.NewRequest(method, s.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return euResp{code: res.StatusCode, body: string(b), hdr: res.Header}
}

// expect checks an answer's status and exact body.
func (r euResp) expect(t *testing.T, what string, code int, body string) {
	t.Helper()
	if r.code != code || strings.TrimSpace(r.body) != body {
		t.Errorf("%s: %d %s, want %d %s", what, r.code, r.body, code, body)
	}
}

// loginRisk sends a successful $login risk call and returns the decision.
func loginRisk(t *testing.T, s *stacktest.Stack, secret, user, ua, session string) decisionBody {
	t.Helper()
	sess := ""
	if session != "" {
		sess = fmt.Sprintf(`"session":{"id":%q},`, session)
	}
	body := fmt.Sprintf(`{"type":"$login","status":"$succeeded","user":{"id":%q},"request_token":"rt-%s",%s
		"context":{"ip":"203.0.113.9","headers":{"User-Agent":%q,"Accept-Language":"en-US"}}}`, user, user, sess, ua)
	code, resp := s.Post("/v1/risk", secret, body)
	if code != 201 {
		t.Fatalf("risk: %d %s", code, resp)
	}
	var d decisionBody
	if err := json.Unmarshal([]byte(resp), &d); err != nil {
		t.Fatal(err)
	}
	return d
}

// issueBearer asks for a bearer token for a user and device.
func issueBearer(t *testing.T, s *stacktest.Stack, secret, user, device string) (string, string) {
	t.Helper()
	body := ""
	if device != "" {
		body = fmt.Sprintf(`{"device_token":%q}`, device)
	}
	code, resp := s.Post("/v1/users/"+user+"/tokens", secret, body)
	if code != 201 {
		t.Fatalf("issue token: %d %s", code, resp)
	}
	var tr struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal([]byte(resp), &tr); err != nil || tr.Token == "" {
		t.Fatalf("token response %s", resp)
	}
	return tr.Token, resp
}

var (
	uuidRe     = regexp.MustCompile(`"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"`)
	timeRe     = regexp.MustCompile(`"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z"`)
	bearerRe   = regexp.MustCompile(`"mbt1\.[A-Za-z0-9_\-.]+"`)
	activateRe = regexp.MustCompile(`"mat_[A-Za-z0-9_\-]+"`)
)

// golden compares a JSON answer with testdata/enduser/<name>.json after
// replacing what changes from run to run: uuids, times, tokens, and the
// named values (device tokens, by name).
func golden(t *testing.T, name, body string, names map[string]string) {
	t.Helper()
	goldenIn(t, "enduser", name, body, names)
}

// goldenIn is golden with the files in testdata/<dir>.
func goldenIn(t *testing.T, dir, name, body string, names map[string]string) {
	t.Helper()
	var buf bytes.Buffer
	if err := json.Indent(&buf, []byte(body), "", "  "); err != nil {
		t.Fatalf("%s: not JSON: %v: %s", name, err, body)
	}
	got := buf.String()
	for value, label := range names {
		if value != "" {
			got = strings.ReplaceAll(got, `"`+value+`"`, `"<`+label+`>"`)
		}
	}
	got = uuidRe.ReplaceAllString(got, `"<uuid>"`)
	got = timeRe.ReplaceAllString(got, `"<time>"`)
	got = bearerRe.ReplaceAllString(got, `"<bearer>"`)
	got = activateRe.ReplaceAllString(got, `"<activation token>"`)
	got += "\n"
	path := filepath.Join("testdata", dir, name+".json")
	if *updateGolden {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if string(want) != got {
		t.Errorf("%s differs from %s (run with -update and review the diff):\n%s", name, path, got)
	}
}

// deviceUUIDs maps the devices of an /api/devices list to their uuids:
// "current" for the current one, else by browser name.
func deviceUUIDs(t *testing.T, body string) map[string]string {
	t.Helper()
	var l struct {
		Data []struct {
			UUID      string `json:"uuid"`
			IsCurrent bool   `json:"is_current"`
			Browser   struct {
				Name string `json:"name"`
			} `json:"browser"`
		} `json:"data"`
	}
	if err := json.Unmarshal([]byte(body), &l); err != nil {
		t.Fatalf("list: %v: %s", err, body)
	}
	out := map[string]string{}
	for _, d := range l.Data {
		out[d.Browser.Name] = d.UUID
		if d.IsCurrent {
			out["current"] = d.UUID
		}
	}
	return out
}

// notifications collects the user's notifications on the incidents topic
// until done says they are all there, or the timeout.
func notifications(t *testing.T, s *stacktest.Stack, user string, timeout time.Duration, done func([]schemas.Notification) bool) []schemas.Notification {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(s.Kafka.Brokers...), kgo.ConsumeTopics(schemas.TopicIncidents),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var out []schemas.Notification
	for deadline := time.Now().Add(timeout); !done(out) && time.Now().Before(deadline); {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
			var n schemas.Notification
			if json.Unmarshal(r.Value, &n) == nil && n.UserID == user {
				out = append(out, n)
			}
		})
		cancel()
	}
	return out
}

// sessionEnds counts the $session.ended notifications by reason, and the
// other types by type.
func countNotes(t *testing.T, notes []schemas.Notification) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, n := range notes {
		if n.Type != schemas.NotifySessionEnded {
			out[n.Type]++
			continue
		}
		var d struct {
			Session struct {
				Reason string `json:"reason"`
			} `json:"session"`
		}
		if err := json.Unmarshal(n.Data, &d); err != nil {
			t.Fatal(err)
		}
		out["ended:"+d.Session.Reason]++
	}
	return out
}

func jsonB64(s string) (string, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	return string(b), err
}

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
