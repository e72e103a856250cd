package scorer_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/moat-dev/moat/internal/privacy"
	"github.com/moat-dev/moat/schemas"
	"github.com/moat-dev/moat/scorer"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestForgottenUsers: events of an identifier erased at or after their
// received_at are skipped (no decision, no state; a synchronous call still
// gets a reply), later ones are scored; a user.delete command passes on to
// the projector and leaves a tombstone on the changelog.
func TestForgottenUsers(t *testing.T) {
	c := newCluster(t)
	h, err := privacy.NewHasher([]byte(strings.Repeat("k", 32)))
	if err != nil {
		t.Fatal(err)
	}
	reg, err := privacy.NewRegistry(c.cfg, h, discard)
	if err != nil {
		t.Fatal(err)
	}
	rctx, rcancel := context.WithCancel(context.Background())
	rdone := make(chan struct{})
	go func() { defer close(rdone); _ = reg.Run(rctx) }()
	defer func() { rcancel(); <-rdone }()
	pw, err := privacy.NewWriter(c.cfg, h, 5*time.Second, discard)
	if err != nil {
		t.Fatal(err)
	}
	defer pw.Close()
	at := time.Date(2026, 11, 22, 0, 0, 10, 0, time.UTC)
	if err := pw.Erase(context.Background(), "app", []privacy.Subject{{Type: privacy.TypeID, Identifier: "gone"}, {Type: privacy.TypeEmail, Identifier: "gone@example.com"}}, nil, at); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := reg.Sync(ctx); err != nil {
		t.Fatal(err)
	}

	ev := func(user, email string, kind schemas.Kind, received time.Time) schemas.Event {
		e := event(1)
		e.ID, e.Kind, e.User, e.ReceivedAt = uuid.Must(uuid.NewV7()).String(), kind, schemas.User{ID: user, Email: email}, received
		return e
	}
	skipped := []schemas.Event{
		ev("gone", "", schemas.KindTrack, at.Add(-time.Second)),
		ev("gone", "", schemas.KindTrack, at), // at the erasure itself
		ev("other", "GONE@example.com", schemas.KindLog, at.Add(-time.Second)),
	}
	sync := ev("gone", "", schemas.KindRisk, at.Add(-time.Millisecond))
	sync.ReplyTo = "ingest-1"
	skipped = append(skipped, sync)
	kept := []schemas.Event{
		ev("gone", "", schemas.KindTrack, at.Add(time.Second)), // a new life
		ev("kim", "", schemas.KindTrack, at),
		ev("kim", "", schemas.KindUserDelete, at.Add(time.Minute)),
		ev("kim", "", schemas.KindTrack, at.Add(2*time.Minute)),
		ev("kim", "", schemas.KindUserAccess, at.Add(3*time.Minute)),
	}
	var recs []*kgo.Record
	for _, e := range append(append([]schemas.Event(nil), skipped...), kept...) {
		recs = append(recs, eventRecord(t, e))
	}
	c.produce(t, recs...)

	w, err := scorer.New(scorer.Config{Kafka: c.cfg, TransactionalID: "test-privacy", MaxPollRecords: 50, Erasures: reg}, newDecider(t), discard)
	if err != nil {
		t.Fatal(err)
	}
	wctx, wcancel := context.WithCancel(context.Background())
	wdone := make(chan error, 1)
	go func() { wdone <- w.Run(wctx) }()
	defer func() { wcancel(); <-wdone }()

	got := map[string]schemas.Decision{}
	for _, r := range c.committed(t, schemas.TopicDecisions, len(kept), 20*time.Second) {
		var d schemas.Decision
		if err := json.Unmarshal(r.Value, &d); err != nil {
			t.Fatal(err)
		}
		got[d.Event.ID] = d
	}
	if len(got) != len(kept) {
		t.Errorf("%d decisions, want %d", len(got), len(kept))
	}
	for _, e := range kept {
		if _, ok := got[e.ID]; !ok {
			t.Errorf("no decision for %s of %s", e.Kind, e.User.ID)
		}
	}
	for _, e := range skipped {
		if _, ok := got[e.ID]; ok {
			t.Errorf("a forgotten %s of %q (%s) was decided", e.Kind, e.User.ID, e.User.Email)
		}
	}
	if d := got[kept[2].ID]; d.Device.Token != "" || d.Risk != 0 {
		t.Errorf("the delete command's decision carries data: %+v", d)
	}
	replies := c.committed(t, schemas.TopicReplies, 1, 5*time.Second)
	if len(replies) != 1 || string(replies[0].Key) != "ingest-1" {
		t.Fatalf("%d replies", len(replies))
	}
	var reply schemas.Decision
	if err := json.Unmarshal(replies[0].Value, &reply); err != nil || reply.Event.ID != sync.ID || reply.Action == "" {
		t.Errorf("reply %s: %v", replies[0].Value, err)
	}

	// kim's changelog: a state, the tombstone, a fresh state; the access
	// request wrote none. "gone" has only the state of its new life.
	var kim, gone []int
	for _, r := range c.committed(t, schemas.TopicScorerState, 4, 10*time.Second) {
		switch string(r.Key) {
		case string(kept[1].Key()):
			kim = append(kim, len(r.Value))
		case string(kept[0].Key()):
			gone = append(gone, len(r.Value))
		}
	}
	if len(kim) != 3 || kim[0] == 0 || kim[1] != 0 || kim[2] == 0 {
		t.Errorf("kim's changelog value sizes %v, want state, tombstone, state", kim)
	}
	if len(gone) != 1 || gone[0] == 0 {
		t.Errorf("gone's changelog value sizes %v, want one state", gone)
	}
}
