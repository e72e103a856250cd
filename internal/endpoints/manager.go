package endpoints

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/moat-dev/moat/internal/kafka"
	"github.com/moat-dev/moat/schemas"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Errors of Manager.
var (
	ErrNotFound = errors.New("endpoints: endpoint not found")
	// ErrUnavailable wraps a write the broker did not acknowledge, or a
	// table that could not catch up with the topic.
	ErrUnavailable = errors.New("endpoints: registry unavailable")
	// ErrLimit: the app has MaxPerApp endpoints already.
	ErrLimit = errors.New("endpoints: too many endpoints")
)

// DefaultMaxPerApp bounds the API-managed endpoints of one app.
const DefaultMaxPerApp = 100

// ambiguityGrace is how long a write keeps waiting, past the produce
// timeout, for the broker's verdict on a record already sent (as ingest
// does): 503 then means "not written".
const ambiguityGrace = 15 * time.Second

// ManagerConfig configures a Manager.
type ManagerConfig struct {
	Kafka kafka.Config
	// ProduceTimeout bounds how long a write waits for the broker's
	// acknowledgement (and then for the table to apply it).
	ProduceTimeout time.Duration
	// MaxPerApp bounds each app's API-managed endpoints (DefaultMaxPerApp
	// when 0).
	MaxPerApp int
}

// Spec is a new endpoint.
type Spec struct {
	URL         string
	Description string
	Types       []string
	Enabled     bool
}

// Patch changes an endpoint; nil fields stay as they are.
type Patch struct {
	URL         *string
	Description *string
	Types       *[]string
	Enabled     *bool
	// RotateSecret makes a new secret the signing one and keeps the
	// current one active as the second, dropping any older one.
	RotateSecret bool
	// RevokePrevious drops every secret but the newest (after a rotation
	// when given together with RotateSecret).
	RevokePrevious bool
}

// Manager creates, updates and deletes endpoints by writing
// schemas.TopicEndpoints, and reads them from its Table. Writes of one
// Manager are serialized; each starts from a table synced with the topic
// and returns once the table has applied it, so reads after a write show
// it. Writes from several api instances to the same endpoint at the same
// moment are last-write-wins. It is safe for concurrent use.
type Manager struct {
	table     *Table
	cipher    *Cipher
	cl        *kgo.Client
	timeout   time.Duration
	maxPerApp int
	log       *slog.Logger
	lock      chan struct{}
	now       func() time.Time
}

// NewManager returns a manager writing with its own idempotent, acks=all
// producer and reading table (which must be running). The cipher seals new
// secrets.
func NewManager(cfg ManagerConfig, table *Table, c *Cipher, log *slog.Logger) (*Manager, error) {
	switch {
	case table == nil:
		return nil, errors.New("endpoints: manager without a table")
	case c == nil:
		return nil, errors.New("endpoints: manager without a key: set --endpoints-key")
	case cfg.ProduceTimeout <= 0:
		return nil, errors.New("endpoints: produce timeout must be positive")
	}
	if log == nil {
		log = slog.Default()
	}
	if cfg.MaxPerApp <= 0 {
		cfg.MaxPerApp = DefaultMaxPerApp
	}
	cl, err := kgo.NewClient(append(kafka.ClientOpts(cfg.Kafka, log, "moat-endpoints-writer"),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerLinger(0),
	)...)
	if err != nil {
		return nil, fmt.Errorf("endpoints: create kafka producer: %w", err)
	}
	return &Manager{
		table: table, cipher: c, cl: cl, timeout: cfg.ProduceTimeout, maxPerApp: cfg.MaxPerApp,
		log: log.With("component", "endpoints"), lock: make(chan struct{}, 1),
		now: func() time.Time { return time.Now().UTC().Truncate(time.Millisecond) },
	}, nil
}

// MaxPerApp is the most API-managed endpoints one app may have.
func (m *Manager) MaxPerApp() int { return m.maxPerApp }

// Close disconnects the producer.
func (m *Manager) Close() { m.cl.Close() }

// sync brings the table up to the topic's end.
func (m *Manager) sync(ctx context.Context) error {
	sctx, cancel := context.WithTimeout(ctx, m.timeout)
	defer cancel()
	if err := m.table.Sync(sctx); err != nil {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return nil
}

// Get returns endpoint id of app appID, with every write acknowledged
// before the call applied.
func (m *Manager) Get(ctx context.Context, appID, id string) (Endpoint, error) {
	if err := m.sync(ctx); err != nil {
		return Endpoint{}, err
	}
	e, ok := m.table.Get(appID, id)
	if !ok {
		return Endpoint{}, ErrNotFound
	}
	return e, nil
}

// List returns the endpoints of app appID, oldest first, with every write
// acknowledged before the call applied.
func (m *Manager) List(ctx context.Context, appID string) ([]Endpoint, error) {
	if err := m.sync(ctx); err != nil {
		return nil, err
	}
	return m.table.List(appID), nil
}

// acquire takes the write lock, then syncs the table.
func (m *Manager) acquire(ctx context.Context) (release func(), err error) {
	select {
	case m.lock <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, ctx.Err())
	}
	release = func() { <-m.lock }
	if err := m.sync(ctx); err != nil {
		release()
		return nil, err
	}
	return release, nil
}

// Create adds an endpoint to app appID with a new id and a new secret; it
// returns the endpoint and the secret, which is not retrievable later.
func (m *Manager) Create(ctx context.Context, appID string, s Spec) (Endpoint, string, error) {
	release, err := m.acquire(ctx)
	if err != nil {
		return Endpoint{}, "", err
	}
	defer release()
	if n := len(m.table.List(appID)); n >= m.maxPerApp {
		return Endpoint{}, "", fmt.Errorf("%w: the app has %d, at most %d allowed", ErrLimit, n, m.maxPerApp)
	}
	id, err := newID()
	if err != nil {
		return Endpoint{}, "", err
	}
	now := m.now()
	e := Endpoint{
		AppID: appID, ID: id, URL: s.URL, Description: s.Description, Types: normTypes(s.Types),
		Enabled: s.Enabled, CreatedAt: now, UpdatedAt: now,
	}
	secret, err := m.addSecret(&e, now)
	if err != nil {
		return Endpoint{}, "", err
	}
	if err := m.write(ctx, &e); err != nil {
		return Endpoint{}, "", err
	}
	m.log.Info("endpoint created", "app", appID, "endpoint", id)
	return e, secret, nil
}

// Update applies p to endpoint id of app appID. It returns the endpoint
// and, when p rotated the secret, the new secret.
func (m *Manager) Update(ctx context.Context, appID, id string, p Patch) (Endpoint, string, error) {
	release, err := m.acquire(ctx)
	if err != nil {
		return Endpoint{}, "", err
	}
	defer release()
	cur, ok := m.table.Get(appID, id)
	if !ok {
		return Endpoint{}, "", ErrNotFound
	}
	e := cur.clone()
	if p.URL != nil {
		e.URL = *p.URL
	}
	if p.Description != nil {
		e.Description = *p.Description
	}
	if p.Types != nil {
		e.Types = normTypes(*p.Types)
	}
	if p.Enabled != nil {
		e.Enabled = *p.Enabled
	}
	now := m.now()
	secret := ""
	if p.RotateSecret {
		if secret, err = m.addSecret(&e, now); err != nil {
			return Endpoint{}, "", err
		}
	}
	if p.RevokePrevious && len(e.sealed) > 1 {
		e.sealed, e.SecretHints = e.sealed[:1], e.SecretHints[:1]
		e.Secrets = nil
	}
	if same(cur, e) {
		return cur, "", nil
	}
	e.UpdatedAt = now
	if err := m.write(ctx, &e); err != nil {
		return Endpoint{}, "", err
	}
	m.log.Info("endpoint updated", "app", appID, "endpoint", id, "secret_rotated", p.RotateSecret, "previous_revoked", p.RevokePrevious)
	return e, secret, nil
}

// Delete removes endpoint id of app appID (a tombstone).
func (m *Manager) Delete(ctx context.Context, appID, id string) error {
	release, err := m.acquire(ctx)
	if err != nil {
		return err
	}
	defer release()
	if _, ok := m.table.Get(appID, id); !ok {
		return ErrNotFound
	}
	rec := &kgo.Record{Topic: schemas.TopicEndpoints, Key: Key(appID, id)}
	if err := m.produce(ctx, rec); err != nil {
		return err
	}
	m.await(ctx, rec)
	m.log.Info("endpoint deleted", "app", appID, "endpoint", id)
	return nil
}

// Notify appends n to schemas.TopicIncidents (a test notification) and
// waits for the broker's acknowledgement.
func (m *Manager) Notify(ctx context.Context, n *schemas.Notification) error {
	v, err := json.Marshal(n)
	if err != nil {
		return fmt.Errorf("endpoints: encode notification: %w", err)
	}
	return m.produce(ctx, &kgo.Record{Topic: schemas.TopicIncidents, Key: n.Key(), Value: v,
		Headers: []kgo.RecordHeader{{Key: schemas.HeaderSchema, Value: []byte("notification.v1")}}})
}

// addSecret generates a secret, seals it as e's newest and keeps at most
// one older one. It returns the plaintext.
func (m *Manager) addSecret(e *Endpoint, now time.Time) (string, error) {
	secret, err := NewSecret()
	if err != nil {
		return "", err
	}
	sealed, err := m.cipher.seal(e.AppID, e.ID, secret)
	if err != nil {
		return "", err
	}
	s := SealedSecret{KeyID: m.cipher.KeyID(), Sealed: sealed, Hint: Hint(secret), CreatedAt: now}
	e.sealed = append([]SealedSecret{s}, e.sealed[:min(len(e.sealed), 1)]...)
	e.SecretHints = nil
	for _, s := range e.sealed {
		e.SecretHints = append(e.SecretHints, s.Hint)
	}
	e.Secrets, e.SecretsErr = nil, nil
	return secret, nil
}

// write appends e's state and waits for the table to apply it.
func (m *Manager) write(ctx context.Context, e *Endpoint) error {
	v, err := json.Marshal(e.record())
	if err != nil {
		return fmt.Errorf("endpoints: encode %s: %w", e, err)
	}
	rec := &kgo.Record{Topic: schemas.TopicEndpoints, Key: Key(e.AppID, e.ID), Value: v,
		Headers: []kgo.RecordHeader{{Key: schemas.HeaderSchema, Value: []byte(RecordSchema)}}}
	if err := m.produce(ctx, rec); err != nil {
		return err
	}
	m.await(ctx, rec)
	return nil
}

// await waits for the table to apply rec, which the broker acknowledged.
// The write happened either way, so a table that lags is only logged.
func (m *Manager) await(ctx context.Context, rec *kgo.Record) {
	wctx, cancel := context.WithTimeout(ctx, m.timeout)
	defer cancel()
	if err := m.table.WaitFor(wctx, rec.Partition, rec.Offset); err != nil {
		m.log.Warn("endpoint written but the table has not applied it yet", "partition", rec.Partition, "offset", rec.Offset, "err", err)
	}
}

// produce writes rec and waits for the broker's verdict: records not sent
// within the produce timeout fail at once, a record already sent is waited
// for up to ambiguityGrace longer, so an error means "not written".
func (m *Manager) produce(ctx context.Context, rec *kgo.Record) error {
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), m.timeout)
	defer cancel()
	done := make(chan error, 1)
	m.cl.Produce(pctx, rec, func(_ *kgo.Record, err error) { done <- err })
	hard := time.NewTimer(m.timeout + ambiguityGrace)
	defer hard.Stop()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("%w: write %s: %w", ErrUnavailable, rec.Topic, err)
		}
		return nil
	case <-hard.C:
		return fmt.Errorf("%w: write %s: not acknowledged in time", ErrUnavailable, rec.Topic)
	}
}

// normTypes sorts and deduplicates types; empty means all (nil).
func normTypes(types []string) []string {
	if len(types) == 0 {
		return nil
	}
	t := slices.Clone(types)
	slices.Sort(t)
	return slices.Compact(t)
}

// same reports whether a and b have the same stored state, ignoring
// UpdatedAt.
func same(a, b Endpoint) bool {
	ra, rb := a.record(), b.record()
	ra.UpdatedAt, rb.UpdatedAt = time.Time{}, time.Time{}
	ja, _ := json.Marshal(ra)
	jb, _ := json.Marshal(rb)
	return string(ja) == string(jb)
}
