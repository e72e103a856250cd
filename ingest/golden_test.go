package ingest

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moat-dev/moat/schemas"
	"github.com/santhosh-tekuri/jsonschema/v6"
)

var update = flag.Bool("update", false, "rewrite the golden envelopes in schemas/testdata")

// goldenDir holds the envelopes of schemas' golden test: every version ever
// shipped must keep decoding.
const goldenDir = "../schemas/testdata/event.v1"

// TestGoldenEnvelopes decodes request bodies as the SDKs send them
// (testdata/requests/<sdk>-<kind>.json), stamps the server fields with fixed
// values, and compares the envelope with its golden file, which must also
// validate against the published JSON Schema. Run with -update to rewrite.
func TestGoldenEnvelopes(t *testing.T) {
	c := jsonschema.NewCompiler()
	sch, err := c.Compile("../schemas/jsonschema/event.v1.json")
	if err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob("testdata/requests/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no request files: %v", err)
	}
	for i, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".json")
		t.Run(name, func(t *testing.T) {
			body, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			kind := schemas.Kind(name[strings.LastIndexByte(name, '-')+1:])
			if !kind.Known() {
				kind = schemas.Kind(name)
			}
			ev, err := Decode(kind, body, nil)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			ev.V = schemas.EnvelopeVersion
			ev.ID = "01937f2a-0000-7000-8000-00000000000" + string(rune('0'+i%10))
			ev.AppID = "golden"
			ev.Kind = kind
			ev.ReceivedAt = time.Date(2026, 11, 22, 3, 0, 0, 123e6, time.UTC)
			got, err := json.MarshalIndent(ev, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, '\n')
			path := filepath.Join(goldenDir, name+".json")
			if *update {
				if err := os.MkdirAll(goldenDir, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("envelope differs from %s (run with -update and review the diff):\n%s", path, got)
			}
			inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(got))
			if err != nil {
				t.Fatal(err)
			}
			if err := sch.Validate(inst); err != nil {
				t.Errorf("envelope does not match event.v1.json: %v", err)
			}
		})
	}
}
