package webhooker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/moat-dev/moat/schemas"
	kafkago "github.com/segmentio/kafka-go"
)

// spawn runs f on its own goroutine, counted for the shutdown.
func (w *Worker) spawn(f func()) {
	w.inflight.Go(f)
}

// handleIncident starts the deliveries of one incidents record.
func (w *Worker) handleIncident(work context.Context, c *consumer, m kafkago.Message) {
	if txnMarker(m) {
		c.track.add(m, 0) // nothing to deliver: settled at once
		return
	}
	var n schemas.Notification
	err := json.Unmarshal(m.Value, &n)
	if err == nil && (n.ID == "" || n.AppID == "") {
		err = errors.New("notification without id or app_id")
	}
	if err != nil {
		settle := c.track.add(m, 1)
		w.spawn(func() { w.badRecord(work, m, err, settle) })
		return
	}
	if n.EndpointID != "" {
		settle := c.track.add(m, 1)
		w.spawn(func() { w.deliverAddressed(work, &n, settle) })
		return
	}
	var targets []*endpoint
	for _, e := range w.current().byApp[n.AppID] {
		if e.enabled && e.wants(n.Type) {
			targets = append(targets, e)
		}
	}
	settle := c.track.add(m, len(targets))
	for _, e := range targets {
		d := &schemas.WebhookDelivery{
			V:            schemas.WebhookDeliveryVersion,
			DeliveryID:   DeliveryID(n.AppID, e.id, n.ID),
			AppID:        n.AppID,
			EndpointID:   e.id,
			Notification: n,
		}
		w.spawn(func() { w.deliver(work, e, d, settle) })
	}
}

// txnMarker reports whether m is a transaction's commit or abort marker,
// which kafka-go hands out as a message: a control record, its key the
// version (0) and the type (0 abort, 1 commit) as two int16s, its value the
// version and the coordinator epoch (int16, int32). No notification looks
// like that: their values are JSON objects.
func txnMarker(m kafkago.Message) bool {
	return len(m.Key) == 4 && m.Key[0] == 0 && m.Key[1] == 0 && m.Key[2] == 0 && m.Key[3] <= 1 &&
		len(m.Value) == 6 && m.Value[0] == 0 && m.Value[1] == 0
}

// handleRetry waits until a retry record is due and starts its delivery.
// It returns false when ctx ended while waiting.
func (w *Worker) handleRetry(ctx, work context.Context, c *consumer, m kafkago.Message) bool {
	settle := c.track.add(m, 1)
	var d schemas.WebhookDelivery
	err := json.Unmarshal(m.Value, &d)
	if err == nil && (d.DeliveryID == "" || d.AppID == "" || d.EndpointID == "") {
		err = errors.New("webhook delivery without delivery_id, app_id or endpoint_id")
	}
	if err != nil {
		w.spawn(func() { w.badRecord(work, m, err, settle) })
		return true
	}
	if w.deletedEndpoint(d.AppID, d.EndpointID) {
		// No need to wait until it is due.
		w.spawn(func() { w.drop(&d, "endpoint deleted", settle) })
		return true
	}
	if wait := d.DueAt.Sub(w.now()); wait > 0 && !sleep(ctx, wait) {
		return false
	}
	w.spawn(func() {
		e := w.lookup(work, d.AppID, d.EndpointID)
		if e == nil && w.deletedEndpoint(d.AppID, d.EndpointID) {
			w.drop(&d, "endpoint deleted", settle)
			return
		}
		w.deliver(work, e, &d, settle)
	})
	return true
}

// deletedEndpoint reports whether the endpoint was deleted through the API
// (and not recreated).
func (w *Worker) deletedEndpoint(appID, endpointID string) bool {
	return w.src != nil && w.src.Deleted(appID, endpointID) && w.current().byKey[endpointKey(appID, endpointID)] == nil
}

// deliverAddressed delivers a notification addressed to one endpoint (a
// test notification): only there, whatever types it subscribed to and
// even when disabled. When the endpoint does not exist (any more), the
// notification is dropped.
func (w *Worker) deliverAddressed(ctx context.Context, n *schemas.Notification, settle func()) {
	d := &schemas.WebhookDelivery{
		V:            schemas.WebhookDeliveryVersion,
		DeliveryID:   DeliveryID(n.AppID, n.EndpointID, n.ID),
		AppID:        n.AppID,
		EndpointID:   n.EndpointID,
		Notification: *n,
	}
	e := w.lookup(ctx, n.AppID, n.EndpointID)
	if e == nil {
		w.drop(d, "endpoint not found", settle)
		return
	}
	w.deliver(ctx, e, d, settle)
}

// drop settles d without an attempt, because its endpoint is gone, and
// says so in the delivery log (outcome OutcomeDropped). A dropped delivery
// is not dead-lettered: there is nowhere to replay it to.
func (w *Worker) drop(d *schemas.WebhookDelivery, reason string, settle func()) {
	w.deliveries.Log(Attempt{
		AppID:          d.AppID,
		EndpointID:     d.EndpointID,
		DeliveryID:     d.DeliveryID,
		NotificationID: d.Notification.ID,
		Type:           d.Notification.Type,
		Attempt:        d.Attempts + 1,
		Outcome:        OutcomeDropped,
		Error:          reason,
		At:             w.now(),
	})
	w.stats.dropped.Add(1)
	w.log.Info("delivery dropped", "app", d.AppID, "endpoint", d.EndpointID, "delivery", d.DeliveryID, "reason", reason)
	settle()
}

// deliver makes the next attempt of d to e (nil: the endpoint was removed)
// and settles it: delivered, scheduled for a retry or dead-lettered. When
// ctx ends first, d is abandoned unsettled.
func (w *Worker) deliver(ctx context.Context, e *endpoint, d *schemas.WebhookDelivery, settle func()) {
	start := w.now()
	if d.Attempts == 0 {
		d.FirstAttemptAt = start
	}
	switch {
	case e == nil:
		w.conclude(ctx, e, d, start, result{err: errors.New("endpoint no longer configured")}, false, settle)
		return
	case e.confErr != nil:
		w.conclude(ctx, e, d, start, result{err: e.confErr}, false, settle)
		return
	case !e.enabled && d.Notification.EndpointID == "":
		// Dead-lettered, so that `moat webhooks replay` can send it once
		// the endpoint is enabled again.
		w.conclude(ctx, e, d, start, result{err: errors.New("endpoint disabled")}, false, settle)
		return
	}
	body, err := Body(&d.Notification)
	if err != nil {
		w.conclude(ctx, e, d, start, result{err: err}, false, settle)
		return
	}
	ok, probe, reason := e.admit(start)
	if !ok {
		w.conclude(ctx, e, d, start, result{err: errors.New(reason), retryable: true}, true, settle)
		return
	}
	if !w.acquire(ctx, e) {
		e.release(probe)
		if ctx.Err() != nil {
			return
		}
		err := fmt.Errorf("endpoint saturated: %d requests in flight for %s", cap(e.sem), w.cfg.RequestTimeout)
		w.conclude(ctx, e, d, start, result{err: err, retryable: true}, true, settle)
		return
	}
	r := w.post(ctx, e, d, body, d.Attempts+1)
	<-e.sem
	if r.err != nil && ctx.Err() != nil {
		// Shutting down: the attempt did not fail, it was cut short.
		e.release(probe)
		return
	}
	healthy := r.err == nil || !r.retryable
	e.report(w.now(), probe, healthy, errString(r.err), r.retryAfter)
	w.conclude(ctx, e, d, start, r, false, settle)
}

// acquire takes one of e's request slots, waiting up to RequestTimeout.
func (w *Worker) acquire(ctx context.Context, e *endpoint) bool {
	select {
	case e.sem <- struct{}{}:
		return true
	default:
	}
	t := time.NewTimer(w.cfg.RequestTimeout)
	defer t.Stop()
	select {
	case e.sem <- struct{}{}:
		return true
	case <-t.C:
		return false
	case <-ctx.Done():
		return false
	}
}

// conclude counts the attempt just made (or deferred, when deferred is
// true), logs it and settles d according to r.
func (w *Worker) conclude(ctx context.Context, e *endpoint, d *schemas.WebhookDelivery, start time.Time, r result, deferred bool, settle func()) {
	d.Attempts++
	d.LastStatus, d.LastError = r.status, errString(r.err)
	outcome := OutcomeDelivered
	switch {
	case r.err == nil:
	case !r.retryable || d.Attempts >= w.cfg.MaxAttempts():
		outcome = OutcomeDead
	case deferred:
		outcome = OutcomeDeferred
	default:
		outcome = OutcomeRetry
	}
	w.deliveries.Log(Attempt{
		AppID:          d.AppID,
		EndpointID:     d.EndpointID,
		DeliveryID:     d.DeliveryID,
		NotificationID: d.Notification.ID,
		Type:           d.Notification.Type,
		Attempt:        d.Attempts,
		Outcome:        outcome,
		Status:         r.status,
		Latency:        r.latency,
		Error:          d.LastError,
		At:             start,
	})
	host := ""
	if e != nil {
		host = e.host
	}
	log := w.log.With("app", d.AppID, "endpoint", d.EndpointID, "host", host, "delivery", d.DeliveryID, "attempt", d.Attempts)

	switch outcome {
	case OutcomeDelivered:
		w.stats.delivered.Add(1)
		log.Debug("delivered", "status", r.status, "latency", r.latency)
		settle()
		return
	case OutcomeDead:
		msg, err := deliveryMessage(schemas.TopicWebhookDeadLetter, d)
		if err == nil {
			msg.Headers = append(msg.Headers, kafkago.Header{Key: schemas.HeaderError, Value: []byte(d.LastError)})
			err = w.produce(ctx, msg)
		}
		if err != nil {
			log.Warn("dead letter not written; the delivery will be repeated after a restart", "err", err)
			return
		}
		w.stats.dead.Add(1)
		log.Warn("delivery failed for good; sent to the dead letters", "status", r.status, "err", d.LastError)
		settle()
		return
	}
	tier := w.cfg.tierFor(d.Attempts, r.retryAfter)
	d.DueAt = w.now().Add(tier + w.jitter(tier))
	msg, err := deliveryMessage(schemas.TopicWebhookRetry(tier), d)
	if err == nil {
		err = w.produce(ctx, msg)
	}
	if err != nil {
		log.Warn("retry not scheduled; the delivery will be repeated after a restart", "err", err)
		return
	}
	dueIn := d.DueAt.Sub(w.now()).Round(time.Millisecond)
	if outcome == OutcomeDeferred {
		// A sick endpoint defers every delivery: keep this quiet.
		w.stats.deferred.Add(1)
		log.Debug("delivery deferred", "reason", d.LastError, "due_in", dueIn)
	} else {
		w.stats.retried.Add(1)
		log.Info("delivery failed; retry scheduled", "status", r.status, "err", d.LastError, "due_in", dueIn)
	}
	settle()
}

// jitter returns a random 0..Jitter fraction of tier.
func (w *Worker) jitter(tier time.Duration) time.Duration {
	return time.Duration(rand.Float64() * w.cfg.Jitter * float64(tier))
}

// produce writes msgs, retrying with exponential backoff until ctx ends.
func (w *Worker) produce(ctx context.Context, msgs ...kafkago.Message) error {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = 100 * time.Millisecond
	b.MaxInterval = 5 * time.Second
	b.MaxElapsedTime = 0 // until ctx ends
	op := func() error {
		if err := w.writer.WriteMessages(ctx, msgs...); err != nil {
			if ctx.Err() != nil {
				return backoff.Permanent(err)
			}
			return err
		}
		return nil
	}
	notify := func(err error, next time.Duration) {
		w.log.Warn("produce failed; retrying", "topic", msgs[0].Topic, "err", err, "in", next.Round(time.Millisecond))
	}
	if err := backoff.RetryNotify(op, backoff.WithContext(b, ctx), notify); err != nil {
		return fmt.Errorf("webhooker: produce to %s: %w", msgs[0].Topic, err)
	}
	return nil
}

// badRecord sends an undecodable record to schemas.TopicDeadLetter with
// the reason, then settles it.
func (w *Worker) badRecord(ctx context.Context, m kafkago.Message, reason error, settle func()) {
	out := kafkago.Message{
		Topic: schemas.TopicDeadLetter,
		Key:   m.Key,
		Value: m.Value,
		Headers: append(append([]kafkago.Header(nil), m.Headers...),
			kafkago.Header{Key: schemas.HeaderError, Value: []byte("webhooker: " + reason.Error())},
			kafkago.Header{Key: schemas.HeaderSource, Value: []byte(m.Topic + "/" + strconv.Itoa(m.Partition) + "/" + strconv.FormatInt(m.Offset, 10))},
		),
	}
	if err := w.produce(ctx, out); err != nil {
		w.log.Warn("undecodable record not dead-lettered; it will be read again after a restart", "topic", m.Topic, "err", err)
		return
	}
	w.stats.bad.Add(1)
	w.log.Warn("undecodable record sent to the dead letters", "topic", m.Topic, "partition", m.Partition, "offset", m.Offset, "err", reason)
	settle()
}

// deliveryMessage encodes d as a record of topic, keyed by delivery id.
func deliveryMessage(topic string, d *schemas.WebhookDelivery) (kafkago.Message, error) {
	v, err := json.Marshal(d)
	if err != nil {
		return kafkago.Message{}, fmt.Errorf("webhooker: encode delivery %s: %w", d.DeliveryID, err)
	}
	return kafkago.Message{
		Topic: topic,
		Key:   []byte(d.DeliveryID),
		Value: v,
		Headers: []kafkago.Header{
			{Key: schemas.HeaderSchema, Value: []byte(schemas.WebhookDeliverySchema)},
			{Key: schemas.HeaderDueAt, Value: []byte(strconv.FormatInt(d.DueAt.UnixMilli(), 10))},
			{Key: schemas.HeaderAttempts, Value: []byte(strconv.Itoa(d.Attempts))},
		},
	}, nil
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
