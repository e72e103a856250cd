package cli

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the generated part of docs/configuration.md")

const (
	docPath   = "../../docs/configuration.md"
	beginMark = "<!-- BEGIN GENERATED FLAGS: go test ./internal/cli -run TestConfigurationDoc -update -->"
	endMark   = "<!-- END GENERATED FLAGS -->"
)

// flagTables renders one table per command: flag, environment variable,
// default and meaning.
func flagTables() string {
	var b strings.Builder
	for _, c := range Commands() {
		fs, _ := c.Flags()
		fmt.Fprintf(&b, "\n### moat %s\n\n%s.\n\n| flag | environment | default | meaning |\n|---|---|---|---|\n", c.Name, c.Summary)
		fs.VisitAll(func(f *flag.Flag) {
			def := f.DefValue
			if strings.HasPrefix(f.Name, "scorer-transactional-id") {
				def = "moat-scorer-<hostname>"
			}
			if def == "" {
				def = "(none)"
			}
			env := "`" + EnvName(f.Name) + "`"
			if isAlias(f) {
				env = "(none)"
			}
			fmt.Fprintf(&b, "| `--%s` | %s | `%s` | %s |\n", f.Name, env, def, strings.ReplaceAll(f.Usage, "|", "\\|"))
		})
	}
	return b.String()
}

// TestConfigurationDoc keeps docs/configuration.md true: its generated
// tables must list exactly the flags every command has.
func TestConfigurationDoc(t *testing.T) {
	doc, err := os.ReadFile(docPath)
	if err != nil {
		t.Fatal(err)
	}
	i, j := bytes.Index(doc, []byte(beginMark)), bytes.Index(doc, []byte(endMark))
	if i < 0 || j < i {
		t.Fatalf("%s lacks the generated-flags markers", docPath)
	}
	want := flagTables()
	got := string(doc[i+len(beginMark) : j])
	if got == want+"\n" {
		return
	}
	if *update {
		out := string(doc[:i+len(beginMark)]) + want + "\n" + string(doc[j:])
		if err := os.WriteFile(docPath, []byte(out), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Errorf("%s is out of date with the flags; run go test ./internal/cli -run TestConfigurationDoc -update", docPath)
}

func TestEnvOverridesDefaultAndFlagOverridesEnv(t *testing.T) {
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	var k kafkaFlags
	k.register(fs)
	t.Setenv("MOAT_KAFKA_BROKERS", "a:1,b:2")
	t.Setenv("MOAT_KAFKA_PARTITIONS", "12")
	if err := parse(fs, nil); err != nil {
		t.Fatal(err)
	}
	if c := k.config(); len(c.Brokers) != 2 || c.Brokers[1] != "b:2" || c.Partitions != 12 {
		t.Fatalf("env not applied: %+v", c)
	}
	if err := parse(fs, []string{"--kafka-brokers", "c:3"}); err != nil {
		t.Fatal(err)
	}
	if c := k.config(); len(c.Brokers) != 1 || c.Brokers[0] != "c:3" {
		t.Fatalf("flag did not win: %+v", c)
	}
	t.Setenv("MOAT_KAFKA_PARTITIONS", "many")
	if err := parse(flag.NewFlagSet("y", flag.ContinueOnError), nil); err != nil {
		t.Fatal("a variable of an unknown flag must be ignored")
	}
	fs2 := flag.NewFlagSet("z", flag.ContinueOnError)
	var k2 kafkaFlags
	k2.register(fs2)
	if err := parse(fs2, nil); err == nil {
		t.Fatal("a bad MOAT_KAFKA_PARTITIONS was accepted")
	}
}
