package apps

import (
	"os"
	"path/filepath"
	"testing"
)

func TestAuthenticate(t *testing.T) {
	r, err := New([]App{
		{ID: "a", Name: "A", Secret: "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"},
		{ID: "b", Name: "B", Secret: "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", Secrets: []string{"rotatedbbbbbbbbbbbbbbbbbbbbbbbbb"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		give   string
		wantID string
		wantOK bool
	}{
		{"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "a", true},
		{"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", "b", true},
		{"rotatedbbbbbbbbbbbbbbbbbbbbbbbbb", "b", true},
		{"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "", false},
		{"", "", false},
		{"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "", false},
	}
	for _, tt := range tests {
		a, ok := r.Authenticate(tt.give)
		if ok != tt.wantOK || a.ID != tt.wantID {
			t.Errorf("Authenticate(%q) = %q, %v; want %q, %v", tt.give, a.ID, ok, tt.wantID, tt.wantOK)
		}
	}
}

func TestNewRejects(t *testing.T) {
	long := "0123456789abcdef0123456789abcdef"
	tests := []struct {
		name string
		give []App
	}{
		{"none", nil},
		{"bad id", []App{{ID: "a b", Secret: long}}},
		{"short secret", []App{{ID: "a", Secret: "short"}}},
		{"duplicate id", []App{{ID: "a", Secret: long}, {ID: "a", Secret: long + "x"}}},
		{"shared secret", []App{{ID: "a", Secret: long}, {ID: "b", Secret: long}}},
	}
	for _, tt := range tests {
		if _, err := New(tt.give); err == nil {
			t.Errorf("%s: New succeeded, want error", tt.name)
		}
	}
}

func TestLoadYAMLAndJSON(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{
		"apps.yaml": "apps:\n  - id: shop\n    name: Shop\n    secret: 0123456789abcdef0123456789abcdef\n    test: true\n",
		"apps.json": `{"apps":[{"id":"shop","name":"Shop","secret":"0123456789abcdef0123456789abcdef","test":true}]}`,
	}
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		r, err := Load(p)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		a, ok := r.Authenticate("0123456789abcdef0123456789abcdef")
		if !ok || a.ID != "shop" || a.Name != "Shop" || !a.Test {
			t.Errorf("%s: got %+v, %v", name, a, ok)
		}
	}
}
