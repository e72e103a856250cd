package metrics

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
)

// LagTracker sets moat_consumer_lag_records{group, topic, partition} for
// one franz-go consumer group from the fetches it processes: the partition's
// end (the last stable offset for a read-committed consumer, else the high
// watermark, both as of the fetch) minus the consumer's position (the
// offset after the last record processed). A nil *LagTracker is a no-op.
//
// franz-go hides transaction markers, so a read-committed consumer's
// position stops one short of the end after a committed transaction. For
// topics written only by transactions (TransactionalTopic) that trailing
// marker is not counted, so a caught-up consumer reads 0; elsewhere a
// trailing marker reads as a lag of 1 until the next record arrives.
type LagTracker struct {
	g             *prometheus.GaugeVec
	group         string
	readCommitted bool
	txnOnly       bool
}

// LagOption configures a LagTracker.
type LagOption func(*LagTracker)

// ReadCommitted measures against the last stable offset.
func ReadCommitted() LagOption { return func(t *LagTracker) { t.readCommitted = true } }

// TransactionalTopic says every record of the consumed topics is written in
// a transaction (so the end is always preceded by a commit marker).
func TransactionalTopic() LagOption { return func(t *LagTracker) { t.txnOnly = true } }

// ConsumerLag returns the lag tracker of a consumer group (nil when m is).
func (m *Metrics) ConsumerLag(group string, opts ...LagOption) *LagTracker {
	if m == nil {
		return nil
	}
	t := &LagTracker{g: m.lag, group: group}
	for _, o := range opts {
		o(t)
	}
	return t
}

// Set sets one partition's lag directly.
func (t *LagTracker) Set(topic string, partition int32, lag int64) {
	if t == nil {
		return
	}
	t.g.WithLabelValues(t.group, topic, strconv.Itoa(int(partition))).Set(float64(max(lag, 0)))
}

// SetAll sets the lag of a consumer that reports one figure for all its
// partitions of topic (a kafka-go group Reader): partition="all".
func (t *LagTracker) SetAll(topic string, lag int64) {
	if t != nil {
		t.g.WithLabelValues(t.group, topic, "all").Set(float64(max(lag, 0)))
	}
}

// Observe updates the lag of every partition of fetches that returned
// records, once those records are processed.
func (t *LagTracker) Observe(fetches kgo.Fetches) {
	if t == nil {
		return
	}
	fetches.EachPartition(func(p kgo.FetchTopicPartition) {
		if p.Err != nil || len(p.Records) == 0 {
			return
		}
		end := p.HighWatermark
		if t.readCommitted && p.LastStableOffset >= 0 {
			end = p.LastStableOffset
		}
		lag := end - (p.Records[len(p.Records)-1].Offset + 1)
		if t.txnOnly && lag > 0 {
			lag-- // the commit marker of the last transaction
		}
		t.Set(p.Topic, p.Partition, lag)
	})
}

// Forget deletes the series of partitions this consumer no longer owns
// (from OnPartitionsRevoked / OnPartitionsLost).
func (t *LagTracker) Forget(partitions map[string][]int32) {
	if t == nil {
		return
	}
	for topic, ps := range partitions {
		for _, p := range ps {
			t.g.DeleteLabelValues(t.group, topic, strconv.Itoa(int(p)))
		}
	}
}

// ForgetAll deletes every series of this consumer group.
func (t *LagTracker) ForgetAll() {
	if t != nil {
		t.g.DeletePartialMatch(prometheus.Labels{"group": t.group})
	}
}
