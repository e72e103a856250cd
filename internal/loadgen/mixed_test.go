package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moat-dev/moat/ingest"
	"github.com/moat-dev/moat/schemas"
)

// TestScoredBodies checks the /v1/risk and /v1/filter bodies: valid JSON
// in the modern SDK shape (type, status, user, request_token, context with
// ip and headers), the run markers first in properties, and accepted by
// the server's decoder for the kind.
func TestScoredBodies(t *testing.T) {
	g := newBodyGen("run-2", 50, 7)
	r := rand.New(rand.NewPCG(5, 6))
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	kinds := map[string]schemas.Kind{PathRisk: schemas.KindRisk, PathFilter: schemas.KindFilter}
	types := map[string]map[string]int{PathRisk: {}, PathFilter: {}}
	for seq := uint64(0); seq < 2000; seq++ {
		path := []string{PathRisk, PathFilter}[seq%2]
		body := g.appendBody(nil, path, seq, now, r)
		var m struct {
			Type         string         `json:"type"`
			Status       string         `json:"status"`
			Event        *string        `json:"event"`
			RequestToken string         `json:"request_token"`
			User         map[string]any `json:"user"`
			Properties   map[string]any `json:"properties"`
			Context      struct {
				IP      string            `json:"ip"`
				Headers map[string]string `json:"headers"`
			} `json:"context"`
		}
		if err := json.Unmarshal(body, &m); err != nil {
			t.Fatalf("seq %d: invalid JSON: %v\n%s", seq, err, body)
		}
		if m.Event != nil || m.Type == "" || m.Status == "" || m.RequestToken == "" {
			t.Fatalf("seq %d %s: want type, status, request_token and no legacy event: %s", seq, path, body)
		}
		if id, _ := m.User["id"].(string); id == "" || m.User["email"] == nil {
			t.Fatalf("seq %d %s: user without id or email: %s", seq, path, body)
		}
		if m.Context.IP == "" || m.Context.Headers["User-Agent"] == "" {
			t.Fatalf("seq %d %s: context lacks ip or User-Agent: %s", seq, path, body)
		}
		if m.Properties[PropRun] != "run-2" || m.Properties[PropSeq] != float64(seq) {
			t.Fatalf("seq %d: bad markers %v", seq, m.Properties)
		}
		marker := fmt.Sprintf(`"properties":{"lg_run":"run-2","lg_seq":%d,"lg_sent_ms":%d`, seq, now.UnixMilli())
		if !bytes.Contains(body, []byte(marker)) {
			t.Fatalf("seq %d: markers not compact/first: %s", seq, body)
		}
		ev, err := ingest.Decode(kinds[path], body, nil)
		if err != nil {
			t.Fatalf("seq %d: ingest.Decode(%s): %v\n%s", seq, kinds[path], err, body)
		}
		if ev.User.ID == "" || ev.Context.RequestToken == "" || ev.Context.IP == "" {
			t.Fatalf("seq %d: decoded event incomplete: %+v", seq, ev)
		}
		types[path][ev.Type+" "+ev.Status]++
	}
	for path, want := range map[string][]string{
		PathRisk:   {"$login $succeeded", "$login $failed", "$registration $succeeded"},
		PathFilter: {"$login $attempted", "$registration $attempted"},
	} {
		for _, w := range want {
			if types[path][w] == 0 {
				t.Errorf("%s: no %q in %v", path, w, types[path])
			}
		}
	}
}

func TestDevicesPath(t *testing.T) {
	g := newBodyGen("run", 20, 1)
	r := rand.New(rand.NewPCG(1, 2))
	re := regexp.MustCompile(`^/v1/users/lg-u-\d{7}/devices$`)
	seen := map[string]bool{}
	for i := 0; i < 100; i++ {
		p := string(g.appendDevicesPath(nil, r))
		if !re.MatchString(p) {
			t.Fatalf("devices path %q", p)
		}
		seen[p] = true
	}
	if len(seen) < 10 {
		t.Errorf("only %d distinct users", len(seen))
	}
}

func TestParsePathsMixed(t *testing.T) {
	got, err := ParsePaths("track=60,log=15,risk=15,filter=5,devices=5")
	if err != nil {
		t.Fatal(err)
	}
	want := []PathWeight{{PathTrack, 60}, {PathLog, 15}, {PathRisk, 15}, {PathFilter, 5}, {PathDevices, 5}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("ParsePaths = %v, want %v", got, want)
	}
	cfg := Config{BaseURL: "http://127.0.0.1:1", Rate: 1, Duration: time.Second, Paths: got}
	if err := cfg.setDefaults(); err != nil {
		t.Errorf("setDefaults rejects the mixed paths: %v", err)
	}
	bad, _ := ParsePaths("track=1,authenticate=1")
	cfg = Config{BaseURL: "http://127.0.0.1:1", Rate: 1, Duration: time.Second, Paths: bad}
	if err := cfg.setDefaults(); err == nil {
		t.Error("setDefaults accepted an unknown path")
	}
	if !isRead(PathDevices) || isRead(PathRisk) {
		t.Error("isRead")
	}
}

// TestRunMixed runs every kind of call against a server answering as Moat
// does (204 track/log, 201 risk/filter, 200 devices) and checks the
// per-path figures and that GETs carry no body.
func TestRunMixed(t *testing.T) {
	for _, client := range []string{ClientRaw, ClientNetHTTP} {
		t.Run(strings.ReplaceAll(client, "/", ""), func(t *testing.T) {
			var mu sync.Mutex
			bad := []string{}
			devRe := regexp.MustCompile(`^/v1/users/lg-u-\d{7}/devices$`)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
				body, _ := io.ReadAll(req.Body)
				fail := func(why string) {
					mu.Lock()
					bad = append(bad, req.Method+" "+req.URL.Path+": "+why)
					mu.Unlock()
					http.Error(w, why, http.StatusBadRequest)
				}
				if _, p, _ := req.BasicAuth(); p != "sec" {
					fail("auth")
					return
				}
				if req.Method == http.MethodGet {
					if !devRe.MatchString(req.URL.Path) || len(body) != 0 {
						fail("bad GET")
						return
					}
					w.Header().Set("Content-Type", "application/json")
					w.Write([]byte(`{"total_count":0,"data":[]}`))
					return
				}
				if !json.Valid(body) {
					fail("invalid JSON")
					return
				}
				switch req.URL.Path {
				case PathTrack, PathLog:
					w.WriteHeader(http.StatusNoContent)
				case PathRisk:
					w.Header().Set("Content-Type", "application/json")
					w.WriteHeader(http.StatusCreated)
					w.Write([]byte(`{"risk":0.1,"policy":{"action":"allow"}}`))
				case PathFilter:
					// Every filter call fails, to see errors by status.
					http.Error(w, `{"type":"service_unavailable"}`, http.StatusServiceUnavailable)
				default:
					fail("unknown path")
				}
			}))
			defer srv.Close()
			rep, err := Run(context.Background(), Config{
				BaseURL: srv.URL, Secret: "sec", Rate: 400, Duration: time.Second,
				Users: 20, Workers: 8, Client: client, RunID: "mixed", Seed: 3,
				Paths: []PathWeight{{PathTrack, 40}, {PathLog, 10}, {PathRisk, 30}, {PathFilter, 10}, {PathDevices, 10}},
			}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(bad) > 0 {
				t.Fatalf("server rejected: %v", bad[:min(5, len(bad))])
			}
			if len(rep.PerPath) != 5 {
				t.Fatalf("PerPath = %+v", rep.PerPath)
			}
			var sent int64
			for _, p := range rep.PerPath {
				sent += p.Sent
				if p.Sent == 0 || p.Rate <= 0 {
					t.Errorf("%s: sent %d at %.0f/s", p.Path, p.Sent, p.Rate)
				}
				switch p.Path {
				case PathFilter:
					if p.Accepted != 0 || p.StatusCounts[503] != p.Sent || p.errorsString() != fmt.Sprintf("503: %d", p.Sent) {
						t.Errorf("filter: %+v", p)
					}
				case PathRisk:
					if p.Accepted != p.Sent || p.StatusCounts[201] != p.Sent || p.Latency.N != int(p.Sent) || p.errorsString() != "none" {
						t.Errorf("risk: %+v", p)
					}
				case PathDevices:
					if p.Accepted != p.Sent || p.StatusCounts[200] != p.Sent {
						t.Errorf("devices: %+v", p)
					}
				}
			}
			if sent != rep.Sent || rep.Sent != 400 {
				t.Errorf("per-path sent %d, total %d", sent, rep.Sent)
			}
			dev := rep.PerPath[4].Accepted
			if rep.AcceptedEvents != rep.Accepted-dev {
				t.Errorf("accepted events %d, accepted %d, devices %d", rep.AcceptedEvents, rep.Accepted, dev)
			}
			md := rep.Markdown()
			for _, want := range []string{"| Path | Requests/s |", "| POST /v1/risk |", "| GET /v1/users/{id}/devices |", "503: "} {
				if !strings.Contains(md, want) {
					t.Errorf("Markdown lacks %q:\n%s", want, md)
				}
			}
		})
	}
}
