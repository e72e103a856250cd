package chaos_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moat-dev/moat/schemas"
	"github.com/moat-dev/moat/webhooker"
)

// receiver is the webhook endpoint of the chaos run: a receiver as the
// webhooker's documentation asks for. It checks both signatures of every
// request, processes each delivery id once (a repeated delivery is
// answered 200 and counted, not processed again), and can be taken down:
// it then refuses every request, alternately answering 503 and closing the
// connection without an answer.
type receiver struct {
	secret string
	down   atomic.Bool

	// refused counts the requests refused while down, dropped those of
	// them whose connection was closed.
	refused, dropped atomic.Int64

	mu sync.Mutex
	// processed holds the body of each delivery id's first accepted
	// request: the receiver's deduplicated view.
	processed map[string][]byte
	// accepted counts the 2xx answers per delivery id (at least once).
	accepted map[string]int
	// attempt is X-Moat-Attempt of the accepted request that processed the
	// delivery.
	attempt map[string]int
	// refusedIDs are the delivery ids refused at least once while down.
	refusedIDs map[string]bool
	// bad lists the requests rejected for a bad signature or header.
	bad []string
}

func newReceiver(secret string) *receiver {
	return &receiver{secret: secret, processed: map[string][]byte{}, accepted: map[string]int{},
		attempt: map[string]int{}, refusedIDs: map[string]bool{}}
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	id := r.Header.Get(webhooker.HeaderDeliveryID)
	if rc.down.Load() {
		rc.mu.Lock()
		rc.refusedIDs[id] = true
		rc.mu.Unlock()
		if rc.refused.Add(1)%2 == 1 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		rc.dropped.Add(1)
		if hj, ok := w.(http.Hijacker); ok {
			if c, _, err := hj.Hijack(); err == nil {
				c.Close()
				return
			}
		}
		panic(http.ErrAbortHandler) // closes the connection too
	}
	reject := func(why string) {
		rc.mu.Lock()
		rc.bad = append(rc.bad, fmt.Sprintf("delivery %q: %s", id, why))
		rc.mu.Unlock()
		w.WriteHeader(http.StatusUnauthorized)
	}
	attempt, aerr := strconv.Atoi(r.Header.Get(webhooker.HeaderAttempt))
	switch {
	case err != nil:
		reject("read body: " + err.Error())
		return
	case id == "" || r.Header.Get(webhooker.HeaderIdempotencyKey) != id:
		reject("no delivery id, or an Idempotency-Key that differs")
		return
	case aerr != nil || attempt < 1:
		reject("bad " + webhooker.HeaderAttempt)
		return
	case !webhooker.Verify(rc.secret, body, r.Header.Get(webhooker.HeaderCastleSignature)):
		reject(webhooker.HeaderCastleSignature + " does not verify")
		return
	}
	if err := webhooker.VerifyTimestamped(r.Header.Get(webhooker.HeaderSignature), body, time.Now(), webhooker.DefaultTolerance, rc.secret); err != nil {
		reject(webhooker.HeaderSignature + ": " + err.Error())
		return
	}
	rc.mu.Lock()
	if _, dup := rc.processed[id]; !dup {
		rc.processed[id] = body
		rc.attempt[id] = attempt
	}
	rc.accepted[id]++
	rc.mu.Unlock()
}

// rejected returns how many requests were rejected for a bad signature or
// header (the webhooker dead-letters them: waiting for them is in vain).
func (rc *receiver) rejected() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return len(rc.bad)
}

// missing returns how many of the delivery ids in want were not processed.
func (rc *receiver) missing(want map[string][]byte) (n int) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	for id := range want {
		if _, ok := rc.processed[id]; !ok {
			n++
		}
	}
	return n
}

// receiverReport is what the receiver saw, checked against want (delivery
// id → the body the webhooker must send for it).
type receiverReport struct {
	processed, requests, duplicates int
	refused, dropped                int64
	refusedIDs                      int
	retried, maxAttempt             int // processed on attempt ≥ 2
	problems                        []string
}

func (rc *receiver) check(want map[string][]byte) receiverReport {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rep := receiverReport{processed: len(rc.processed), refused: rc.refused.Load(), dropped: rc.dropped.Load(), refusedIDs: len(rc.refusedIDs)}
	rep.problems = append(rep.problems, rc.bad...)
	for id, body := range rc.processed {
		exp, ok := want[id]
		switch {
		case !ok:
			rep.problems = append(rep.problems, fmt.Sprintf("delivery %s is no incident of the run", id))
		case !bytes.Equal(body, exp):
			rep.problems = append(rep.problems, fmt.Sprintf("delivery %s: body %s, want %s", id, body, exp))
		}
		rep.requests += rc.accepted[id]
		rep.duplicates += rc.accepted[id] - 1
		if a := rc.attempt[id]; a > 1 {
			rep.retried++
			rep.maxAttempt = max(rep.maxAttempt, a)
		}
	}
	return rep
}

// TestReceiverChecks holds the chaos run's receiver to its checks: it
// processes a correctly signed delivery once, rejects a wrong signature,
// and refuses everything while down.
func TestReceiverChecks(t *testing.T) {
	const secret = "receiver-secret-0123456789abcdef0123"
	rc := newReceiver(secret)
	srv := httptest.NewServer(rc)
	defer srv.Close()
	n := schemas.Notification{V: 1, ID: "n1", AppID: "default", Type: schemas.NotifyIncidentConfirmed,
		CreatedAt: time.Date(2026, 11, 22, 8, 0, 0, 0, time.UTC), UserID: "u1", Data: []byte(`{"user_id":"u1"}`)}
	body, err := webhooker.Body(&n)
	if err != nil {
		t.Fatal(err)
	}
	id := webhooker.DeliveryID("default", "ep", n.ID)
	// A new connection per request: Go's transport would send a request
	// with an Idempotency-Key again on a fresh connection when a reused one
	// is closed without an answer (the webhooker's does).
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	post := func(signWith string, attempt int) (int, error) {
		req, _ := http.NewRequest("POST", srv.URL, bytes.NewReader(body))
		req.Header.Set(webhooker.HeaderDeliveryID, id)
		req.Header.Set(webhooker.HeaderIdempotencyKey, id)
		req.Header.Set(webhooker.HeaderAttempt, strconv.Itoa(attempt))
		req.Header.Set(webhooker.HeaderCastleSignature, webhooker.Sign(signWith, body))
		req.Header.Set(webhooker.HeaderSignature, webhooker.SignTimestamped(time.Now(), body, signWith))
		res, err := client.Do(req)
		if err != nil {
			return 0, err
		}
		res.Body.Close()
		return res.StatusCode, nil
	}
	want := map[string][]byte{id: body}

	rc.down.Store(true)
	if code, err := post(secret, 1); err != nil || code != http.StatusServiceUnavailable {
		t.Fatalf("down, first request: %d %v, want 503", code, err)
	}
	if _, err := post(secret, 1); err == nil {
		t.Fatal("down, second request: answered, want the connection closed")
	}
	rc.down.Store(false)
	if code, err := post("another-secret-0123456789abcdef0123", 2); err != nil || code != http.StatusUnauthorized {
		t.Fatalf("wrong secret: %d %v, want 401", code, err)
	}
	if rc.missing(want) != 1 || rc.rejected() != 1 {
		t.Fatalf("after a wrong signature: missing %d, rejected %d", rc.missing(want), rc.rejected())
	}
	for range 2 {
		if code, err := post(secret, 2); err != nil || code != http.StatusOK {
			t.Fatalf("signed: %d %v, want 200", code, err)
		}
	}
	rep := rc.check(want)
	if rc.missing(want) != 0 || rep.processed != 1 || rep.requests != 2 || rep.duplicates != 1 || rep.retried != 1 ||
		rep.refused < 2 || rep.dropped < 1 || rep.refusedIDs != 1 || len(rep.problems) != 1 {
		t.Fatalf("report %+v", rep)
	}
	// A body other than the incident's is a problem.
	if rep := rc.check(map[string][]byte{id: []byte(`{}`)}); len(rep.problems) != 2 {
		t.Fatalf("another body: problems %q", rep.problems)
	}
}
