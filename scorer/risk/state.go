package risk

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"unsafe"
)

// StateVersion is the version byte written first by UserState.MarshalBinary.
// Version 1 (before the novelty counts) is still read.
const StateVersion = 2

// Capacities of the per-user tables. They bound the state: whatever a user
// does, the serialized state never exceeds MaxStateSize bytes.
const (
	MaxDevices   = 16 // recent device fingerprints (LRU)
	MaxFailIPs   = 8  // distinct IPs of recent failed logins
	MaxAliases   = 4  // distinct email aliases
	ringMinutes  = 5  // 5 x 1 min  : the 5-minute velocity window
	ringHour     = 12 // 12 x 5 min : the 1-hour velocity and failure windows
	ringDay      = 24 // 24 x 1 h   : the 24-hour velocity window
	decayHalfDay = 90 // feature and device weights halve every 90 days unused
)

// Feature indexes the per-user categorical history used by the
// account-takeover model and the new_* signals.
type Feature uint8

// The features of the account-takeover model, in the order they are
// stored, serialized and reported.
const (
	FeatSubnet     Feature = iota // IPv4 /24 or IPv6 /48
	FeatASN                       // autonomous system (the ISP)
	FeatCountry                   // ISO country code
	FeatBrowser                   // browser family
	FeatOS                        // OS family (platform)
	FeatDeviceType                // desktop, mobile, tablet, ...
	FeatLanguage                  // primary Accept-Language subtag
	numFeatures
)

var featureNames = [numFeatures]string{"ip_subnet", "asn", "country", "browser", "os", "device_type", "language"}

// featureCaps is how many distinct values per feature a user keeps.
var featureCaps = [numFeatures]int{8, 8, 8, 6, 6, 4, 6}

const maxFeatureCap = 8

func (f Feature) String() string {
	if f < numFeatures {
		return featureNames[f]
	}
	return fmt.Sprintf("feature(%d)", uint8(f))
}

// valueCount is one value of a feature: a 32-bit hash of the value, how
// often the user was seen with it and when last.
type valueCount struct {
	H     uint32
	Count uint16
	Last  uint32 // unix seconds
}

type featureTable struct {
	N uint8
	E [maxFeatureCap]valueCount
}

type deviceEntry struct {
	H     uint64 // hash of the fingerprint
	First uint32
	Last  uint32
	Count uint16
}

type ipSeen struct {
	H    uint32
	Last uint32
}

// A ring is a fixed-size time-bucket counter: Head is the index (t/width)
// of the newest bucket; bucket i lives at C[i%len(C)].
type ring5 struct {
	Head uint32
	C    [ringMinutes]uint16
}

type ring12 struct {
	Head uint32
	C    [ringHour]uint16
}

type ring24 struct {
	Head uint32
	C    [ringDay]uint16
}

// UserState is everything Moat remembers about one user. It is bounded:
// fixed-size arrays, no maps, no slices, so the in-memory size is constant
// (see StateMemory) and the serialized size is at most MaxStateSize.
//
// A zero UserState is a user with no history.
type UserState struct {
	// Learned counts the events folded into the history (see Engine.Assess),
	// First and Last their time range (unix seconds).
	Learned     uint32
	First, Last uint32

	// LocValid says Lat, Lon and LocAt hold the last learned located event.
	LocValid bool
	Lat, Lon float32
	LocAt    uint32

	Features [numFeatures]featureTable
	// Novel counts, per feature, the learned events whose value was not
	// in the table then (saturating): the user's own rate of new values,
	// which smooths the takeover model (Witten-Bell).
	Novel [numFeatures]uint16
	// NovelDevices counts the learned events from a device that was not
	// in Devices then (saturating).
	NovelDevices uint16

	NDevices uint8
	Devices  [MaxDevices]deviceEntry

	// Velocity of every event of the user, and of failed logins.
	Vel5m   ring5
	Vel1h   ring12
	Vel24h  ring24
	Fail1h  ring12
	NFailIP uint8
	FailIPs [MaxFailIPs]ipSeen

	NAliases uint8
	Aliases  [MaxAliases]aliasEntry
}

// aliasEntry is one (normalized email, alias) pair the user was seen with,
// as 32-bit hashes.
type aliasEntry struct {
	Email, Alias uint32
}

// MaxStateSize is the largest MarshalBinary output.
const MaxStateSize = 1 + // version
	4 + 4 + 4 + // learned, first, last
	1 + 4 + 4 + 4 + // location
	int(numFeatures) + (8+8+8+6+6+4+6)*10 + // feature tables
	2*int(numFeatures) + 2 + // novelty counts
	1 + MaxDevices*18 +
	4*4 + (ringMinutes+ringHour+ringDay+ringHour)*2 + // rings
	1 + MaxFailIPs*8 +
	1 + MaxAliases*8

// --- rings ---

// ringAdd counts one event in bucket idx. Buckets newer than Head clear
// the ones they pass; an event older than the window is ignored.
func ringAdd(head *uint32, c []uint16, idx uint32) {
	n := uint32(len(c))
	switch {
	case idx > *head:
		if idx-*head >= n {
			clear(c)
		} else {
			for i := *head + 1; i <= idx; i++ {
				c[i%n] = 0
			}
		}
		*head = idx
	case *head-idx >= n:
		return
	}
	if p := &c[idx%n]; *p < math.MaxUint16 {
		*p++
	}
}

// ringSum counts the events in the len(c) buckets ending at idx (or at
// Head when Head is newer).
func ringSum(head uint32, c []uint16, idx uint32) int {
	n := uint32(len(c))
	if idx < head {
		idx = head
	}
	if idx-head >= n {
		return 0
	}
	// the window holds buckets idx-n+1..idx; of those, head-(n-1-(idx-head))
	// ..head are in c (all of c when idx == head).
	s := 0
	skip := idx - head // oldest buckets that fell out of the window
	if skip == 0 {
		for _, v := range c {
			s += int(v)
		}
		return s
	}
	p := head % n
	for k := uint32(0); k < n-skip; k++ { // head, head-1, ...
		s += int(c[p])
		if p == 0 {
			p = n
		}
		p--
	}
	return s
}

// --- feature tables ---

// decayed is the weight used to choose what to evict: the count halved for
// every decayHalfDay days unused. Integer arithmetic keeps it portable.
func decayed(count uint16, last, now uint32) uint32 {
	if now <= last {
		return uint32(count) << 8
	}
	shift := (now - last) / (decayHalfDay * 86400)
	if shift > 24 {
		return 0
	}
	return (uint32(count) << 8) >> shift
}

func (t *featureTable) find(h uint32) int {
	for i := 0; i < int(t.N); i++ {
		if t.E[i].H == h {
			return i
		}
	}
	return -1
}

func (t *featureTable) total() int {
	s := 0
	for i := 0; i < int(t.N); i++ {
		s += int(t.E[i].Count)
	}
	return s
}

func (t *featureTable) observe(h uint32, now uint32, capacity int) {
	if i := t.find(h); i >= 0 {
		e := &t.E[i]
		if e.Count == math.MaxUint16 { // halve all to keep ratios
			for j := 0; j < int(t.N); j++ {
				t.E[j].Count = (t.E[j].Count + 1) / 2
			}
		}
		e.Count++
		if now > e.Last {
			e.Last = now
		}
		return
	}
	if int(t.N) < capacity {
		t.E[t.N] = valueCount{H: h, Count: 1, Last: now}
		t.N++
		return
	}
	// evict the lowest decayed weight; ties: least recent, then lowest hash
	v := 0
	for i := 1; i < int(t.N); i++ {
		a, b := &t.E[i], &t.E[v]
		wa, wb := decayed(a.Count, a.Last, now), decayed(b.Count, b.Last, now)
		if wa < wb || wa == wb && (a.Last < b.Last || a.Last == b.Last && a.H < b.H) {
			v = i
		}
	}
	t.E[v] = valueCount{H: h, Count: 1, Last: now}
}

// --- devices ---

func (s *UserState) findDevice(h uint64) int {
	for i := 0; i < int(s.NDevices); i++ {
		if s.Devices[i].H == h {
			return i
		}
	}
	return -1
}

// deviceTotal is the sum of the devices' use counts.
func (s *UserState) deviceTotal() int {
	n := 0
	for i := 0; i < int(s.NDevices); i++ {
		n += int(s.Devices[i].Count)
	}
	return n
}

func (s *UserState) observeDevice(h uint64, now uint32) {
	if i := s.findDevice(h); i >= 0 {
		d := &s.Devices[i]
		if d.Count < math.MaxUint16 {
			d.Count++
		}
		if now > d.Last {
			d.Last = now
		}
		return
	}
	e := deviceEntry{H: h, First: now, Last: now, Count: 1}
	if int(s.NDevices) < MaxDevices {
		s.Devices[s.NDevices] = e
		s.NDevices++
		return
	}
	// LRU: evict the least recently seen; ties: fewer uses, then lowest hash
	v := 0
	for i := 1; i < MaxDevices; i++ {
		a, b := &s.Devices[i], &s.Devices[v]
		if a.Last < b.Last || a.Last == b.Last && (a.Count < b.Count || a.Count == b.Count && a.H < b.H) {
			v = i
		}
	}
	s.Devices[v] = e
}

// --- failed-login IPs ---

func (s *UserState) observeFailIP(h uint32, now uint32) {
	for i := 0; i < int(s.NFailIP); i++ {
		if s.FailIPs[i].H == h {
			if now > s.FailIPs[i].Last {
				s.FailIPs[i].Last = now
			}
			return
		}
	}
	e := ipSeen{H: h, Last: now}
	if int(s.NFailIP) < MaxFailIPs {
		s.FailIPs[s.NFailIP] = e
		s.NFailIP++
		return
	}
	v := 0
	for i := 1; i < MaxFailIPs; i++ {
		a, b := s.FailIPs[i], s.FailIPs[v]
		if a.Last < b.Last || a.Last == b.Last && a.H < b.H {
			v = i
		}
	}
	s.FailIPs[v] = e
}

// failIPsSince counts the distinct failed-login IPs seen at or after t,
// plus cur when it is not among them (cur 0: none).
func (s *UserState) failIPsSince(t uint32, cur uint32) int {
	n, seen := 0, false
	for i := 0; i < int(s.NFailIP); i++ {
		if s.FailIPs[i].Last >= t {
			n++
			if s.FailIPs[i].H == cur {
				seen = true
			}
		}
	}
	if cur != 0 && !seen {
		n++
	}
	return n
}

// --- aliases ---

// otherAlias reports whether the user was seen with the same normalized
// email under a different alias.
func (s *UserState) otherAlias(a aliasEntry) bool {
	for i := 0; i < int(s.NAliases); i++ {
		if s.Aliases[i].Email == a.Email && s.Aliases[i].Alias != a.Alias {
			return true
		}
	}
	return false
}

func (s *UserState) observeAlias(h aliasEntry) {
	for i := 0; i < int(s.NAliases); i++ {
		if s.Aliases[i] == h {
			return
		}
	}
	if int(s.NAliases) < MaxAliases {
		s.Aliases[s.NAliases] = h
		s.NAliases++
		return
	}
	copy(s.Aliases[:], s.Aliases[1:]) // FIFO
	s.Aliases[MaxAliases-1] = h
}

// --- serialization ---

// MarshalBinary encodes the state: a version byte then fixed-width
// little-endian fields, tables prefixed by their length. At most
// MaxStateSize bytes; a user with no history is 1 byte.
func (s *UserState) MarshalBinary() ([]byte, error) {
	return s.AppendBinary(make([]byte, 0, s.size()))
}

// BinarySize is at least the length of MarshalBinary's output, for callers
// that append the state to a buffer of their own.
func (s *UserState) BinarySize() int { return s.size() }

func (s *UserState) size() int {
	if s.empty() {
		return 1
	}
	n := 1 + 12 + 13 + 3*int(numFeatures) + 2 + 1 + int(s.NDevices)*18 + 16 + (ringMinutes+ringHour+ringDay+ringHour)*2 + 1 + int(s.NFailIP)*8 + 1 + int(s.NAliases)*8
	for f := range s.Features {
		n += int(s.Features[f].N) * 10
	}
	return n
}

func (s *UserState) empty() bool { return *s == UserState{} }

// AppendBinary appends the encoding of MarshalBinary to b.
func (s *UserState) AppendBinary(b []byte) ([]byte, error) {
	if s.empty() {
		return append(b, 0), nil // version 0: empty state
	}
	le := binary.LittleEndian
	b = append(b, StateVersion)
	b = le.AppendUint32(b, s.Learned)
	b = le.AppendUint32(b, s.First)
	b = le.AppendUint32(b, s.Last)
	if s.LocValid {
		b = append(b, 1)
	} else {
		b = append(b, 0)
	}
	b = le.AppendUint32(b, math.Float32bits(s.Lat))
	b = le.AppendUint32(b, math.Float32bits(s.Lon))
	b = le.AppendUint32(b, s.LocAt)
	for f := range s.Features {
		t := &s.Features[f]
		b = append(b, t.N)
		for i := 0; i < int(t.N); i++ {
			b = le.AppendUint32(b, t.E[i].H)
			b = le.AppendUint16(b, t.E[i].Count)
			b = le.AppendUint32(b, t.E[i].Last)
		}
	}
	for _, v := range s.Novel {
		b = le.AppendUint16(b, v)
	}
	b = le.AppendUint16(b, s.NovelDevices)
	b = append(b, s.NDevices)
	for i := 0; i < int(s.NDevices); i++ {
		d := &s.Devices[i]
		b = le.AppendUint64(b, d.H)
		b = le.AppendUint32(b, d.First)
		b = le.AppendUint32(b, d.Last)
		b = le.AppendUint16(b, d.Count)
	}
	b = appendRing(b, s.Vel5m.Head, s.Vel5m.C[:])
	b = appendRing(b, s.Vel1h.Head, s.Vel1h.C[:])
	b = appendRing(b, s.Vel24h.Head, s.Vel24h.C[:])
	b = appendRing(b, s.Fail1h.Head, s.Fail1h.C[:])
	b = append(b, s.NFailIP)
	for i := 0; i < int(s.NFailIP); i++ {
		b = le.AppendUint32(b, s.FailIPs[i].H)
		b = le.AppendUint32(b, s.FailIPs[i].Last)
	}
	b = append(b, s.NAliases)
	for i := 0; i < int(s.NAliases); i++ {
		b = le.AppendUint32(b, s.Aliases[i].Email)
		b = le.AppendUint32(b, s.Aliases[i].Alias)
	}
	return b, nil
}

func appendRing(b []byte, head uint32, c []uint16) []byte {
	b = binary.LittleEndian.AppendUint32(b, head)
	for _, v := range c {
		b = binary.LittleEndian.AppendUint16(b, v)
	}
	return b
}

// ErrStateCorrupt is returned by UnmarshalBinary for truncated or invalid
// input; ErrStateVersion for a version this build does not read.
var (
	ErrStateCorrupt = errors.New("risk: corrupt user state")
	ErrStateVersion = errors.New("risk: unknown user state version")
)

type reader struct {
	b   []byte
	err bool
}

func (r *reader) u8() uint8 {
	if len(r.b) < 1 {
		r.err = true
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v
}

func (r *reader) u16() uint16 {
	if len(r.b) < 2 {
		r.err = true
		return 0
	}
	v := binary.LittleEndian.Uint16(r.b)
	r.b = r.b[2:]
	return v
}

func (r *reader) u32() uint32 {
	if len(r.b) < 4 {
		r.err = true
		return 0
	}
	v := binary.LittleEndian.Uint32(r.b)
	r.b = r.b[4:]
	return v
}

func (r *reader) u64() uint64 {
	if len(r.b) < 8 {
		r.err = true
		return 0
	}
	v := binary.LittleEndian.Uint64(r.b)
	r.b = r.b[8:]
	return v
}

// UnmarshalBinary decodes MarshalBinary's output, replacing s.
func (s *UserState) UnmarshalBinary(data []byte) error {
	*s = UserState{}
	if len(data) == 0 {
		return ErrStateCorrupt
	}
	switch data[0] {
	case 0:
		if len(data) != 1 {
			return ErrStateCorrupt
		}
		return nil
	case 1, StateVersion:
	default:
		return fmt.Errorf("%w %d", ErrStateVersion, data[0])
	}
	r := &reader{b: data[1:]}
	s.Learned, s.First, s.Last = r.u32(), r.u32(), r.u32()
	s.LocValid = r.u8() == 1
	s.Lat, s.Lon = math.Float32frombits(r.u32()), math.Float32frombits(r.u32())
	s.LocAt = r.u32()
	for f := range s.Features {
		t := &s.Features[f]
		n := r.u8()
		if int(n) > featureCaps[f] {
			return ErrStateCorrupt
		}
		t.N = n
		for i := 0; i < int(n); i++ {
			t.E[i] = valueCount{H: r.u32(), Count: r.u16(), Last: r.u32()}
		}
	}
	for f := range s.Novel {
		if data[0] == 1 {
			// version 1 did not count: the distinct values held are the
			// best estimate
			s.Novel[f] = uint16(s.Features[f].N)
		} else {
			s.Novel[f] = r.u16()
		}
	}
	if data[0] != 1 {
		s.NovelDevices = r.u16()
	}
	if s.NDevices = r.u8(); s.NDevices > MaxDevices {
		return ErrStateCorrupt
	}
	for i := 0; i < int(s.NDevices); i++ {
		s.Devices[i] = deviceEntry{H: r.u64(), First: r.u32(), Last: r.u32(), Count: r.u16()}
	}
	if data[0] == 1 {
		s.NovelDevices = uint16(s.NDevices)
	}
	readRing(r, &s.Vel5m.Head, s.Vel5m.C[:])
	readRing(r, &s.Vel1h.Head, s.Vel1h.C[:])
	readRing(r, &s.Vel24h.Head, s.Vel24h.C[:])
	readRing(r, &s.Fail1h.Head, s.Fail1h.C[:])
	if s.NFailIP = r.u8(); s.NFailIP > MaxFailIPs {
		return ErrStateCorrupt
	}
	for i := 0; i < int(s.NFailIP); i++ {
		s.FailIPs[i] = ipSeen{H: r.u32(), Last: r.u32()}
	}
	if s.NAliases = r.u8(); s.NAliases > MaxAliases {
		return ErrStateCorrupt
	}
	for i := 0; i < int(s.NAliases); i++ {
		s.Aliases[i] = aliasEntry{Email: r.u32(), Alias: r.u32()}
	}
	if r.err || len(r.b) != 0 {
		*s = UserState{}
		return ErrStateCorrupt
	}
	return nil
}

func readRing(r *reader, head *uint32, c []uint16) {
	*head = r.u32()
	for i := range c {
		c[i] = r.u16()
	}
}

// StateMemory is the in-memory size of a UserState in bytes (constant: no
// pointers, no slices, no maps).
const StateMemory = int(unsafe.Sizeof(UserState{}))
