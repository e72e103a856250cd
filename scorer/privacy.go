package scorer

import (
	"context"
	"fmt"
	"time"

	json "github.com/goccy/go-json"
	"github.com/moat-dev/moat/schemas"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Erasures says which users were deleted through the privacy API
// (internal/privacy.Registry).
type Erasures interface {
	// Forgotten reports whether data of the app about userID or email
	// (either may be empty) dated at is erased: the identifier was
	// deleted at or after at.
	Forgotten(appID, userID, email string, at time.Time) bool
	// Note applies a deletion read from a user.delete command, whose
	// registry record committed with it.
	Note(appID, userID, email string, at time.Time)
}

// privacy applies the privacy API to one decoded event and reports
// whether it did (ok false: score the event as usual).
//
//   - user.delete: the user's state is dropped, in memory and on the
//     changelog (a tombstone, so a restore does not bring it back), and the
//     command goes on to the projector, which erases the user's rows. It
//     raises no notification.
//   - user.access: recorded in the timeline; it changes no state.
//   - any other event of a forgotten user (its user id or email deleted at
//     or after its received_at) is skipped: no decision, no state change,
//     no notification. A replay of the log thus forgets the user again, so
//     a replay no longer reproduces the original decisions: determinism
//     yields to erasure. A synchronous call still gets its reply, decided
//     as for a user without history, and kept nowhere.
func (w *Worker) privacy(ctx context.Context, r *kgo.Record, ev *schemas.Event) ([]*kgo.Record, bool, error) {
	switch ev.Kind {
	case schemas.KindUserDelete:
		out, err := w.forget(ctx, r, ev)
		return out, true, err
	case schemas.KindUserAccess:
		rec, err := decisionRecord(r.Key, schemas.Decision{V: schemas.DecisionVersion, Event: *ev})
		return []*kgo.Record{rec}, true, err
	}
	e := w.cfg.Erasures
	if e == nil || !e.Forgotten(ev.AppID, ev.User.ID, ev.Email(), ev.ReceivedAt) {
		return nil, false, nil
	}
	if ev.ReplyTo == "" {
		return nil, true, nil
	}
	d, _ := w.decider.Decide(ev, &UserState{})
	b, err := json.Marshal(d)
	if err != nil {
		return nil, true, fmt.Errorf("scorer: encode reply: %w", err)
	}
	return []*kgo.Record{{Topic: schemas.TopicReplies, Key: []byte(ev.ReplyTo), Value: b,
		Headers: []kgo.RecordHeader{{Key: schemas.HeaderSchema, Value: []byte("decision.v1")}}}}, true, nil
}

// forget applies a user.delete command. A command about an email alone
// (no user id: the email's users were not found) drops no state, since
// state is kept per user id.
func (w *Worker) forget(ctx context.Context, r *kgo.Record, ev *schemas.Event) ([]*kgo.Record, error) {
	if w.cfg.Erasures != nil {
		w.cfg.Erasures.Note(ev.AppID, ev.User.ID, ev.User.Email, ev.ReceivedAt)
	}
	rec, err := decisionRecord(r.Key, schemas.Decision{V: schemas.DecisionVersion, Event: *ev})
	if err != nil {
		return nil, err
	}
	out := []*kgo.Record{rec}
	if ev.User.ID != "" {
		tomb, err := w.store.forget(ctx, r.Partition, r.Key)
		if err != nil {
			return nil, fmt.Errorf("scorer: restore state of partition %d: %w", r.Partition, err)
		}
		out = append(out, tomb)
	}
	// Never the user id: deletion requests are not logged with it.
	w.log.Info("user forgotten", "app_id", ev.AppID, "partition", r.Partition, "event_id", ev.ID)
	return out, nil
}

func decisionRecord(key []byte, d schemas.Decision) (*kgo.Record, error) {
	b, err := json.Marshal(d)
	if err != nil {
		return nil, fmt.Errorf("scorer: encode decision: %w", err)
	}
	return &kgo.Record{Topic: schemas.TopicDecisions, Key: key, Value: b,
		Headers: []kgo.RecordHeader{{Key: schemas.HeaderSchema, Value: []byte("decision.v1")}}}, nil
}

// forget drops key's state and returns its tombstone for the changelog,
// bound to the partition of the event it came from.
func (s *stateStore) forget(ctx context.Context, partition int32, key []byte) (*kgo.Record, error) {
	if err := s.ensure(ctx, partition); err != nil {
		return nil, err
	}
	delete(s.users, string(key))
	return &kgo.Record{Topic: schemas.TopicScorerState, Partition: partition, Key: key,
		Headers: []kgo.RecordHeader{{Key: schemas.HeaderSchema, Value: []byte("scorer-state.v1")}}}, nil
}
