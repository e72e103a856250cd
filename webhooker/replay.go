package webhooker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/moat-dev/moat/schemas"
	kafkago "github.com/segmentio/kafka-go"
)

// ReplayOptions select the dead letters Replay sends again. The zero value
// replays every dead letter still retained.
type ReplayOptions struct {
	// Since skips dead letters written before it (zero: from the oldest
	// retained).
	Since time.Time
	// AppID, EndpointID and DeliveryID, when set, select only matching
	// dead letters.
	AppID, EndpointID, DeliveryID string
	// Tier is the retry tier the replayed deliveries are written to; the
	// running worker must have it in its schedule (default: the first delay
	// of DefaultSchedule).
	Tier time.Duration
	// DryRun counts the matching dead letters without replaying them.
	DryRun bool
	// Logger (default slog.Default()).
	Logger *slog.Logger
}

// replayBatch is how many deliveries Replay writes per request.
const replayBatch = 500

// Replay sends dead letters again: every matching record of
// schemas.TopicWebhookDeadLetter written up to the moment Replay starts is
// put on a retry tier, due now, with a fresh schedule (attempts reset) and
// the same delivery id, so receivers can recognise deliveries they already
// have. It returns how many it replayed (or, with DryRun, would replay).
//
// Replay keeps no bookmark: running it twice over the same dead letters
// sends them twice (with the same delivery ids). Use Since to narrow it.
// A replayed delivery that fails again ends up in the dead letters again.
func Replay(ctx context.Context, brokers []string, opts ReplayOptions) (int, error) {
	if len(brokers) == 0 {
		return 0, errors.New("webhooker: replay: no brokers")
	}
	if opts.Tier <= 0 {
		opts.Tier = slices.Min(DefaultSchedule)
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With("component", "webhooker-replay")
	topic := schemas.TopicWebhookDeadLetter
	cl := &kafkago.Client{Addr: kafkago.TCP(brokers...), Timeout: 30 * time.Second}
	meta, err := cl.Metadata(ctx, &kafkago.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return 0, fmt.Errorf("webhooker: replay: metadata: %w", err)
	}
	if len(meta.Topics) != 1 || meta.Topics[0].Error != nil {
		if len(meta.Topics) == 1 && errors.Is(meta.Topics[0].Error, kafkago.UnknownTopicOrPartition) {
			return 0, nil // nothing was ever dead-lettered
		}
		return 0, fmt.Errorf("webhooker: replay: metadata of %s: %v", topic, meta.Topics)
	}
	var reqs []kafkago.OffsetRequest
	for _, p := range meta.Topics[0].Partitions {
		reqs = append(reqs, kafkago.FirstOffsetOf(p.ID), kafkago.LastOffsetOf(p.ID))
		if !opts.Since.IsZero() {
			reqs = append(reqs, kafkago.TimeOffsetOf(p.ID, opts.Since))
		}
	}
	offs, err := cl.ListOffsets(ctx, &kafkago.ListOffsetsRequest{Topics: map[string][]kafkago.OffsetRequest{topic: reqs}})
	if err != nil {
		return 0, fmt.Errorf("webhooker: replay: list offsets: %w", err)
	}

	var writer *kafkago.Writer
	if !opts.DryRun {
		writer = &kafkago.Writer{
			Addr:         kafkago.TCP(brokers...),
			Balancer:     &kafkago.Murmur2Balancer{},
			RequiredAcks: kafkago.RequireAll,
			BatchTimeout: 2 * time.Millisecond,
			BatchSize:    replayBatch,
			WriteTimeout: 30 * time.Second,
		}
		defer writer.Close()
	}
	total := 0
	for _, p := range offs.Topics[topic] {
		if p.Error != nil {
			return total, fmt.Errorf("webhooker: replay: offsets of partition %d: %w", p.Partition, p.Error)
		}
		start, end := p.FirstOffset, p.LastOffset
		if !opts.Since.IsZero() {
			start = end // no record at or after Since
			for o := range p.Offsets {
				if o >= 0 {
					start = max(o, p.FirstOffset)
				}
			}
		}
		if start >= end {
			continue
		}
		n, err := replayPartition(ctx, brokers, p.Partition, start, end, opts, writer)
		total += n
		if err != nil {
			return total, err
		}
	}
	log.Info("dead letters replayed", "count", total, "dry_run", opts.DryRun, "tier", schemas.TierName(opts.Tier))
	return total, nil
}

// replayPartition replays the matching records of one partition in
// [start, end).
func replayPartition(ctx context.Context, brokers []string, partition int, start, end int64, opts ReplayOptions, writer *kafkago.Writer) (int, error) {
	r := kafkago.NewReader(kafkago.ReaderConfig{
		Brokers:   brokers,
		Topic:     schemas.TopicWebhookDeadLetter,
		Partition: partition,
		MinBytes:  1,
		MaxBytes:  10 << 20,
		MaxWait:   500 * time.Millisecond,
	})
	defer r.Close()
	if err := r.SetOffset(start); err != nil {
		return 0, fmt.Errorf("webhooker: replay: seek partition %d: %w", partition, err)
	}
	topic := schemas.TopicWebhookRetry(opts.Tier)
	n := 0
	var batch []kafkago.Message
	flush := func() error {
		if writer == nil || len(batch) == 0 {
			batch = batch[:0]
			return nil
		}
		if err := writer.WriteMessages(ctx, batch...); err != nil {
			return fmt.Errorf("webhooker: replay: write %s: %w", topic, err)
		}
		batch = batch[:0]
		return nil
	}
	for {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			return n - len(batch), fmt.Errorf("webhooker: replay: read partition %d: %w", partition, err)
		}
		var d schemas.WebhookDelivery
		if json.Unmarshal(m.Value, &d) == nil && d.DeliveryID != "" && matches(&d, opts) {
			d.Attempts = 0
			d.Replays++
			d.DueAt = time.Now()
			msg, err := deliveryMessage(topic, &d)
			if err != nil {
				return n - len(batch), err
			}
			batch = append(batch, msg)
			n++
			if len(batch) >= replayBatch {
				if err := flush(); err != nil {
					return n - replayBatch, err
				}
			}
		}
		// Stop at the snapshot's end, or earlier when the partition has
		// nothing more (records deleted by retention meanwhile).
		if m.Offset >= end-1 || r.Lag() <= 0 {
			break
		}
	}
	if err := flush(); err != nil {
		return n - len(batch), err
	}
	return n, nil
}

func matches(d *schemas.WebhookDelivery, o ReplayOptions) bool {
	return (o.AppID == "" || d.AppID == o.AppID) &&
		(o.EndpointID == "" || d.EndpointID == o.EndpointID) &&
		(o.DeliveryID == "" || d.DeliveryID == o.DeliveryID)
}
