// Package ingest is the write side of Moat's HTTP API: a thin, stateless
// layer that authenticates Castle-compatible calls (track, identify, log,
// and the scored risk, filter and authenticate calls), validates and
// normalizes them into schemas.Event envelopes, and appends them to the
// event log. It answers 2xx only after Kafka acknowledged the record
// (acks=all, idempotent producer); when the broker cannot take it, the
// client gets 503 and may retry.
package ingest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"
	"github.com/moat-dev/moat/internal/httpapi"
	"github.com/moat-dev/moat/internal/kafka"
	"github.com/moat-dev/moat/internal/metrics"
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
	// Metrics records appends (optional).
	Metrics *metrics.Metrics
}

// Producer appends events to the log.
type Producer struct {
	cl      *kgo.Client
	timeout time.Duration
	metrics *metrics.Metrics
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
		kgo.MaxBufferedRecords(100_000),
	)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("ingest: create kafka producer: %w", err)
	}
	return &Producer{cl: cl, timeout: cfg.ProduceTimeout, metrics: cfg.Metrics}, nil
}

// ErrNotAcknowledged is returned when the broker's answer about an event
// is still unknown long after the produce timeout (the record was sent and
// the broker went silent). Only then may a 503 hide a record that is
// written later; every other 503 means the event was not written.
var ErrNotAcknowledged = errors.New("ingest: event not acknowledged in time")

// ambiguityGrace is how long Append keeps waiting, past the produce
// timeout, for the broker's verdict on a record that was already sent.
const ambiguityGrace = 15 * time.Second

// Append writes one event and waits for the broker's verdict. Records not
// yet sent when the produce timeout passes are failed at once (the answer
// is then a clean "not written"); a record already sent cannot be taken
// back by an idempotent producer, so Append waits for the broker's answer
// to it, at most ambiguityGrace longer. This keeps 503 meaning "not
// written", so a client retry does not store the event twice.
func (p *Producer) Append(ctx context.Context, ev *schemas.Event) error {
	value := valuePool.get()
	*value = ev.AppendJSON(*value)
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.timeout)
	defer cancel()
	rec := &eventRecord{hdr: [1]kgo.RecordHeader{{Key: schemas.HeaderSchema, Value: eventSchema}}}
	rec.Topic = schemas.TopicEvents
	rec.Key = ev.Key()
	rec.Value = *value
	rec.Headers = rec.hdr[:]
	done := make(chan error, 1)
	kind := string(ev.Kind)
	start := time.Now()
	p.cl.Produce(pctx, &rec.Record, func(_ *kgo.Record, err error) {
		p.metrics.Produced(kind, time.Since(start), err)
		// The promise is the client's last use of the record: the value's
		// buffer can serve another record now.
		valuePool.put(value)
		done <- err
	})
	var err error
	select {
	case err = <-done:
	case <-pctx.Done():
		// The client now fails the record unless it was already sent; the
		// grace timer is only needed (and only made) in that case.
		hard := time.NewTimer(ambiguityGrace)
		defer hard.Stop()
		select {
		case err = <-done:
		case <-hard.C:
			return fmt.Errorf("ingest: append event %s: %w", ev.ID, ErrNotAcknowledged)
		}
	}
	if err != nil {
		return fmt.Errorf("ingest: append event %s: %w", ev.ID, err)
	}
	return nil
}

// eventRecord is a record with room for its one header, allocated together.
type eventRecord struct {
	kgo.Record
	hdr [1]kgo.RecordHeader
}

// eventSchema is the schema header's value on every event record. The
// client only reads header values, so every record shares this one.
var eventSchema = []byte("event.v1")

// Record values are encoded into pooled buffers, returned by the produce
// promise.
var valuePool = newBufferPool(2<<10, 64<<10)

// Ping checks that a broker answers.
func (p *Producer) Ping(ctx context.Context) error { return p.cl.Ping(ctx) }

// Close flushes nothing (every Append already waited) and disconnects.
func (p *Producer) Close() { p.cl.Close() }

// Handler serves the ingest routes.
type Handler struct {
	log     *slog.Logger
	out     *Producer
	replies *Replies
	now     func() time.Time
}

// NewHandler returns the ingest routes' handler. replies may be nil: the
// scored calls (risk, filter, authenticate) are then not served.
func NewHandler(out *Producer, replies *Replies, log *slog.Logger) *Handler {
	return &Handler{log: log.With("role", "ingest"), out: out, replies: replies, now: time.Now}
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
	if h.replies != nil {
		h.scoredRoutes(g)
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
	buf := bodyPool.get()
	defer bodyPool.put(buf)
	rd := bytes.NewBuffer(*buf)
	_, err := rd.ReadFrom(c.Request().Body)
	body := rd.Bytes()
	*buf = body
	if err != nil {
		if httpapi.IsTooLarge(err) {
			return schemas.Event{}, ErrRequestEntityTooLarge
		}
		return schemas.Event{}, BadRequest("Could not read the request body")
	}
	// Decode keeps no reference to body, so buf can be reused as soon as
	// it returns.
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

// Request bodies are read into pooled buffers (a body may be up to the
// configured limit, 1 MiB by default; big ones are not kept).
var bodyPool = newBufferPool(4<<10, 64<<10)

// bufferPool recycles byte slices. One that grew past max is left to the
// garbage collector rather than kept.
type bufferPool struct {
	pool sync.Pool
	max  int
}

func newBufferPool(size, max int) *bufferPool {
	return &bufferPool{max: max, pool: sync.Pool{New: func() any {
		b := make([]byte, 0, size)
		return &b
	}}}
}

func (p *bufferPool) get() *[]byte { return p.pool.Get().(*[]byte) }

func (p *bufferPool) put(b *[]byte) {
	if cap(*b) > p.max {
		return
	}
	*b = (*b)[:0]
	p.pool.Put(b)
}
