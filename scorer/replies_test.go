package scorer_test

import (
	"context"
	"encoding/json"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moat-dev/moat/internal/kafka/kafkatest"
	"github.com/moat-dev/moat/schemas"
	"github.com/moat-dev/moat/scorer"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// abortingCluster is a broker whose scorer transactions fail to commit
// their offsets (an abortable error, as in a rebalance) until allow is
// closed; each such transaction is aborted. With hold, a failing commit
// first waits for allow, so the transaction is still open when allow is
// closed.
type abortingCluster struct {
	cluster
	allow   chan struct{}
	aborted atomic.Int32
}

func newAbortingCluster(t *testing.T, hold bool) *abortingCluster {
	t.Helper()
	k, cfg, cl := kafkatest.Cluster(t, 3)
	c := &abortingCluster{allow: make(chan struct{}), cluster: cluster{cfg: cfg, cl: cl}}
	k.ControlKey(int16(kmsg.TxnOffsetCommit), func(kr kmsg.Request) (kmsg.Response, error, bool) {
		k.KeepControl()
		if hold && c.aborted.Load() == 0 {
			// Wait for allow without blocking the rest of the broker.
			k.SleepControl(func() {
				select {
				case <-c.allow:
				case <-time.After(30 * time.Second):
				}
			})
		}
		select {
		case <-c.allow:
			if c.aborted.Load() > 0 {
				k.DropControl()
				return nil, nil, false
			}
		default:
		}
		req := kr.(*kmsg.TxnOffsetCommitRequest)
		resp := req.ResponseKind().(*kmsg.TxnOffsetCommitResponse)
		for _, rt := range req.Topics {
			st := kmsg.NewTxnOffsetCommitResponseTopic()
			st.Topic = rt.Topic
			for _, rp := range rt.Partitions {
				sp := kmsg.NewTxnOffsetCommitResponseTopicPartition()
				sp.Partition = rp.Partition
				sp.ErrorCode = kerr.RebalanceInProgress.Code
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		c.aborted.Add(1)
		return resp, nil, true
	})
	return c
}

// replies reads, read committed as ingest does, the replies addressed to
// instance and sends each on the returned channel.
func (c cluster) replies(t *testing.T, instance string) <-chan *kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.cfg.Brokers...), kgo.ConsumeTopics(schemas.TopicReplies),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	out := make(chan *kgo.Record, 100)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			fs := cl.PollFetches(ctx)
			if ctx.Err() != nil {
				return
			}
			fs.EachRecord(func(r *kgo.Record) {
				if string(r.Key) == instance {
					out <- r
				}
			})
		}
	}()
	t.Cleanup(func() { cancel(); <-done; cl.Close() })
	return out
}

func startScorer(t *testing.T, c cluster) {
	t.Helper()
	t.Cleanup(startScorerWait(t, c, 0))
}

// startScorerWait starts a scorer whose transactions stay open batchWait
// for more records; stop stops it (an open transaction aborts).
func startScorerWait(t *testing.T, c cluster, batchWait time.Duration) (stop func()) {
	t.Helper()
	w, err := scorer.New(scorer.Config{Kafka: c.cfg, TransactionalID: "test-scorer-replies", MaxPollRecords: 50, BatchWait: batchWait}, newDecider(t), discard)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}

func decisionOf(t *testing.T, r *kgo.Record) schemas.Decision {
	t.Helper()
	var d schemas.Decision
	if err := json.Unmarshal(r.Value, &d); err != nil {
		t.Fatal(err)
	}
	return d
}

// TestRiskReplyDoesNotWaitForTheCommit: the decision of a risk call
// reaches the waiting ingest instance while the scorer's transaction that
// holds it is still open, so the call is answered without waiting for the
// commit. That transaction then aborts; the event is decided again, and
// exactly one decision commits, identical to the reply the caller got.
func TestRiskReplyDoesNotWaitForTheCommit(t *testing.T) {
	c := newAbortingCluster(t, true)
	replies := c.replies(t, "ingest-test")
	ev := event(1)
	ev.Kind, ev.ReplyTo = schemas.KindRisk, "ingest-test"
	c.produce(t, eventRecord(t, ev))
	startScorer(t, c.cluster)

	var first *kgo.Record
	select {
	case first = <-replies:
	case <-time.After(30 * time.Second):
		t.Fatal("no reply while the transaction was open")
	}
	if c.aborted.Load() != 0 {
		t.Fatal("the reply came after the transaction ended")
	}
	close(c.allow) // the open transaction now aborts
	got := c.committed(t, schemas.TopicDecisions, 1, 20*time.Second)
	if c.aborted.Load() == 0 {
		t.Fatal("the transaction of the reply was not aborted")
	}
	if len(got) != 1 {
		t.Fatalf("%d committed decisions, want 1", len(got))
	}
	if d := decisionOf(t, got[0]); d.Event.ID != ev.ID {
		t.Fatalf("decision of %s, want %s", d.Event.ID, ev.ID)
	}
	if string(first.Value) != string(got[0].Value) {
		t.Fatalf("the reply differs from the committed decision:\n%s\n%s", first.Value, got[0].Value)
	}
	// The redecided event is replied again, identically; ingest hands the
	// first reply to the call and drops the others.
	for _, r := range drain(replies, time.Second) {
		if string(r.Value) != string(first.Value) {
			t.Fatalf("a later reply differs:\n%s\n%s", r.Value, first.Value)
		}
	}
}

// drain returns what arrives on ch until it has been quiet for wait.
func drain(ch <-chan *kgo.Record, wait time.Duration) []*kgo.Record {
	var out []*kgo.Record
	for {
		select {
		case r := <-ch:
			out = append(out, r)
		case <-time.After(wait):
			return out
		}
	}
}

// TestCommandReplyCommitsWithItsDecision: an end-user command's reply
// stays in the scorer's transaction (its answer promises a committed
// command): the reply of an aborted transaction is never read, and the
// command, decided again, is replied exactly once.
func TestCommandReplyCommitsWithItsDecision(t *testing.T) {
	c := newAbortingCluster(t, false)
	replies := c.replies(t, "api-test")
	ev := event(2)
	ev.Kind, ev.Type, ev.Status, ev.ReplyTo = schemas.KindDeviceVerify, "", "", "api-test"
	ev.Device = &schemas.DeviceRef{Token: "device-token"}
	c.produce(t, eventRecord(t, ev))
	startScorer(t, c.cluster)

	// Let commits through once a transaction was aborted.
	for c.aborted.Load() == 0 {
		select {
		case r := <-replies:
			t.Fatalf("a reply was read before any commit: %s", r.Value)
		case <-time.After(10 * time.Millisecond):
		}
	}
	close(c.allow)
	got := c.committed(t, schemas.TopicDecisions, 1, 20*time.Second)
	if len(got) != 1 {
		t.Fatalf("%d committed decisions, want 1", len(got))
	}
	all := drain(replies, 2*time.Second)
	if len(all) != 1 || string(all[0].Value) != string(got[0].Value) {
		t.Fatalf("%d replies, want exactly one, the committed decision", len(all))
	}
}

// TestRiskReplyDoesNotWaitForTheBatch: with transactions kept open a
// minute for more records, risk calls arriving one after another are each
// answered while their transaction is still open (nothing is committed
// yet), with the decision that then commits.
func TestRiskReplyDoesNotWaitForTheBatch(t *testing.T) {
	c := newCluster(t)
	replies := c.replies(t, "ingest-test")
	stop := startScorerWait(t, c, time.Minute)
	want := map[string]string{}
	for i := 0; i < 5; i++ {
		ev := event(i)
		ev.Kind, ev.ReplyTo = schemas.KindRisk, "ingest-test"
		c.produce(t, eventRecord(t, ev))
		select {
		case r := <-replies:
			if d := decisionOf(t, r); d.Event.ID != ev.ID {
				t.Fatalf("reply for %s, want %s", d.Event.ID, ev.ID)
			}
			want[ev.ID] = string(r.Value)
		case <-time.After(30 * time.Second):
			t.Fatalf("call %d not answered while its transaction is open", i)
		}
	}
	if got := c.committed(t, schemas.TopicDecisions, 0, time.Second); len(got) != 0 {
		t.Fatalf("%d decisions committed before the window ended", len(got))
	}
	// Stopping aborts the open transaction; the next scorer decides the
	// events again, without a window, and commits what was replied.
	stop()
	t.Cleanup(startScorerWait(t, c, 0))
	got := c.committed(t, schemas.TopicDecisions, len(want), 20*time.Second)
	if len(got) != len(want) {
		t.Fatalf("%d committed decisions, want %d", len(got), len(want))
	}
	for _, r := range got {
		if d := decisionOf(t, r); want[d.Event.ID] != string(r.Value) {
			t.Fatalf("committed decision of %s differs from its reply:\n%s\n%s", d.Event.ID, r.Value, want[d.Event.ID])
		}
	}
}

// TestExactlyOnceWithBatchWindow: records that join an open transaction
// are committed exactly once, across restarts that abort open windows.
func TestExactlyOnceWithBatchWindow(t *testing.T) {
	c := newCluster(t)
	const n = 1000
	want := map[string]bool{}
	var recs []*kgo.Record
	for i := 0; i < n; i++ {
		ev := event(i)
		want[ev.ID] = true
		recs = append(recs, eventRecord(t, ev))
	}
	stop := startScorerWait(t, c, 50*time.Millisecond)
	for i := 0; i < n; i += 100 {
		for _, r := range recs[i : i+100] {
			c.produce(t, r) // one by one: they join open transactions
		}
		if i%300 == 0 {
			stop()
			stop = startScorerWait(t, c, 50*time.Millisecond)
		}
	}
	got := c.committed(t, schemas.TopicDecisions, n, 30*time.Second)
	stop()
	if len(got) != n {
		t.Fatalf("%d committed decisions, want %d", len(got), n)
	}
	for _, r := range got {
		id := decisionOf(t, r).Event.ID
		if !want[id] {
			t.Fatalf("unexpected or duplicated decision for %s", id)
		}
		delete(want, id)
	}
}
