package risk

import (
	"slices"
	"strings"
	"sync"
)

// SharedState is the cross-user state of the signals that are keyed by IP
// address, device fingerprint or normalized email rather than by user:
// high_activity_ip, high_activity_device, multiple_accounts_per_device,
// cross-user credential_stuffing and cross-user
// multiple_aliases_per_email. It is bounded: at most Cap keys, each a
// fixed-size entry (sharedEntrySize bytes); when full, the least recently
// seen eighth is dropped (ties broken by key, so eviction is
// deterministic).
//
// The caller owns placement: events of one IP or device reach different
// user partitions, so a SharedState is exact only for the events of the
// partitions it sees (one per scorer process, or per partition for strict
// replay determinism). It is safe for concurrent use.
type SharedState struct {
	mu  sync.Mutex
	cap int
	m   map[string]*sharedEntry
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

type sharedEntry struct {
	Last   uint32
	Events ring12    // events in the last hour
	Users  sharedSet // distinct users (device) / aliases (email)
	Fails  sharedSet // distinct users with failed logins (IP)
}

const sharedEntrySize = 4 + 4 + 2*ringHour + 2*(1+8*8) // payload, excluding key and map overhead

// NewSharedState returns a SharedState holding at most capacity keys
// (capacity <= 0: 1<<20).
func NewSharedState(capacity int) *SharedState {
	if capacity <= 0 {
		capacity = 1 << 20
	}
	return &SharedState{cap: capacity, m: make(map[string]*sharedEntry)}
}

// Len is the number of keys held.
func (s *SharedState) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}

type sharedStats struct {
	ipEvents, devEvents, ipFailUsers, devUsers, emailAliases int
}

func (s *SharedState) entry(key string, now uint32) *sharedEntry {
	e := s.m[key]
	if e == nil {
		if len(s.m) >= s.cap {
			s.evict()
		}
		e = &sharedEntry{}
		s.m[strings.Clone(key)] = e
	}
	if now > e.Last {
		e.Last = now
	}
	return e
}

func (s *SharedState) evict() {
	type kl struct {
		k string
		l uint32
	}
	all := make([]kl, 0, len(s.m))
	for k, e := range s.m {
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
	n := len(all)/8 + 1
	for _, x := range all[:n] {
		delete(s.m, x.k)
	}
}

// observe folds one event and returns the counts including it.
func (s *SharedState) observe(ip, fp, email, alias string, user uint32, failed bool, now, ttl uint32) sharedStats {
	var st sharedStats
	var hour, old uint32
	if now > 3600 {
		hour = now - 3600
	}
	if now > ttl {
		old = now - ttl
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if ip != "" {
		e := s.entry("i"+ip, now)
		ringAdd(&e.Events.Head, e.Events.C[:], now/300)
		st.ipEvents = ringSum(e.Events.Head, e.Events.C[:], now/300)
		if failed && user != 0 {
			e.Fails.observe(user, now)
		}
		st.ipFailUsers = e.Fails.since(hour)
	}
	if fp != "" {
		e := s.entry("d"+fp, now)
		ringAdd(&e.Events.Head, e.Events.C[:], now/300)
		st.devEvents = ringSum(e.Events.Head, e.Events.C[:], now/300)
		if user != 0 {
			e.Users.observe(user, now)
		}
		st.devUsers = e.Users.since(old)
	}
	if email != "" {
		e := s.entry("e"+email, now)
		e.Users.observe(fnv32("\x00"+alias), now)
		st.emailAliases = e.Users.since(old)
	}
	return st
}
