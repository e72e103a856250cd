package webhooker

import (
	"context"
	"testing"

	kafkago "github.com/segmentio/kafka-go"
)

func TestTracker(t *testing.T) {
	tr := newTracker(10)
	ctx := context.Background()
	msg := func(p int, off int64) kafkago.Message { return kafkago.Message{Partition: p, Offset: off} }
	add := func(m kafkago.Message, n int) func() {
		if err := tr.acquire(ctx); err != nil {
			t.Fatal(err)
		}
		return tr.add(m, n)
	}
	s0 := add(msg(0, 0), 2)
	s1 := add(msg(0, 1), 1)
	add(msg(0, 2), 0) // nothing to deliver: settled at once
	s3 := add(msg(1, 7), 1)
	if got := tr.ready(); len(got) != 0 {
		t.Fatalf("ready = %v before anything settled", got)
	}
	s1()
	s3()
	got := tr.ready()
	if len(got) != 1 || got[0].Partition != 1 || got[0].Offset != 7 {
		t.Fatalf("ready = %v, want partition 1 offset 7 only", got)
	}
	tr.committed(got)
	s0()
	if got := tr.ready(); len(got) != 0 {
		t.Fatalf("ready = %v with offset 0 half settled", got)
	}
	s0()
	s0() // extra settles are ignored
	got = tr.ready()
	if len(got) != 1 || got[0].Offset != 2 {
		t.Fatalf("ready = %v, want partition 0 offset 2", got)
	}
	// An uncommitted offset is offered again until committed.
	if again := tr.ready(); len(again) != 1 || again[0].Offset != 2 {
		t.Fatalf("ready again = %v", again)
	}
	tr.committed(got)
	if tr.pending() != 0 {
		t.Fatalf("pending = %d", tr.pending())
	}
	// A rewind (rebalance) forgets the unsettled records and frees their
	// slots; their late settles are ignored.
	s5 := add(msg(0, 5), 1)
	add(msg(0, 3), 1)
	if tr.pending() != 1 {
		t.Fatalf("pending after rewind = %d, want 1", tr.pending())
	}
	s5()
	if tr.pending() != 1 {
		t.Fatalf("a forgotten record's settle freed a slot")
	}
}
