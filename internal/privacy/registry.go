package privacy

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moat-dev/moat/internal/kafka"
	"github.com/moat-dev/moat/schemas"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Registry is the in-memory view of schemas.TopicPrivacy: it reads every
// partition from the start (committed records only, no consumer group)
// and follows the topic while Run runs. Callers wait until it has caught
// up with the topic (Sync) before they trust a "not forgotten" answer. It
// is safe for concurrent use.
type Registry struct {
	h   *Hasher
	log *slog.Logger
	f   *kafka.Follower

	mu sync.RWMutex
	// deleted maps a registry key to its latest deletion (epoch ms).
	deleted map[string]int64
	// apps counts the keys per app, so that an app without deletions
	// costs no hashing.
	apps map[string]int

	bad atomic.Int64
}

// NewRegistry connects a follower of the registry topic. Call Run to start
// it; it closes its client when Run returns.
func NewRegistry(cfg kafka.Config, h *Hasher, log *slog.Logger) (*Registry, error) {
	if h == nil {
		return nil, errors.New("privacy: registry needs a hasher")
	}
	r := &Registry{h: h, log: log.With("component", "privacy-registry"), deleted: map[string]int64{}, apps: map[string]int{}}
	f, err := kafka.NewFollower(cfg, schemas.TopicPrivacy, "privacy", r.apply, r.log)
	if err != nil {
		return nil, err
	}
	r.f = f
	return r, nil
}

// Hasher is the registry's hasher.
func (r *Registry) Hasher() *Hasher { return r.h }

// Run applies records until ctx ends, then closes the client and returns
// nil. It may be called once.
func (r *Registry) Run(ctx context.Context) error { return r.f.Run(ctx) }

// apply applies one registry record.
func (r *Registry) apply(rec *kgo.Record) {
	if len(rec.Value) == 0 {
		// The registry is never tombstoned; an empty value is ignored
		// rather than un-forgetting anyone.
		return
	}
	v, err := decodeRecord(rec.Value)
	if err != nil {
		r.bad.Add(1)
		r.log.Error("undecodable privacy record skipped", "partition", rec.Partition, "offset", rec.Offset, "err", err)
		return
	}
	r.mu.Lock()
	r.applyLocked(string(rec.Key), v.AppID, v.DeletedAt.UnixMilli())
	r.mu.Unlock()
}

// applyLocked records a deletion of key at ms (r.mu held); the latest
// deletion of a key wins.
func (r *Registry) applyLocked(key, appID string, ms int64) {
	old, ok := r.deleted[key]
	if !ok {
		r.apps[appID]++
	}
	if ms > old {
		r.deleted[key] = ms
	}
}

// Sync waits until the registry holds every record committed to the topic
// before the call (its last stable offsets), so that an answer after it
// reflects every deletion acknowledged so far, by any api instance.
func (r *Registry) Sync(ctx context.Context) error { return r.f.Sync(ctx) }

// DeletedAt returns when identifier (of type typ) of app was last deleted.
func (r *Registry) DeletedAt(appID, typ, identifier string) (time.Time, bool) {
	if identifier == "" {
		return time.Time{}, false
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.apps[appID] == 0 {
		return time.Time{}, false
	}
	ms, ok := r.deleted[r.h.Key(appID, typ, identifier)]
	if !ok {
		return time.Time{}, false
	}
	return time.UnixMilli(ms).UTC(), true
}

// Forgotten reports whether data of app about userID or email (either may
// be empty) dated at is erased: the user id or the email was deleted at or
// after at. Data dated after the latest deletion belongs to whoever uses
// the identifier since, and is not forgotten.
func (r *Registry) Forgotten(appID, userID, email string, at time.Time) bool {
	ms := at.UnixMilli()
	if t, ok := r.DeletedAt(appID, TypeID, userID); ok && t.UnixMilli() >= ms {
		return true
	}
	if t, ok := r.DeletedAt(appID, TypeEmail, email); ok && t.UnixMilli() >= ms {
		return true
	}
	return false
}

// Note applies a deletion the caller knows is committed to the registry
// topic (it wrote it, or read the command that follows it), so that the
// answer is right before the follower has fetched the record.
func (r *Registry) Note(appID, userID, email string, at time.Time) {
	ms := at.UnixMilli()
	r.mu.Lock()
	defer r.mu.Unlock()
	if userID != "" {
		r.applyLocked(r.h.Key(appID, TypeID, userID), appID, ms)
	}
	if email != "" {
		r.applyLocked(r.h.Key(appID, TypeEmail, email), appID, ms)
	}
}

// Len returns how many identifiers the registry holds.
func (r *Registry) Len() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.deleted)
}

// Ignored returns how many records could not be decoded (they are logged).
func (r *Registry) Ignored() int64 { return r.bad.Load() }
