package chserver

import (
	"os"
	"path/filepath"
	"testing"
)

func TestPickedPortTaken(t *testing.T) {
	tail := "2026.11.22 03:07:01.741111 [ 1 ] {} <Error> Application: Net Exception: Address already in use: 127.0.0.1:42057\n"
	if !pickedPortTaken(tail, Config{}) {
		t.Error("auto-picked port taken: want a retry")
	}
	if pickedPortTaken(tail, Config{HTTPPort: 42057}) {
		t.Error("the caller's own port taken: want no retry")
	}
	if pickedPortTaken("<Error> Application: something else\n", Config{}) {
		t.Error("other error: want no retry")
	}
}

func TestTailSkipsEarlierRuns(t *testing.T) {
	p := filepath.Join(t.TempDir(), "log")
	if err := os.WriteFile(p, []byte("old run line\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	since := int64(len("old run line\n"))
	f, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("first new line\nsecond new line\n")
	f.Close()
	if got := string(tail(p, since, 4096)); got != "first new line\nsecond new line\n" {
		t.Errorf("tail since = %q", got)
	}
	if got := string(tail(p, since, 20)); got != "second new line\n" {
		t.Errorf("tail n = %q", got)
	}
	if got := string(tail(p, 1<<20, 4096)); got != "old run line\nfirst new line\nsecond new line\n" {
		t.Errorf("tail after rotation = %q", got)
	}
}
