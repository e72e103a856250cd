package schemas

import (
	"encoding/binary"
	"errors"
	"strings"
)

// ObservationKind says what an Observation's key is.
type ObservationKind byte

// The kinds of cross-user keys.
const (
	// ObserveIP: the key is the event's IP address.
	ObserveIP ObservationKind = 'i'
	// ObserveDevice: the key is the device fingerprint.
	ObserveDevice ObservationKind = 'd'
	// ObserveEmail: the key is the normalized mailbox (aliases removed).
	ObserveEmail ObservationKind = 'e'
)

// Observation is what one scored event tells the cross-user state about
// one of its keys: its IP, its device fingerprint or its mailbox. The
// scorer writes one to TopicObservations per key of every scored event, in
// the transaction of the event's decision; the aggregator folds them into
// TopicShared. It holds hashes, never the user id or the alias.
type Observation struct {
	AppID string
	Kind  ObservationKind
	// Key is the IP, fingerprint or normalized email.
	Key string
	// At is the event's server time, in Unix seconds.
	At uint32
	// User is a 32-bit hash of the user id (0: no user).
	User uint32
	// Alias is a 32-bit hash of the email alias (ObserveEmail only).
	Alias uint32
	// Failed marks a $login $failed.
	Failed bool
}

// observationVersion is the first byte of an encoded Observation.
const observationVersion = 1

// ErrBadObservation is returned for a record that is not an Observation.
var ErrBadObservation = errors.New("schemas: malformed observation record")

// RecordKey is the observation's record key on TopicObservations and
// TopicShared: app id, NUL, kind, key. Records of one key meet in one
// partition, so one aggregator owns each key.
func (o *Observation) RecordKey() []byte {
	return SharedKey(o.AppID, o.Kind, o.Key)
}

// SharedKey is the record key of a cross-user key.
func SharedKey(appID string, kind ObservationKind, key string) []byte {
	return AppendSharedKey(make([]byte, 0, len(appID)+2+len(key)), appID, kind, key)
}

// AppendSharedKey appends SharedKey(appID, kind, key) to b.
func AppendSharedKey(b []byte, appID string, kind ObservationKind, key string) []byte {
	b = append(b, appID...)
	b = append(b, 0, byte(kind))
	return append(b, key...)
}

// ParseSharedKey splits a record key made by SharedKey.
func ParseSharedKey(k []byte) (appID string, kind ObservationKind, key string, ok bool) {
	s := string(k)
	i := strings.IndexByte(s, 0)
	if i < 0 || i+1 >= len(s) {
		return "", 0, "", false
	}
	return s[:i], ObservationKind(s[i+1]), s[i+2:], true
}

// AppendBinary encodes the observation's value (the key is in the record
// key): version, kind, At, User, Alias, flags.
func (o *Observation) AppendBinary(b []byte) []byte {
	b = append(b, observationVersion, byte(o.Kind))
	b = binary.LittleEndian.AppendUint32(b, o.At)
	b = binary.LittleEndian.AppendUint32(b, o.User)
	b = binary.LittleEndian.AppendUint32(b, o.Alias)
	var flags byte
	if o.Failed {
		flags = 1
	}
	return append(b, flags)
}

// DecodeObservation decodes a TopicObservations record.
func DecodeObservation(key, value []byte) (Observation, error) {
	app, kind, k, ok := ParseSharedKey(key)
	if !ok || len(value) != 15 || value[0] != observationVersion || ObservationKind(value[1]) != kind || value[14] > 1 {
		return Observation{}, ErrBadObservation
	}
	switch kind {
	case ObserveIP, ObserveDevice, ObserveEmail:
	default:
		return Observation{}, ErrBadObservation
	}
	return Observation{AppID: app, Kind: kind, Key: k,
		At:     binary.LittleEndian.Uint32(value[2:]),
		User:   binary.LittleEndian.Uint32(value[6:]),
		Alias:  binary.LittleEndian.Uint32(value[10:]),
		Failed: value[14] == 1}, nil
}
