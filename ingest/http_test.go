package ingest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
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

// TestConcurrentCallsArriveIntact posts many calls at once, with bodies of
// every size (the request body and record value buffers are pooled, and the
// largest are not), and checks that each record on the log is byte for
// byte the envelope of its own call: no buffer is reused while a record or
// an event still needs it.
func TestConcurrentCallsArriveIntact(t *testing.T) {
	url, _, brokers := newTestServerBrokers(t)
	const calls, workers = 300, 24
	pads := [...]int{0, 100, 3000, 5000, 20000, 70000, 200}
	bodies := make([]string, calls)
	for i := range bodies {
		bodies[i] = fmt.Sprintf(`{"type":"$custom","name":"n-%d","user":{"id":"user-%d","traits":{"i":%d}},`+
			`"context":{"ip":"10.0.%d.%d","headers":{"User-Agent":"ua-%d","X_Custom_%d":"v%d","Accept":"*/*"}},`+
			`"properties":{"i":%d,"pad":"%s"}}`,
			i, i, i, i/250, i%250, i, i, i, i, strings.Repeat(string(rune('a'+i%26)), pads[i%len(pads)]))
	}
	paths := [...]string{"/v1/track", "/v1/log"}
	next := make(chan int)
	errs := make(chan error, calls)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := range next {
				req, _ := http.NewRequest(http.MethodPost, url+paths[i%2], strings.NewReader(bodies[i]))
				req.SetBasicAuth("", testSecret)
				res, err := http.DefaultClient.Do(req)
				if err != nil {
					errs <- err
					continue
				}
				io.Copy(io.Discard, res.Body)
				res.Body.Close()
				if res.StatusCode != http.StatusNoContent {
					errs <- fmt.Errorf("call %d: status %d", i, res.StatusCode)
				}
			}
		})
	}
	for i := range calls {
		next <- i
	}
	close(next)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(schemas.TopicEvents),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxBytes(64<<20))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	seen := make([]bool, calls)
	for n := 0; n < calls; {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("%d of %d records: %v", n, calls, err)
		}
		for _, r := range fs.Records() {
			n++
			var got schemas.Event
			if err := json.Unmarshal(r.Value, &got); err != nil {
				t.Fatalf("record %d: %v", r.Offset, err)
			}
			var i int
			if _, err := fmt.Sscanf(got.User.ID, "user-%d", &i); err != nil || i < 0 || i >= calls || seen[i] {
				t.Fatalf("record %d: user %q unexpected or seen twice", r.Offset, got.User.ID)
			}
			seen[i] = true
			want, err := Decode(got.Kind, []byte(bodies[i]), nil)
			if err != nil {
				t.Fatal(err)
			}
			if got.Kind != []schemas.Kind{schemas.KindTrack, schemas.KindLog}[i%2] {
				t.Errorf("call %d: kind %q", i, got.Kind)
			}
			want.V, want.ID, want.AppID, want.ReceivedAt = got.V, got.ID, "app", got.ReceivedAt
			if w := want.AppendJSON(nil); !bytes.Equal(r.Value, w) {
				t.Fatalf("call %d: record value\n%.300s\nwant\n%.300s", i, r.Value, w)
			}
			if string(r.Key) != "app\x00u:"+got.User.ID {
				t.Errorf("call %d: key %q", i, r.Key)
			}
			if len(r.Headers) != 1 || r.Headers[0].Key != schemas.HeaderSchema || string(r.Headers[0].Value) != "event.v1" {
				t.Errorf("call %d: headers %v", i, r.Headers)
			}
		}
	}
}

// TestAppendBrokerDown checks that a record the client could not send is
// failed once the produce timeout passes: Append answers then with a
// "not written" error, not after the ambiguity grace.
func TestAppendBrokerDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there any more
	kcfg := kafka.DefaultConfig()
	kcfg.Brokers = []string{addr}
	prod, err := NewProducer(Config{Kafka: kcfg, ProduceTimeout: 300 * time.Millisecond}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	ev := schemas.Event{V: 1, ID: "id", AppID: "app", Kind: schemas.KindTrack, Type: "$login"}
	start := time.Now()
	err = prod.Append(context.Background(), &ev)
	if err == nil || errors.Is(err, ErrNotAcknowledged) {
		t.Fatalf("err = %v, want a not-written error", err)
	}
	if d := time.Since(start); d < 300*time.Millisecond || d > 5*time.Second {
		t.Errorf("Append answered after %v, want about the 300ms produce timeout", d)
	}
}
