package privacy

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/moat-dev/moat/internal/kafka"
	"github.com/moat-dev/moat/schemas"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Subject is one identifier of a person within an app.
type Subject struct {
	Type       string
	Identifier string
}

// Writer records deletions. Each Erase is one Kafka transaction holding the
// registry records and the user.delete commands on the events topic, so
// the scorer and the projector (read-committed consumers) never see a
// command without its registry record, and a failed Erase leaves neither.
// Transactions of one Writer run one at a time.
type Writer struct {
	cfg     kafka.Config
	h       *Hasher
	log     *slog.Logger
	txnID   string
	timeout time.Duration

	mu sync.Mutex
	cl *kgo.Client // nil after a failure: reconnected on the next Erase
}

// NewWriter returns a Writer whose Erase fails after timeout when the
// brokers do not acknowledge it. Its transactional id is random per
// process (it only produces, so no zombie needs fencing).
func NewWriter(cfg kafka.Config, h *Hasher, timeout time.Duration, log *slog.Logger) (*Writer, error) {
	if h == nil {
		return nil, errors.New("privacy: writer needs a hasher")
	}
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		return nil, fmt.Errorf("privacy: transactional id: %w", err)
	}
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	w := &Writer{cfg: cfg, h: h, log: log.With("component", "privacy-writer"), txnID: "moat-privacy-" + hex.EncodeToString(b), timeout: timeout}
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, err := w.client(); err != nil {
		return nil, err
	}
	return w, nil
}

func (w *Writer) client() (*kgo.Client, error) {
	if w.cl != nil {
		return w.cl, nil
	}
	// Records are placed by their key with murmur2, as ingest places
	// events: a command lands on its user's partition.
	cl, err := kgo.NewClient(append(kafka.ClientOpts(w.cfg, w.log, "moat-privacy"),
		kgo.TransactionalID(w.txnID),
		kgo.TransactionTimeout(10*time.Second),
		// franz-go refuses a record timeout under 1 s; Erase's context
		// still bounds a call by w.timeout.
		kgo.RecordDeliveryTimeout(max(w.timeout, time.Second)),
		kgo.ProducerLinger(0),
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)),
	)...)
	if err != nil {
		return nil, fmt.Errorf("privacy: create producer: %w", err)
	}
	w.cl = cl
	return cl, nil
}

// Erase commits, in one transaction, a registry record for each subject of
// app (deleted at at) and the commands (events of kind user.delete, keyed
// like their user's events). Only a nil error means both are durable.
func (w *Writer) Erase(ctx context.Context, appID string, subjects []Subject, commands []*schemas.Event, at time.Time) error {
	recs := make([]*kgo.Record, 0, len(subjects)+len(commands))
	for _, s := range subjects {
		if !ValidType(s.Type) || s.Identifier == "" {
			return fmt.Errorf("privacy: invalid subject of type %q", s.Type)
		}
		v, err := json.Marshal(Record{V: RecordVersion, AppID: appID, Type: s.Type, DeletedAt: at.UTC()})
		if err != nil {
			return fmt.Errorf("privacy: encode record: %w", err)
		}
		recs = append(recs, &kgo.Record{Topic: schemas.TopicPrivacy, Key: []byte(w.h.Key(appID, s.Type, s.Identifier)), Value: v,
			Headers: []kgo.RecordHeader{{Key: schemas.HeaderSchema, Value: []byte("privacy.v1")}}})
	}
	for _, ev := range commands {
		b, err := json.Marshal(ev)
		if err != nil {
			return fmt.Errorf("privacy: encode command: %w", err)
		}
		recs = append(recs, &kgo.Record{Topic: schemas.TopicEvents, Key: ev.Key(), Value: b,
			Headers: []kgo.RecordHeader{{Key: schemas.HeaderSchema, Value: []byte("event.v1")}}})
	}
	return w.write(ctx, recs)
}

func (w *Writer) write(ctx context.Context, recs []*kgo.Record) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	cl, err := w.client()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, w.timeout)
	defer cancel()
	if err := cl.BeginTransaction(); err != nil {
		w.drop()
		return fmt.Errorf("privacy: begin transaction: %w", err)
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		w.abort(cl)
		return fmt.Errorf("privacy: produce: %w", err)
	}
	if err := cl.EndTransaction(ctx, kgo.TryCommit); err != nil {
		w.abort(cl)
		return fmt.Errorf("privacy: commit: %w", err)
	}
	return nil
}

// abort ends a failed transaction; when even that fails the client is
// dropped, and the next Erase starts a new one, which fences this one's
// transaction with the same transactional id.
func (w *Writer) abort(cl *kgo.Client) {
	ctx, cancel := context.WithTimeout(context.Background(), w.timeout)
	defer cancel()
	err := cl.AbortBufferedRecords(ctx)
	if err == nil {
		err = cl.EndTransaction(ctx, kgo.TryAbort)
	}
	if err != nil && !errors.Is(err, kgo.ErrClientClosed) {
		w.log.Warn("abort of a failed privacy transaction failed; reconnecting", "err", err)
		w.drop()
	}
}

func (w *Writer) drop() {
	if w.cl != nil {
		w.cl.Close()
		w.cl = nil
	}
}

// Close closes the producer.
func (w *Writer) Close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.drop()
}
