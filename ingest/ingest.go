// Package ingest is the write side of Moat's HTTP API: a thin, stateless
// layer that authenticates Castle-compatible calls (track, identify, log,
// and the scored risk, filter and authenticate calls), validates and
// normalizes them into schemas.Event envelopes, and appends them to the
// event log. It answers 2xx only after Kafka acknowledged the record
// (acks=all, idempotent producer); when the broker cannot take it, the
// client gets 503 and may retry.
package ingest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"
	"github.com/moat-dev/moat/internal/httpapi"
	"github.com/moat-dev/moat/internal/kafka"
	"github.com/moat-dev/moat/schemas"
	"github.com/twmb/franz-go/pkg/kgo"
)

// CastleError renders an APIError through httpapi's error handler.
func (e *APIError) CastleError() (int, string, string) { return e.Status, e.Type, e.Message }

// Config configures the ingest role.
type Config struct {
	Kafka kafka.Config
	// ProduceTimeout bounds how long a call waits for the broker's
	// acknowledgement before answering 503.
	ProduceTimeout time.Duration
	// Linger is how long the producer waits to batch concurrent calls.
	Linger time.Duration
}

// Producer appends events to the log.
type Producer struct {
	cl      *kgo.Client
	timeout time.Duration
}

// NewProducer connects an idempotent, acks=all producer.
func NewProducer(cfg Config, log *slog.Logger) (*Producer, error) {
	if cfg.ProduceTimeout <= 0 {
		return nil, fmt.Errorf("ingest: produce timeout must be positive")
	}
	opts := append(kafka.ClientOpts(cfg.Kafka, log, "moat-ingest"),
		kgo.DefaultProduceTopic(schemas.TopicEvents),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerLinger(cfg.Linger),
		kgo.ProducerBatchCompression(kgo.Lz4Compression()),
		kgo.MaxBufferedRecords(100_000),
	)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("ingest: create kafka producer: %w", err)
	}
	return &Producer{cl: cl, timeout: cfg.ProduceTimeout}, nil
}

// ErrNotAcknowledged is returned when the broker did not acknowledge an
// event within the produce timeout. The record may still be written later
// (an idempotent producer cannot take back a request it sent), so a client
// retry after a 503 can, rarely, store the event twice under two ids.
var ErrNotAcknowledged = errors.New("ingest: event not acknowledged in time")

// Append writes one event and waits for the broker's acknowledgement, at
// most the produce timeout.
func (p *Producer) Append(ctx context.Context, ev *schemas.Event) error {
	b, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("ingest: encode event: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	rec := &kgo.Record{
		Topic:   schemas.TopicEvents,
		Key:     ev.Key(),
		Value:   b,
		Headers: []kgo.RecordHeader{{Key: schemas.HeaderSchema, Value: []byte("event.v1")}},
	}
	done := make(chan error, 1)
	p.cl.Produce(ctx, rec, func(_ *kgo.Record, err error) { done <- err })
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("ingest: append event %s: %w", ev.ID, err)
		}
		return nil
	case <-ctx.Done():
		// The record is in flight and cannot be failed safely; answer
		// anyway so the caller's own timeout and failover apply.
		return fmt.Errorf("ingest: append event %s: %w", ev.ID, ErrNotAcknowledged)
	}
}

// Ping checks that a broker answers.
func (p *Producer) Ping(ctx context.Context) error { return p.cl.Ping(ctx) }

// Close flushes nothing (every Append already waited) and disconnects.
func (p *Producer) Close() { p.cl.Close() }

// appender is what the handlers need from the producer.
type appender interface {
	Append(ctx context.Context, ev *schemas.Event) error
}

// Handler serves the ingest routes.
type Handler struct {
	log *slog.Logger
	out appender
	now func() time.Time
}

// NewHandler returns the ingest routes' handler.
func NewHandler(out *Producer, log *slog.Logger) *Handler {
	return &Handler{log: log.With("role", "ingest"), out: out, now: time.Now}
}

// Routes registers the ingest routes on g, which must authenticate apps
// (httpapi.Authenticate). Both `/v1/x` and `/v1/x.json` are served, as the
// legacy Castle API did.
func (h *Handler) Routes(g *echo.Group) {
	for path, kind := range map[string]schemas.Kind{
		"/v1/track":    schemas.KindTrack,
		"/v1/identify": schemas.KindIdentify,
		"/v1/log":      schemas.KindLog,
	} {
		g.POST(path, h.accept(kind))
		g.POST(path+".json", h.accept(kind))
	}
}

// accept decodes, appends and answers 204 once the broker acknowledged.
func (h *Handler) accept(kind schemas.Kind) echo.HandlerFunc {
	return func(c echo.Context) error {
		ev, err := h.decode(c, kind)
		if err != nil {
			return err
		}
		if err := h.out.Append(c.Request().Context(), &ev); err != nil {
			h.log.Warn("event not accepted: broker unavailable", "event_id", ev.ID, "app_id", ev.AppID, "err", err)
			return ErrServiceUnavailable
		}
		return c.NoContent(http.StatusNoContent)
	}
}

// decode reads and validates the body and stamps the server fields.
func (h *Handler) decode(c echo.Context, kind schemas.Kind) (schemas.Event, error) {
	body, err := io.ReadAll(c.Request().Body)
	if err != nil {
		if httpapi.IsTooLarge(err) {
			return schemas.Event{}, ErrRequestEntityTooLarge
		}
		return schemas.Event{}, BadRequest("Could not read the request body")
	}
	ev, err := Decode(kind, body, c.Request().Header)
	if err != nil {
		return schemas.Event{}, err
	}
	id, err := uuid.NewV7()
	if err != nil {
		return schemas.Event{}, fmt.Errorf("ingest: generate event id: %w", err)
	}
	ev.V = schemas.EnvelopeVersion
	ev.ID = id.String()
	ev.AppID = httpapi.App(c).ID
	ev.Kind = kind
	ev.ReceivedAt = h.now().UTC().Truncate(time.Millisecond)
	return ev, nil
}
