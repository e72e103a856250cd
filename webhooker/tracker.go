package webhooker

import (
	"context"
	"sync"

	kafkago "github.com/segmentio/kafka-go"
)

// tracker follows the records one consumer fetched until every delivery
// they started is settled (delivered, or durably scheduled or dead-lettered)
// and yields, per partition, the last record of the settled prefix: the
// offset that may be committed. It also bounds the unsettled records
// (MaxPending). It is safe for concurrent use.
type tracker struct {
	mu    sync.Mutex
	parts map[int]*partTrack
	slots chan struct{}
}

type partTrack struct {
	entries []*entry // in fetch order, i.e. ascending offsets
	next    int64    // offset after the last record added
	commit  *kafkago.Message
}

type entry struct {
	msg     kafkago.Message
	left    int  // deliveries not settled yet
	dropped bool // forgotten after a rewind; its settles are ignored
}

func newTracker(maxPending int) *tracker {
	return &tracker{parts: map[int]*partTrack{}, slots: make(chan struct{}, maxPending)}
}

// acquire waits for room for one more unsettled record.
func (t *tracker) acquire(ctx context.Context) error {
	select {
	case t.slots <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// release gives back a slot taken by acquire that add never used.
func (t *tracker) release() { <-t.slots }

// add tracks m, for which n deliveries were started, and returns the
// function each of them calls once settled. A record with n == 0 is settled
// at once. Every add needs an acquire first. A record at or below an offset
// already tracked means the group rewound the partition (a rebalance): what
// was tracked there is forgotten, and is fetched again.
func (t *tracker) add(m kafkago.Message, n int) (settle func()) {
	t.mu.Lock()
	defer t.mu.Unlock()
	p := t.parts[m.Partition]
	if p == nil {
		p = &partTrack{}
		t.parts[m.Partition] = p
	}
	if m.Offset < p.next {
		for _, e := range p.entries {
			if e.left > 0 {
				e.dropped = true
				<-t.slots
			}
		}
		p.entries = nil
	}
	p.next = m.Offset + 1
	e := &entry{msg: m, left: n}
	p.entries = append(p.entries, e)
	if n == 0 {
		<-t.slots
	}
	return func() {
		t.mu.Lock()
		defer t.mu.Unlock()
		if e.dropped || e.left == 0 {
			return
		}
		e.left--
		if e.left == 0 {
			<-t.slots
		}
	}
}

// ready returns, per partition, the last record of the settled prefix that
// is not committed yet.
func (t *tracker) ready() []kafkago.Message {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []kafkago.Message
	for _, p := range t.parts {
		i := 0
		for i < len(p.entries) && p.entries[i].left == 0 {
			i++
		}
		if i > 0 {
			last := p.entries[i-1].msg
			if p.commit == nil || last.Offset > p.commit.Offset {
				p.commit = &last
			}
			clear(p.entries[:i])
			p.entries = p.entries[i:]
		}
		if p.commit != nil {
			out = append(out, *p.commit)
		}
	}
	return out
}

// committed forgets the records of msgs once their commit succeeded.
func (t *tracker) committed(msgs []kafkago.Message) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, m := range msgs {
		if p := t.parts[m.Partition]; p != nil && p.commit != nil && p.commit.Offset == m.Offset {
			p.commit = nil
		}
	}
}

// pending returns the number of unsettled records.
func (t *tracker) pending() int { return len(t.slots) }
