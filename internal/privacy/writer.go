package privacy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
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
	h *Hasher
	p *kafka.TxnProducer
}

// NewWriter returns a Writer whose Erase fails after timeout when the
// brokers do not acknowledge it. Records are placed by their key with
// murmur2, as ingest places events: a command lands on its user's
// partition.
func NewWriter(cfg kafka.Config, h *Hasher, timeout time.Duration, log *slog.Logger) (*Writer, error) {
	if h == nil {
		return nil, errors.New("privacy: writer needs a hasher")
	}
	p, err := kafka.NewTxnProducer(cfg, "privacy", timeout, kgo.StickyKeyPartitioner(nil), log)
	if err != nil {
		return nil, err
	}
	return &Writer{h: h, p: p}, nil
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
	_, err := w.p.Commit(ctx, recs)
	return err
}

// Close closes the producer.
func (w *Writer) Close() { w.p.Close() }
