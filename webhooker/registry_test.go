package webhooker

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/moat-dev/moat/internal/apps"
	"github.com/moat-dev/moat/internal/endpoints"
	"github.com/moat-dev/moat/internal/kafka"
	"github.com/moat-dev/moat/schemas"
	"github.com/twmb/franz-go/pkg/kgo"
)

// registryEnv is the endpoint registry as the api role (manager, its own
// table without the key) and the webhooker role (a table with the key)
// use it, on the test's broker.
type registryEnv struct {
	mgr  *endpoints.Manager
	hook *endpoints.Table
}

func runTable(t testing.TB, kcfg kafka.Config, c *endpoints.Cipher) *endpoints.Table {
	t.Helper()
	tb, err := endpoints.NewTable(kcfg, c, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tb.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
		tb.Close()
	})
	return tb
}

// newRegistry creates the endpoints topic (compacted) and the registry.
// hookKey is the key the webhooker's table gets (nil: none).
func newRegistry(t testing.TB, brokers []string, hookKey []byte) *registryEnv {
	t.Helper()
	kcfg := kafka.Config{Brokers: brokers, Partitions: 3, ReplicationFactor: 1, Retention: 24 * time.Hour}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := kafka.EnsureTopics(ctx, cl, kcfg, schemas.AllTopics()...); err != nil {
		t.Fatal(err)
	}
	key := bytes.Repeat([]byte{9}, endpoints.KeySize)
	c, err := endpoints.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	var hc *endpoints.Cipher
	if hookKey != nil {
		if hc, err = endpoints.NewCipher(hookKey); err != nil {
			t.Fatal(err)
		}
	}
	mgr, err := endpoints.NewManager(endpoints.ManagerConfig{Kafka: kcfg, ProduceTimeout: 2 * time.Second}, runTable(t, kcfg, nil), c, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(mgr.Close)
	return &registryEnv{mgr: mgr, hook: runTable(t, kcfg, hc)}
}

var registryKey = bytes.Repeat([]byte{9}, endpoints.KeySize)

// privateApp is an app whose API endpoints may reach loopback receivers,
// with no apps-file endpoints.
func privateApp(id string) apps.App {
	return apps.App{ID: id, Secret: "api-secret-of-" + id + "-0123456789", AllowPrivateEndpoints: true}
}

func (r *registryEnv) create(t testing.TB, appID, url string, types ...string) (endpoints.Endpoint, string) {
	t.Helper()
	e, secret, err := r.mgr.Create(context.Background(), appID, endpoints.Spec{URL: url, Types: types, Enabled: true})
	if err != nil {
		t.Fatal(err)
	}
	return e, secret
}

func (r *registryEnv) update(t testing.TB, appID, id string, p endpoints.Patch) string {
	t.Helper()
	_, secret, err := r.mgr.Update(context.Background(), appID, id, p)
	if err != nil {
		t.Fatal(err)
	}
	return secret
}

func (rc *receiver) setSecrets(s ...string) {
	rc.mu.Lock()
	rc.secrets = s
	rc.mu.Unlock()
}

// next waits for rc's next request (at most 5 s).
func (rc *receiver) next(t *testing.T) received {
	t.Helper()
	select {
	case r := <-rc.arrived:
		return r
	case <-time.After(5 * time.Second):
		t.Fatal("no request within 5s")
		return received{}
	}
}

// quietFor fails the test if rc gets a request within d.
func (rc *receiver) quietFor(t *testing.T, d time.Duration, what string) {
	t.Helper()
	n := rc.requestCount()
	time.Sleep(d)
	if got := rc.requestCount(); got != n {
		t.Fatalf("%s: %d more requests", what, got-n)
	}
}

// seen waits (at most 5 s) until the worker's endpoint set satisfies ok
// for the endpoint appID/id (nil when the worker does not have it): the
// worker follows the registry asynchronously, a few milliseconds behind
// the api's writes.
func seen(t *testing.T, w *Worker, appID, id string, ok func(*endpoint) bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !ok(w.current().byKey[endpointKey(appID, id)]); {
		if time.Now().After(deadline) {
			t.Fatalf("the worker never saw the change of endpoint %s/%s", appID, id)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestLiveEndpoints: endpoints created, updated, disabled and deleted
// through the registry apply to a running worker, without a restart.
func TestLiveEndpoints(t *testing.T) {
	brokers := newCluster(t)
	reg := newRegistry(t, brokers, registryKey)
	log := &memLog{}
	w := startWorker(t, testConfig(brokers), registry(t, privateApp("a"), privateApp("b")), log, WithEndpoints(reg.hook))
	p := newProducer(t, brokers)

	rc := newReceiver(t, []string{"unset"}, always(http.StatusOK))
	ep, secret := reg.create(t, "a", rc.srv.URL+"/hook")
	rc.setSecrets(secret)
	created := time.Now()
	p.send(t, notification("a", 1), notification("b", 1))
	got := rc.next(t)
	t.Logf("first delivery to a new endpoint %s after its creation", time.Since(created))
	if time.Since(created) > 2*time.Second || got.n.ID != notification("a", 1).ID || got.deliveryID != DeliveryID("a", ep.ID, got.n.ID) {
		t.Fatalf("delivery %+v after %s", got, time.Since(created))
	}
	rc.quietFor(t, 200*time.Millisecond, "app b's notification")

	// Types: only reviews from now on.
	reg.update(t, "a", ep.ID, endpoints.Patch{Types: &[]string{schemas.NotifyReviewOpened}})
	seen(t, w.w, "a", ep.ID, func(e *endpoint) bool { return e != nil && !e.wants(schemas.NotifyIncidentConfirmed) })
	review := notification("a", 3)
	review.Type = schemas.NotifyReviewOpened
	p.send(t, notification("a", 2), review)
	if got := rc.next(t); got.n.Type != schemas.NotifyReviewOpened {
		t.Fatalf("got %s, want only the review", got.n.Type)
	}
	rc.quietFor(t, 200*time.Millisecond, "filtered type")

	// Rotation: the new secret signs X-Castle-Signature, both sign
	// X-Moat-Signature (the receiver checks with each in turn below).
	rotated := reg.update(t, "a", ep.ID, endpoints.Patch{Types: &[]string{}, RotateSecret: true})
	rc.setSecrets(rotated, secret)
	// Wait for the worker to follow the update: a notification it takes
	// before that is still filtered by the old types (CI saw one dropped).
	seen(t, w.w, "a", ep.ID, func(e *endpoint) bool { return e != nil && e.wants(schemas.NotifyIncidentConfirmed) })
	p.send(t, notification("a", 4))
	rc.next(t)
	rc.setSecrets(rotated)
	p.send(t, notification("a", 5))
	rc.next(t)
	rc.checkSignatures()
	rc.mu.Lock()
	rc.secrets = []string{secret} // the old secret alone no longer matches X-Castle-Signature
	rc.mu.Unlock()
	p.send(t, notification("a", 6))
	rc.next(t)
	rc.mu.Lock()
	problems := len(rc.problems)
	rc.problems = nil
	rc.mu.Unlock()
	if problems != 1 {
		t.Fatalf("%d signature problems with the previous secret, want 1 (Castle's header)", problems)
	}

	// Disabled: nothing new.
	reg.update(t, "a", ep.ID, endpoints.Patch{Enabled: new(bool)})
	seen(t, w.w, "a", ep.ID, func(e *endpoint) bool { return e != nil && !e.enabled })
	p.send(t, notification("a", 7))
	rc.quietFor(t, 300*time.Millisecond, "disabled endpoint")

	// Deleted: nothing new, even enabled before.
	on := true
	reg.update(t, "a", ep.ID, endpoints.Patch{Enabled: &on})
	seen(t, w.w, "a", ep.ID, func(e *endpoint) bool { return e != nil && e.enabled })
	p.send(t, notification("a", 8))
	rc.next(t)
	if err := reg.mgr.Delete(context.Background(), "a", ep.ID); err != nil {
		t.Fatal(err)
	}
	seen(t, w.w, "a", ep.ID, func(e *endpoint) bool { return e == nil })
	p.send(t, notification("a", 9))
	rc.quietFor(t, 300*time.Millisecond, "deleted endpoint")
	w.stop(t)
	if s := w.w.Stats(); s.Delivered != 6 || s.DeadLettered != 0 || s.Dropped != 0 {
		t.Fatalf("stats %+v", s)
	}
}

// TestDeletedEndpointDropsRetries: retries pending for an endpoint deleted
// through the API are dropped, with a delivery-log row, not dead-lettered;
// retries of a disabled endpoint are dead-lettered (replayable).
func TestDeletedEndpointDropsRetries(t *testing.T) {
	brokers := newCluster(t)
	reg := newRegistry(t, brokers, registryKey)
	log := &memLog{}
	cfg := testConfig(brokers)
	cfg.Schedule = []time.Duration{400 * time.Millisecond, 400 * time.Millisecond, 400 * time.Millisecond}
	cfg.BreakerThreshold = 1000
	w := startWorker(t, cfg, registry(t, privateApp("a")), log, WithEndpoints(reg.hook))
	p := newProducer(t, brokers)

	gone := newReceiver(t, []string{"unset"}, always(http.StatusInternalServerError))
	goneEp, s1 := reg.create(t, "a", gone.srv.URL)
	gone.setSecrets(s1)
	off := newReceiver(t, []string{"unset"}, always(http.StatusInternalServerError))
	offEp, s2 := reg.create(t, "a", off.srv.URL)
	off.setSecrets(s2)

	p.send(t, notification("a", 1))
	gone.next(t)
	off.next(t)
	if err := reg.mgr.Delete(context.Background(), "a", goneEp.ID); err != nil {
		t.Fatal(err)
	}
	reg.update(t, "a", offEp.ID, endpoints.Patch{Enabled: new(bool)})

	dl := deadLetters(t, brokers, 1)[0]
	if dl.EndpointID != offEp.ID || dl.LastError != "endpoint disabled" || dl.Attempts != 2 {
		t.Fatalf("dead letter %+v", dl)
	}
	eventually(t, 5*time.Second, "the dropped retry", func() bool { return w.w.Stats().Dropped == 1 })
	gone.quietFor(t, 500*time.Millisecond, "deleted endpoint")
	if gone.requestCount() != 1 || off.requestCount() != 1 {
		t.Fatalf("requests: deleted %d, disabled %d; want 1 each", gone.requestCount(), off.requestCount())
	}
	var dropped []Attempt
	for _, a := range log.all() {
		if a.Outcome == OutcomeDropped {
			dropped = append(dropped, a)
		}
	}
	if len(dropped) != 1 || dropped[0].EndpointID != goneEp.ID || dropped[0].Error != "endpoint deleted" ||
		dropped[0].DeliveryID != DeliveryID("a", goneEp.ID, notification("a", 1).ID) || dropped[0].Attempt != 2 {
		t.Fatalf("dropped rows %+v", dropped)
	}
	w.stop(t)
	if s := w.w.Stats(); s.DeadLettered != 1 || s.Dropped != 1 || s.Delivered != 0 {
		t.Fatalf("stats %+v", s)
	}
}

// TestAddressedNotification: a test notification goes to its endpoint
// only, whatever its types and even when disabled; one addressed to a
// missing endpoint is dropped.
func TestAddressedNotification(t *testing.T) {
	brokers := newCluster(t)
	reg := newRegistry(t, brokers, registryKey)
	cfgRecv := newReceiver(t, endpointSecrets("a"), always(http.StatusOK))
	app := testApp("a", cfgRecv.srv.URL) // apps-file endpoint ep0, every type
	app.AllowPrivateEndpoints = true
	log := &memLog{}
	w := startWorker(t, testConfig(brokers), registry(t, app), log, WithEndpoints(reg.hook))
	p := newProducer(t, brokers)

	target := newReceiver(t, []string{"unset"}, always(http.StatusOK))
	ep, secret := reg.create(t, "a", target.srv.URL, schemas.NotifyReviewOpened)
	target.setSecrets(secret)
	reg.update(t, "a", ep.ID, endpoints.Patch{Enabled: new(bool)})
	other := newReceiver(t, []string{"unset"}, always(http.StatusOK))
	_, s2 := reg.create(t, "a", other.srv.URL)
	other.setSecrets(s2)

	n := notification("a", 1)
	n.Type, n.EndpointID = schemas.NotifyWebhookTest, ep.ID
	toConfig := notification("a", 2)
	toConfig.Type, toConfig.EndpointID = schemas.NotifyWebhookTest, "ep0"
	missing := notification("a", 3)
	missing.Type, missing.EndpointID = schemas.NotifyWebhookTest, "ep_missing"
	p.send(t, n, toConfig, missing)
	if got := target.next(t); got.n.Type != schemas.NotifyWebhookTest || got.deliveryID != DeliveryID("a", ep.ID, n.ID) {
		t.Fatalf("target got %+v", got)
	}
	if got := cfgRecv.next(t); got.n.ID != toConfig.ID {
		t.Fatalf("apps-file endpoint got %+v", got)
	}
	eventually(t, 10*time.Second, "the dropped notification", func() bool { return w.w.Stats().Dropped == 1 })
	other.quietFor(t, 300*time.Millisecond, "an endpoint the test was not addressed to")
	if cfgRecv.requestCount() != 1 || target.requestCount() != 1 {
		t.Fatalf("requests: apps-file %d, target %d", cfgRecv.requestCount(), target.requestCount())
	}
	target.checkSignatures()
	cfgRecv.checkSignatures()
	found := false
	for _, a := range log.all() {
		if a.Outcome == OutcomeDropped && a.EndpointID == "ep_missing" && a.Error == "endpoint not found" {
			found = true
		}
	}
	if !found {
		t.Fatalf("no dropped row for the missing endpoint: %+v", log.all())
	}
}

// TestManagedEndpointWithoutKey: a webhooker that cannot decrypt an API
// endpoint's secrets never signs with anything else: the deliveries are
// dead-lettered with the reason, and nothing is sent.
func TestManagedEndpointWithoutKey(t *testing.T) {
	brokers := newCluster(t)
	reg := newRegistry(t, brokers, nil)
	w := startWorker(t, testConfig(brokers), registry(t, privateApp("a")), nil, WithEndpoints(reg.hook))
	rc := newReceiver(t, []string{"unset"}, always(http.StatusOK))
	reg.create(t, "a", rc.srv.URL)
	newProducer(t, brokers).send(t, notification("a", 1))
	dl := deadLetters(t, brokers, 1)[0]
	if !strings.Contains(dl.LastError, "signing secrets unavailable") || !strings.Contains(dl.LastError, "no endpoints key") {
		t.Fatalf("dead letter %+v", dl)
	}
	if rc.requestCount() != 0 {
		t.Fatal("delivered without the endpoint's secret")
	}
	w.stop(t)
}
