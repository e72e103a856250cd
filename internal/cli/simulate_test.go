package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moat-dev/moat/internal/simulate"
)

// TestSimulateCommand runs a tiny simulation on the synthetic geo data and
// checks that the report lands between the markers of --out, keeping the
// hand-written text around them.
func TestSimulateCommand(t *testing.T) {
	t.Setenv("MOAT_GEOIP_CITY_V4", "")
	t.Setenv("MOAT_GEOIP_ASN", "")
	out := filepath.Join(t.TempDir(), "risk-quality.md")
	doc := "# Risk quality\n\nhand-written\n\n" + simulate.BeginMarker + "\nold\n" + simulate.EndMarker + "\n\nanalysis\n"
	if err := os.WriteFile(out, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	code := Main(context.Background(), []string{"simulate", "--users", "60", "--days", "20", "--eval-days", "5",
		"--attacks-per-type", "20", "--geo-samples", "50000", "--seed", "7", "--quiet", "--out", out}, &stderr)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	got := string(b)
	for _, want := range []string{"hand-written", "analysis", "Command (seed 7)", "synthetic", "| credential_stuffing | 20 |", "### Targets"} {
		if !strings.Contains(got, want) {
			t.Errorf("report lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "\nold\n") {
		t.Error("the old report was not replaced")
	}
}
