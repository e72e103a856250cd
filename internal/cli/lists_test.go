package cli

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/moat-dev/moat/internal/apps"
	"github.com/moat-dev/moat/schemas"
)

// TestDocumentedListPolicyLoads keeps the apps-file example of
// docs/signals.md's list conditions valid: it loads, compiles and keeps
// its in_list conditions.
func TestDocumentedListPolicyLoads(t *testing.T) {
	doc, err := os.ReadFile("../../docs/signals.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(doc), "### List conditions")
	m := regexp.MustCompile("(?s)```yaml\n(.*?)```").FindStringSubmatch(section)
	if !ok || m == nil {
		t.Fatal("no yaml example under ### List conditions")
	}
	path := filepath.Join(t.TempDir(), "apps.yaml")
	if err := os.WriteFile(path, []byte(m[1]), 0o600); err != nil {
		t.Fatal(err)
	}
	reg, err := apps.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	pol, err := policies(reg)
	if err != nil {
		t.Fatal(err)
	}
	p := pol["shop"]
	if p == nil || len(p.Rules) != 3 || !p.UsesLists() {
		t.Fatalf("policy %+v", p)
	}
	r0, r1 := p.Rules[0], p.Rules[1]
	if !r0.Hard || r0.Action != "deny" || len(r0.InList) != 1 || r0.InList[0].ListID != "01a201ca-63ee-70df-bd91-d0c2fa808ac9" || r0.InList[0].Field != "" {
		t.Errorf("rule 0 %+v", r0)
	}
	if r1.Action != "allow" || len(r1.InList) != 1 || r1.InList[0].Field != schemas.ListFieldDeviceFingerprint {
		t.Errorf("rule 1 %+v", r1)
	}

	// An unknown field is refused when the policy is compiled.
	bad := strings.Replace(m[1], "field: device.fingerprint", "field: device.colour", 1)
	if err := os.WriteFile(path, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	if reg, err = apps.Load(path); err != nil {
		t.Fatal(err)
	}
	if _, err := policies(reg); err == nil || !strings.Contains(err.Error(), "unknown field") {
		t.Errorf("bad field: %v", err)
	}
}
