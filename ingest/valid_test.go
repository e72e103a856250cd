package ingest

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// FuzzCheckJSON holds checkJSON to encoding/json's Valid and to a plain
// depth count.
func FuzzCheckJSON(f *testing.F) {
	for _, s := range []string{`{}`, `[]`, `{"a":[1,2,{"b":null}]}`, `"\u00e9\n"`, `-0.5e+10`, `01`, `1.`, `[1,]`, `{"a" 1}`,
		`tru`, "\"a\x01\"", "\"\xff\"", ` {"a":"b"} `, `[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]`} {
		f.Add([]byte(s))
	}
	files, _ := filepath.Glob("testdata/requests/*.json")
	for _, file := range files {
		if b, err := os.ReadFile(file); err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		const limit = 8
		valid, deep := checkJSON(b, limit)
		stdValid := json.Valid(b)
		refDeep := stdValid && depthOver(b, limit)
		switch {
		case refDeep && (valid || !deep):
			t.Fatalf("%q: nested deeper than %d, checkJSON says valid=%v deep=%v", b, limit, valid, deep)
		case !refDeep && valid != stdValid:
			t.Fatalf("%q: json.Valid %v, checkJSON %v (deep=%v)", b, stdValid, valid, deep)
		}
	})
}

// depthOver reports whether valid JSON b nests deeper than limit.
func depthOver(b []byte, limit int) bool {
	depth, inStr := 0, false
	for i := 0; i < len(b); i++ {
		switch c := b[i]; {
		case inStr && c == '\\':
			i++
		case c == '"':
			inStr = !inStr
		case inStr:
		case c == '{' || c == '[':
			if depth++; depth > limit {
				return true
			}
		case c == '}' || c == ']':
			depth--
		}
	}
	return false
}

// TestStringScanning puts every kind of byte a string scanner must stop at
// (quote, backslash, control, non-ASCII) at every offset of strings around
// the 8-byte words checkJSON, stringEnd, plain and decodeString read, and
// holds them to encoding/json.
func TestStringScanning(t *testing.T) {
	specials := []string{`\"`, `\\`, `\n`, `\u00e9`, `\u12`, "\x01", "\x1f", "\x7f", "é", "\xff", `"`, `\`, `\\\"`}
	for n := 0; n <= 20; n++ {
		for at := 0; at <= n; at++ {
			for _, sp := range specials {
				inner := strings.Repeat("a", at) + sp + strings.Repeat("b", n-at)
				body := []byte(`{"k` + inner + `":"` + inner + `","x":1}`)
				valid, _ := checkJSON(body, MaxJSONDepth)
				if valid != json.Valid(body) {
					t.Fatalf("%q: checkJSON %v, json.Valid %v", body, valid, !valid)
				}
				if !valid {
					continue
				}
				var want map[string]any
				if err := json.Unmarshal(body, &want); err != nil {
					t.Fatal(err)
				}
				got := map[string]any{}
				it := members(string(body))
				for k, v, ok := it.next(); ok; k, v, ok = it.next() {
					if s, ok := decodeString(v); ok {
						got[k] = s
					} else {
						got[k] = float64(1)
					}
				}
				if it.err || !reflect.DeepEqual(got, want) {
					t.Fatalf("%q: scanned %q (err %v), encoding/json reads %q", body, got, it.err, want)
				}
				s := `"` + inner + `"`
				if plain(inner) != (!strings.ContainsAny(inner, `\`) && isASCII(inner)) {
					t.Fatalf("plain(%q) = %v", inner, plain(inner))
				}
				if e := stringEnd(s+`,"z"`, 0); e != len(s) {
					t.Fatalf("stringEnd(%q) = %d, want %d", s, e, len(s))
				}
			}
		}
	}
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
