package schemas

import (
	"bytes"
	"testing"
)

func TestObservationRoundTrip(t *testing.T) {
	for _, o := range []Observation{
		{AppID: "shop", Kind: ObserveIP, Key: "3f2a", At: 1_790_000_000, User: 7, Failed: true},
		{AppID: "a", Kind: ObserveDevice, Key: "fp", At: 1},
		{AppID: "a\x01b", Kind: ObserveEmail, Key: "k\x00with nul", At: 9, User: 1, Alias: 42},
	} {
		got, err := DecodeObservation(o.RecordKey(), o.AppendBinary(nil))
		if err != nil || got != o {
			t.Fatalf("round trip of %+v: %+v, %v", o, got, err)
		}
	}
}

func TestObservationRejects(t *testing.T) {
	good := Observation{AppID: "shop", Kind: ObserveIP, Key: "k", At: 5}
	v := good.AppendBinary(nil)
	for name, c := range map[string]struct{ key, value []byte }{
		"no separator":   {[]byte("shopik"), v},
		"no kind":        {[]byte("shop\x00"), v},
		"unknown kind":   {SharedKey("shop", 'x', "k"), append([]byte{1, 'x'}, v[2:]...)},
		"kind mismatch":  {SharedKey("shop", ObserveDevice, "k"), v},
		"short value":    {good.RecordKey(), v[:14]},
		"long value":     {good.RecordKey(), append(bytes.Clone(v), 0)},
		"future version": {good.RecordKey(), append([]byte{2}, v[1:]...)},
		"unknown flag":   {good.RecordKey(), append(bytes.Clone(v[:14]), 2)},
		"empty":          {nil, nil},
	} {
		if _, err := DecodeObservation(c.key, c.value); err != ErrBadObservation {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// FuzzDecodeObservation: any record decodes or is refused, never panics,
// and what decodes encodes back to the same bytes.
func FuzzDecodeObservation(f *testing.F) {
	o := Observation{AppID: "shop", Kind: ObserveEmail, Key: "k", At: 5, User: 3, Alias: 9}
	f.Add(o.RecordKey(), o.AppendBinary(nil))
	f.Add([]byte("x\x00i"), []byte{1, 'i', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, key, value []byte) {
		got, err := DecodeObservation(key, value)
		if err != nil {
			return
		}
		if !bytes.Equal(got.RecordKey(), key) || !bytes.Equal(got.AppendBinary(nil), value) {
			t.Fatalf("%q %q decoded to %+v, which encodes differently", key, value, got)
		}
	})
}
