package risk

import (
	"slices"
	"strings"
	"sync"

	"github.com/moat-dev/moat/schemas"
)

// Shared is where Assess reads the cross-user state: counts keyed by IP
// address, device fingerprint or normalized email rather than by user,
// for high_activity_ip, high_activity_device, multiple_accounts_per_device,
// cross-user credential_stuffing and cross-user multiple_aliases_per_email.
//
// Observe returns the counts of the event's keys with the event's own
// observations (one per key it has) folded in. An implementation may keep
// them (SharedState, in one process) or only count them on top of a table
// that another stage maintains (the scorer's global table, fed by the
// aggregator through the log).
type Shared interface {
	Observe(obs []schemas.Observation, ttl uint32) SharedCounts
}

// SharedCounts are the cross-user counts of one event's keys, this event
// included.
type SharedCounts struct {
	// IPEvents and DeviceEvents: events in the last hour.
	IPEvents, DeviceEvents int
	// IPFailUsers: distinct users with a failed login from the IP in the
	// last hour.
	IPFailUsers int
	// DeviceUsers: distinct users of the device within the TTL.
	DeviceUsers int
	// EmailAliases: distinct aliases of the mailbox within the TTL.
	EmailAliases int
}

// SharedEntry is the cross-user state of one key: when it was last seen,
// its events per 5 minutes over the last hour, and a small set of 32-bit
// hashes with last-seen times (IP: users with failed logins; device:
// users; email: aliases). It is fixed-size (SharedEntrySize bytes
// serialized).
type SharedEntry struct {
	Last   uint32
	Events ring12
	Set    sharedSet
}

// SharedEntrySize is the size of a serialized SharedEntry.
const SharedEntrySize = 1 + 4 + 4 + 2*ringHour + 1 + 8*8

// Apply folds one observation of the entry's key.
func (e *SharedEntry) Apply(o *schemas.Observation) {
	if o.At > e.Last {
		e.Last = o.At
	}
	switch o.Kind {
	case schemas.ObserveIP:
		ringAdd(&e.Events.Head, e.Events.C[:], o.At/300)
		if o.Failed && o.User != 0 {
			e.Set.observe(o.User, o.At)
		}
	case schemas.ObserveDevice:
		ringAdd(&e.Events.Head, e.Events.C[:], o.At/300)
		if o.User != 0 {
			e.Set.observe(o.User, o.At)
		}
	case schemas.ObserveEmail:
		e.Set.observe(o.Alias, o.At)
	}
}

// count adds the entry's counts for kind, as of now, to c.
func (e *SharedEntry) count(kind schemas.ObservationKind, now, ttl uint32, c *SharedCounts) {
	var hour, old uint32
	if now > 3600 {
		hour = now - 3600
	}
	if now > ttl {
		old = now - ttl
	}
	switch kind {
	case schemas.ObserveIP:
		c.IPEvents = ringSum(e.Events.Head, e.Events.C[:], now/300)
		c.IPFailUsers = e.Set.since(hour)
	case schemas.ObserveDevice:
		c.DeviceEvents = ringSum(e.Events.Head, e.Events.C[:], now/300)
		c.DeviceUsers = e.Set.since(old)
	case schemas.ObserveEmail:
		c.EmailAliases = e.Set.since(old)
	}
}

// Count returns the counts of the keys of obs (each applied to the entry
// look returns for it, on a copy) as of the observations' time.
func Count(obs []schemas.Observation, ttl uint32, look func(o *schemas.Observation) (SharedEntry, bool)) SharedCounts {
	var c SharedCounts
	for i := range obs {
		o := &obs[i]
		e, _ := look(o)
		e.Apply(o)
		e.count(o.Kind, o.At, ttl, &c)
	}
	return c
}

// MarshalBinary encodes the entry (SharedEntrySize bytes).
func (e *SharedEntry) MarshalBinary() ([]byte, error) {
	return e.AppendBinary(make([]byte, 0, SharedEntrySize)), nil
}

// AppendBinary appends the entry's encoding to b.
func (e *SharedEntry) AppendBinary(b []byte) []byte {
	b = append(b, 1)
	b = appendU32(b, e.Last)
	b = appendU32(b, e.Events.Head)
	for _, c := range e.Events.C {
		b = append(b, byte(c), byte(c>>8))
	}
	b = append(b, e.Set.N)
	for _, x := range e.Set.E {
		b = appendU32(b, x.H)
		b = appendU32(b, x.Last)
	}
	return b
}

// UnmarshalBinary decodes an entry encoded by MarshalBinary.
func (e *SharedEntry) UnmarshalBinary(b []byte) error {
	if len(b) != SharedEntrySize || b[0] != 1 || b[SharedEntrySize-1-8*8] > 8 {
		return ErrStateCorrupt
	}
	r := &reader{b: b[1:]}
	e.Last = r.u32()
	e.Events.Head = r.u32()
	for i := range e.Events.C {
		e.Events.C[i] = r.u16()
	}
	e.Set.N = r.u8()
	for i := range e.Set.E {
		e.Set.E[i] = ipSeen{H: r.u32(), Last: r.u32()}
	}
	return nil
}

// SharedState is a Shared kept in memory by the process that scores: it
// folds every observation it is given. It is exact for the events it sees
// (the quality harness and tests give it all of them), bounded to at most
// Cap keys (when full, the least recently seen eighth is dropped, ties
// broken by key, so eviction is deterministic), and safe for concurrent
// use. The scorer role does not use it: its events are partitioned by
// user, so it reads a table built by the aggregator instead.
type SharedState struct {
	mu  sync.Mutex
	cap int
	m   map[string]*SharedEntry
}

// sharedSet is a small set of 32-bit hashes with last-seen times.
type sharedSet struct {
	N uint8
	E [8]ipSeen
}

func (s *sharedSet) observe(h, now uint32) {
	for i := 0; i < int(s.N); i++ {
		if s.E[i].H == h {
			if now > s.E[i].Last {
				s.E[i].Last = now
			}
			return
		}
	}
	if int(s.N) < len(s.E) {
		s.E[s.N] = ipSeen{H: h, Last: now}
		s.N++
		return
	}
	v := 0
	for i := 1; i < len(s.E); i++ {
		if a, b := s.E[i], s.E[v]; a.Last < b.Last || a.Last == b.Last && a.H < b.H {
			v = i
		}
	}
	s.E[v] = ipSeen{H: h, Last: now}
}

func (s *sharedSet) since(t uint32) int {
	n := 0
	for i := 0; i < int(s.N); i++ {
		if s.E[i].Last >= t {
			n++
		}
	}
	return n
}

// NewSharedState returns a SharedState holding at most capacity keys
// (capacity <= 0: 1<<20).
func NewSharedState(capacity int) *SharedState {
	if capacity <= 0 {
		capacity = 1 << 20
	}
	return &SharedState{cap: capacity, m: make(map[string]*SharedEntry)}
}

// Len is the number of keys held.
func (s *SharedState) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}

// Observe folds obs and returns the counts including them.
func (s *SharedState) Observe(obs []schemas.Observation, ttl uint32) SharedCounts {
	s.mu.Lock()
	defer s.mu.Unlock()
	var c SharedCounts
	for i := range obs {
		o := &obs[i]
		key := string(o.RecordKey())
		e := s.m[key]
		if e == nil {
			if len(s.m) >= s.cap {
				EvictOldest(s.m, len(s.m)/8+1)
			}
			e = &SharedEntry{}
			s.m[key] = e
		}
		e.Apply(o)
		e.count(o.Kind, o.At, ttl, &c)
	}
	return c
}

// EvictOldest deletes the n least recently seen entries of m (ties broken
// by key, so the choice is deterministic) and returns their keys.
func EvictOldest(m map[string]*SharedEntry, n int) []string {
	type kl struct {
		k string
		l uint32
	}
	all := make([]kl, 0, len(m))
	for k, e := range m {
		all = append(all, kl{k, e.Last})
	}
	slices.SortFunc(all, func(a, b kl) int {
		if a.l != b.l {
			if a.l < b.l {
				return -1
			}
			return 1
		}
		return strings.Compare(a.k, b.k)
	})
	n = min(n, len(all))
	out := make([]string, n)
	for i, x := range all[:n] {
		delete(m, x.k)
		out[i] = x.k
	}
	return out
}
