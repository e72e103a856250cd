package ingest

import (
	"encoding/json"
	"os"
	"path/filepath"
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
