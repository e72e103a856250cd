package scorer

import (
	"strings"
	"testing"

	"github.com/moat-dev/moat/internal/useragent"
	"github.com/moat-dev/moat/scorer/fingerprint"
)

// testParts returns a user-agent parser and a device hasher (a fixed test
// key) for the package's own tests to build deciders from.
func testParts(tb testing.TB) (*useragent.Parser, *fingerprint.Hasher) {
	tb.Helper()
	ua, err := useragent.New(0)
	if err != nil {
		tb.Fatal(err)
	}
	fp, err := fingerprint.New([]byte(strings.Repeat("k", 32)))
	if err != nil {
		tb.Fatal(err)
	}
	return ua, fp
}
