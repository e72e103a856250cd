package endpoints

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moat-dev/moat/internal/kafka"
	"github.com/moat-dev/moat/schemas"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Table is the in-memory view of schemas.TopicEndpoints: it reads every
// partition from the start (no consumer group, nothing committed) and
// follows it while Run runs. It is safe for concurrent use.
type Table struct {
	cipher *Cipher
	log    *slog.Logger
	cl     *kgo.Client
	adm    *kadm.Client

	mu      sync.Mutex
	byKey   map[string]*Endpoint
	deleted map[string]bool
	next    map[int32]int64 // per partition, the offset after the last applied record
	changed chan struct{}   // closed (and replaced) whenever records were applied

	version atomic.Uint64
	bad     atomic.Int64
	running atomic.Bool
}

// NewTable connects a table to the brokers of kcfg. With a cipher it
// decrypts the endpoints' secrets (Endpoint.Secrets), which only the
// webhooker needs; without one, Secrets stay empty (SecretsErr is
// ErrNoKey). Run it, and Close it when done.
func NewTable(kcfg kafka.Config, c *Cipher, log *slog.Logger) (*Table, error) {
	if log == nil {
		log = slog.Default()
	}
	log = log.With("component", "endpoints")
	cl, err := kgo.NewClient(append(kafka.ClientOpts(kcfg, log, "moat-endpoints"),
		kgo.ConsumeTopics(schemas.TopicEndpoints),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(time.Second),
		kgo.MetadataMinAge(time.Second),
	)...)
	if err != nil {
		return nil, fmt.Errorf("endpoints: create kafka consumer: %w", err)
	}
	return &Table{
		cipher:  c,
		log:     log,
		cl:      cl,
		adm:     kadm.NewClient(cl),
		byKey:   map[string]*Endpoint{},
		deleted: map[string]bool{},
		next:    map[int32]int64{},
		changed: make(chan struct{}),
	}, nil
}

// Close disconnects the table. Call it after Run returned.
func (t *Table) Close() { t.cl.Close() }

// Run applies the topic's records until ctx ends, then returns nil. It may
// be called once.
func (t *Table) Run(ctx context.Context) error {
	if !t.running.CompareAndSwap(false, true) {
		return errors.New("endpoints: Run called twice")
	}
	for {
		fs := t.cl.PollFetches(ctx)
		if ctx.Err() != nil || fs.IsClientClosed() {
			return nil
		}
		failed := false
		fs.EachError(func(topic string, p int32, err error) {
			if errors.Is(err, context.Canceled) {
				return
			}
			failed = true
			t.log.Warn("fetch failed", "topic", topic, "partition", p, "err", err)
		})
		if !t.apply(fs) && failed {
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(500 * time.Millisecond):
			}
		}
	}
}

// apply applies fetched records and reports whether there were any.
func (t *Table) apply(fs kgo.Fetches) bool {
	got, changed := false, false
	t.mu.Lock()
	defer t.mu.Unlock()
	fs.EachRecord(func(r *kgo.Record) {
		got = true
		if t.applyRecord(r) {
			changed = true
		}
		t.next[r.Partition] = max(t.next[r.Partition], r.Offset+1)
	})
	if changed {
		t.version.Add(1)
	}
	if got {
		close(t.changed)
		t.changed = make(chan struct{})
	}
	return got
}

// applyRecord applies one record (t.mu held) and reports whether the table
// changed.
func (t *Table) applyRecord(r *kgo.Record) bool {
	appID, id, err := splitKey(r.Key)
	if err != nil {
		t.bad.Add(1)
		t.log.Warn("endpoint record ignored", "partition", r.Partition, "offset", r.Offset, "err", err)
		return false
	}
	k := string(r.Key)
	if len(r.Value) == 0 { // tombstone
		_, had := t.byKey[k]
		delete(t.byKey, k)
		t.deleted[k] = true
		return had
	}
	e, err := decode(appID, id, r.Value, t.cipher)
	if err != nil {
		t.bad.Add(1)
		t.log.Warn("endpoint record ignored", "app", appID, "endpoint", id, "partition", r.Partition, "offset", r.Offset, "err", err)
		return false
	}
	t.byKey[k] = e
	delete(t.deleted, k)
	return true
}

// Sync waits until the table has applied every record written to the
// topic before Sync was called (an empty topic returns at once). After it,
// reads show every acknowledged write, whichever process made it.
func (t *Table) Sync(ctx context.Context) error {
	ends, err := t.adm.ListEndOffsets(ctx, schemas.TopicEndpoints)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return fmt.Errorf("endpoints: end offsets of %s: %w", schemas.TopicEndpoints, err)
	}
	want := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			want[o.Partition] = o.Offset
		}
	})
	return t.waitUntil(ctx, func() bool {
		for p, end := range want {
			if t.next[p] < end {
				return false
			}
		}
		return true
	})
}

// WaitFor waits until the table has applied the record at offset of
// partition (a record the caller just wrote).
func (t *Table) WaitFor(ctx context.Context, partition int32, offset int64) error {
	return t.waitUntil(ctx, func() bool { return t.next[partition] > offset })
}

func (t *Table) waitUntil(ctx context.Context, done func() bool) error {
	for {
		t.mu.Lock()
		ok, ch := done(), t.changed
		t.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("endpoints: table not caught up: %w", ctx.Err())
		}
	}
}

// Get returns endpoint id of app appID.
func (t *Table) Get(appID, id string) (Endpoint, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.byKey[string(Key(appID, id))]
	if !ok {
		return Endpoint{}, false
	}
	return e.clone(), true
}

// List returns the endpoints of app appID, oldest first.
func (t *Table) List(appID string) []Endpoint {
	t.mu.Lock()
	var out []Endpoint
	for _, e := range t.byKey {
		if e.AppID == appID {
			out = append(out, e.clone())
		}
	}
	t.mu.Unlock()
	sortEndpoints(out)
	return out
}

// Snapshot returns every endpoint, ordered by app, creation and id, and
// the version of the table they are at.
func (t *Table) Snapshot() (uint64, []Endpoint) {
	t.mu.Lock()
	out := make([]Endpoint, 0, len(t.byKey))
	for _, e := range t.byKey {
		out = append(out, e.clone())
	}
	v := t.version.Load()
	t.mu.Unlock()
	sortEndpoints(out)
	return v, out
}

// Version changes whenever an endpoint is created, updated or deleted.
func (t *Table) Version() uint64 { return t.version.Load() }

// Deleted reports whether the table saw the endpoint's tombstone (and no
// record of it since). Tombstones are compacted away after the topic's
// delete.retention.ms, so a long-deleted endpoint may also just be unknown.
func (t *Table) Deleted(appID, id string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.deleted[string(Key(appID, id))]
}

// Ignored returns how many records could not be applied (bad key or
// value); they are logged.
func (t *Table) Ignored() int64 { return t.bad.Load() }

func sortEndpoints(es []Endpoint) {
	slices.SortFunc(es, func(a, b Endpoint) int {
		return cmp.Or(cmp.Compare(a.AppID, b.AppID), a.CreatedAt.Compare(b.CreatedAt), cmp.Compare(a.ID, b.ID))
	})
}
