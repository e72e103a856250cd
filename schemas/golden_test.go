package schemas_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moat-dev/moat/schemas"
	"github.com/santhosh-tekuri/jsonschema/v6"
)

func compile(t *testing.T) *jsonschema.Schema {
	t.Helper()
	sch, err := jsonschema.NewCompiler().Compile("jsonschema/event.v1.json")
	if err != nil {
		t.Fatal(err)
	}
	return sch
}

func validate(sch *jsonschema.Schema, doc []byte) error {
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(doc))
	if err != nil {
		return err
	}
	return sch.Validate(inst)
}

// TestGoldenEventsStillDecode keeps every shipped envelope decodable: each
// golden file (written by ingest's golden test) decodes into Event and
// encodes back to the very same bytes, and matches the JSON Schema.
func TestGoldenEventsStillDecode(t *testing.T) {
	sch := compile(t)
	files, _ := filepath.Glob("testdata/event.v1/*.json")
	if len(files) < 5 {
		t.Fatalf("%d golden envelopes, want at least 5", len(files))
	}
	for _, f := range files {
		want, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var ev schemas.Event
		if err := json.Unmarshal(want, &ev); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		got, _ := json.MarshalIndent(ev, "", "  ")
		if !bytes.Equal(append(got, '\n'), want) {
			t.Errorf("%s does not round-trip:\n%s", f, got)
		}
		if err := validate(sch, want); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

// TestSchemaRejects proves the JSON Schema is enforced, not decorative.
func TestSchemaRejects(t *testing.T) {
	sch := compile(t)
	good, err := os.ReadFile("testdata/event.v1/go-track.json")
	if err != nil {
		t.Fatal(err)
	}
	for name, edit := range map[string][2]string{
		"unknown kind":     {`"kind": "track"`, `"kind": "page"`},
		"uuid v4 id":       {`"id": "01937f2a-0000-7000`, `"id": "01937f2a-0000-4000`},
		"unknown field":    {`"v": 1,`, `"v": 1, "surprise": true,`},
		"upper header":     {`"user-agent"`, `"User-Agent"`},
		"wrong version":    {`"v": 1,`, `"v": 2,`},
		"non-object props": {`"properties": {}`, `"properties": []`},
	} {
		bad := strings.Replace(string(good), edit[0], edit[1], 1)
		if bad == string(good) {
			t.Fatalf("%s: edit did not apply", name)
		}
		if err := validate(sch, []byte(bad)); err == nil {
			t.Errorf("%s: schema accepted it", name)
		}
	}
}

func TestSplitLegacyEvent(t *testing.T) {
	tests := []struct{ give, typ, status string }{
		{"$login.succeeded", "$login", "$succeeded"},
		{"$password_reset_request.failed", "$password_reset_request", "$failed"},
		{"$logout", "$logout", ""},
		{"$login.", "$login.", ""},
		{"Signed Up", "$custom", ""},
	}
	for _, tt := range tests {
		typ, status := schemas.SplitLegacyEvent(tt.give)
		if typ != tt.typ || status != tt.status {
			t.Errorf("SplitLegacyEvent(%q) = %q, %q", tt.give, typ, status)
		}
	}
}

func TestKeyKeepsAUsersEventsTogether(t *testing.T) {
	a := schemas.Event{AppID: "app", User: schemas.User{ID: "u1"}, Context: schemas.Context{IP: "1.1.1.1"}}
	b := schemas.Event{AppID: "app", User: schemas.User{ID: "u1"}, Context: schemas.Context{IP: "2.2.2.2", RequestToken: "t"}}
	if string(a.Key()) != string(b.Key()) {
		t.Error("one user's events have different keys")
	}
	anon := schemas.Event{AppID: "app", Context: schemas.Context{RequestToken: "t"}}
	other := schemas.Event{AppID: "other", Context: schemas.Context{RequestToken: "t"}}
	if string(anon.Key()) == string(other.Key()) || string(anon.Key()) == string(a.Key()) {
		t.Error("keys collide across apps or subjects")
	}
}

func TestMigrationsParse(t *testing.T) {
	ms, err := schemas.Migrations("db")
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) == 0 || ms[0].Version != 1 {
		t.Fatalf("migrations = %+v", ms)
	}
	for _, m := range ms {
		for _, st := range m.Statements {
			if strings.Contains(st, "{db}") || strings.HasSuffix(st, ";") {
				t.Errorf("migration %d: statement not prepared: %q", m.Version, st)
			}
			for _, banned := range []string{"DateTime64", "Map(", "JSON", " TTL ", "LowCardinality", "CODEC"} {
				if strings.Contains(st, banned) {
					t.Errorf("migration %d uses %s, which ClickHouse 18.16 lacks", m.Version, banned)
				}
			}
		}
	}
}
