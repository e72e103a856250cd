package cli

import (
	"bytes"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// --tor-exits-file alone (no IP databases) gives a geo DB that knows the
// exits; a file that is not an exit list stops the start.
func TestEnrichmentTorExitsFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "torbulkexitlist")
	if err := os.WriteFile(p, []byte("# exits\n185.220.101.1\n2001:db8::1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	e := enrichmentFlags{torExits: p}
	out, err := e.open(log)
	if err != nil {
		t.Fatal(err)
	}
	if out.Geo == nil || !out.Geo.Lookup(netip.MustParseAddr("185.220.101.1")).Tor || out.Geo.Lookup(netip.MustParseAddr("185.220.101.2")).Tor {
		t.Fatal("exit list not applied")
	}
	if !strings.Contains(logs.String(), "tor exit list loaded") || !strings.Contains(logs.String(), "entries=2") {
		t.Errorf("log: %s", logs.String())
	}

	bad := filepath.Join(dir, "error.html")
	if err := os.WriteFile(bad, []byte("<html>503</html>\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := (&enrichmentFlags{torExits: bad}).open(log); err == nil || !strings.Contains(err.Error(), "tor exit list") {
		t.Errorf("a bad exit list was accepted: %v", err)
	}
	if _, err := (&enrichmentFlags{torExits: filepath.Join(dir, "missing")}).open(log); err == nil {
		t.Error("a missing exit list was accepted")
	}

	// An old or empty list still loads, with a warning.
	logs.Reset()
	if _, err := loadTorExits(p, time.Now().Add(8*24*time.Hour), log); err != nil || !strings.Contains(logs.String(), "tor exit list is old") {
		t.Errorf("old list: %v %s", err, logs.String())
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte("# none\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	logs.Reset()
	if _, err := loadTorExits(empty, time.Now(), log); err != nil || !strings.Contains(logs.String(), "tor exit list is empty") {
		t.Errorf("empty list: %v %s", err, logs.String())
	}
}
