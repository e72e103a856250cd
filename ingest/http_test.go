package ingest

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/moat-dev/moat/internal/apps"
	"github.com/moat-dev/moat/internal/httpapi"
	"github.com/moat-dev/moat/internal/kafka"
	"github.com/moat-dev/moat/schemas"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

var routes = map[schemas.Kind]string{
	schemas.KindTrack:    "/v1/track",
	schemas.KindLog:      "/v1/log",
	schemas.KindIdentify: "/v1/identify",
}

const testSecret = "ingest-test-secret-0123456789abcd"

// newTestServer serves the ingest routes over HTTP against a kfake broker
// reached over TCP, and returns a function counting the log's records.
func newTestServer(t *testing.T) (string, func() int64) {
	url, records, _ := newTestServerBrokers(t)
	return url, records
}

func newTestServerBrokers(t *testing.T) (string, func() int64, []string) {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	kcfg := kafka.DefaultConfig()
	kcfg.Brokers = c.ListenAddrs()
	cl, err := kgo.NewClient(kgo.SeedBrokers(kcfg.Brokers...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := kafka.EnsureTopics(ctx, cl, kcfg, schemas.TopicSpec{Name: schemas.TopicEvents}); err != nil {
		t.Fatal(err)
	}
	prod, err := NewProducer(Config{Kafka: kcfg, ProduceTimeout: 2 * time.Second}, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(prod.Close)
	reg, err := apps.New([]apps.App{{ID: "app", Secret: testSecret}})
	if err != nil {
		t.Fatal(err)
	}
	e := httpapi.New(httpapi.Config{BodyLimit: 1 << 20}, log)
	e.Use(httpapi.Authenticate(reg))
	NewHandler(prod, nil, log).Routes(e.Group(""))
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	adm := kadm.NewClient(cl)
	records := func() int64 {
		ends, err := adm.ListEndOffsets(context.Background(), schemas.TopicEvents)
		if err != nil {
			t.Fatal(err)
		}
		var n int64
		ends.Each(func(o kadm.ListedOffset) { n += o.Offset })
		return n
	}
	return srv.URL, records, kcfg.Brokers
}

func post(t *testing.T, url, body string, hdr map[string]string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth("", testSecret)
	req.Header.Set("Content-Type", "application/json")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, b
}

// TestMalformedOverHTTP sends every malformed body of the decoder's table
// through the HTTP API: each gets its documented 4xx with a Castle error
// body naming the field, and nothing reaches the log.
func TestMalformedOverHTTP(t *testing.T) {
	url, records := newTestServer(t)
	n := 0
	for _, tc := range malformedCases {
		path, ok := routes[tc.Kind]
		if !ok {
			continue // risk, filter and authenticate are tested with their routes
		}
		n++
		t.Run(tc.Name, func(t *testing.T) {
			code, body := post(t, url+path, tc.Body, tc.Header)
			var e struct {
				Type    string `json:"type"`
				Message string `json:"message"`
			}
			if err := json.Unmarshal(body, &e); err != nil {
				t.Fatalf("%d %s: body is not JSON: %v", code, body, err)
			}
			if code != tc.Status || e.Type != tc.Type || e.Message == "" || !strings.Contains(e.Message, tc.Field) {
				t.Errorf("got %d %s, want %d %s naming %q", code, body, tc.Status, tc.Type, tc.Field)
			}
		})
	}
	if n < 30 {
		t.Errorf("only %d malformed cases over HTTP, want at least 30", n)
	}
	if got := records(); got != 0 {
		t.Errorf("%d records reached the log", got)
	}
	// The same server accepts a good call afterwards.
	if code, body := post(t, url+"/v1/track", `{"event":"$login.succeeded","user_id":"u1"}`, nil); code != http.StatusNoContent {
		t.Fatalf("good call: %d %s", code, body)
	}
	if got := records(); got != 1 {
		t.Errorf("%d records after one good call", got)
	}
}

// TestAcceptedEventEnvelope checks the envelope a 204 put on the log.
func TestAcceptedEventEnvelope(t *testing.T) {
	url, _, brokers := newTestServerBrokers(t)
	before := time.Now().UTC().Truncate(time.Millisecond)
	code, body := post(t, url+"/v1/track.json", `{"event":"$login.failed","user_id":"u1","user_traits":{"email":"a@b.c"},
		"context":{"ip":"1.2.3.4","client_id":"cid","headers":{"User-Agent":"curl/8","X-Forwarded-For":"1.2.3.4"}}}`, nil)
	if code != http.StatusNoContent || len(body) != 0 {
		t.Fatalf("%d %q", code, body)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(schemas.TopicEvents), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	fs := cl.PollRecords(ctx, 1)
	if fs.NumRecords() != 1 {
		t.Fatalf("no record: %v", fs.Errors())
	}
	r := fs.Records()[0]
	var ev schemas.Event
	if err := json.Unmarshal(r.Value, &ev); err != nil {
		t.Fatal(err)
	}
	if ev.V != 1 || ev.AppID != "app" || ev.Kind != schemas.KindTrack || ev.Type != "$login" || ev.Status != "$failed" ||
		ev.LegacyEvent != "$login.failed" || ev.User.ID != "u1" || ev.User.Email != "a@b.c" || ev.Context.IP != "1.2.3.4" ||
		ev.Context.ClientID != "cid" || ev.Context.Headers["x-forwarded-for"] != "1.2.3.4" {
		t.Errorf("envelope = %+v", ev)
	}
	if len(ev.ID) != 36 || ev.ID[14] != '7' {
		t.Errorf("id %q is not a UUIDv7", ev.ID)
	}
	if ev.ReceivedAt.Before(before) || time.Since(ev.ReceivedAt) > time.Minute || !ev.ReceivedAt.Equal(ev.ReceivedAt.Truncate(time.Millisecond)) {
		t.Errorf("received_at %v", ev.ReceivedAt)
	}
	if string(r.Key) != "app\x00u:u1" {
		t.Errorf("key %q", r.Key)
	}
}
