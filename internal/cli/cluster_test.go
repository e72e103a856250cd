package cli

import (
	"bytes"
	"context"
	"flag"
	"strings"
	"testing"
)

func commandFlags(t *testing.T, name string) *flag.FlagSet {
	t.Helper()
	for _, c := range Commands() {
		if c.Name == name {
			fs, _ := c.Flags()
			fs.SetOutput(&bytes.Buffer{})
			return fs
		}
	}
	t.Fatalf("no command %s", name)
	return nil
}

// TestClusterFlag: every command that migrates takes the cluster, from
// --clickhouse-cluster or MOAT_CLICKHOUSE_CLUSTER; moat migrate also from
// --cluster, which has no variable of its own.
func TestClusterFlag(t *testing.T) {
	for _, name := range []string{"migrate", "projector", "webhooker"} {
		t.Run(name, func(t *testing.T) {
			fs := commandFlags(t, name)
			if err := parse(fs, nil); err != nil {
				t.Fatal(err)
			}
			if got := fs.Lookup("clickhouse-cluster").Value.String(); got != "" {
				t.Fatalf("default cluster %q, want none", got)
			}
			t.Setenv("MOAT_CLICKHOUSE_CLUSTER", "prod")
			fs = commandFlags(t, name)
			if err := parse(fs, nil); err != nil {
				t.Fatal(err)
			}
			if got := fs.Lookup("clickhouse-cluster").Value.String(); got != "prod" {
				t.Fatalf("cluster from MOAT_CLICKHOUSE_CLUSTER = %q", got)
			}
			fs = commandFlags(t, name)
			if err := parse(fs, []string{"--clickhouse-cluster", "bad name"}); err == nil {
				t.Fatal("a bad cluster name was accepted")
			}
		})
	}
	fs := commandFlags(t, "migrate")
	t.Setenv("MOAT_CLICKHOUSE_CLUSTER", "")
	t.Setenv("MOAT_CLUSTER", "ignored")
	if err := parse(fs, nil); err != nil {
		t.Fatal(err)
	}
	if got := fs.Lookup("clickhouse-cluster").Value.String(); got != "" {
		t.Fatalf("MOAT_CLUSTER set the cluster to %q: an alias has no variable", got)
	}
	fs = commandFlags(t, "migrate")
	if err := parse(fs, []string{"--cluster", "eu-1"}); err != nil {
		t.Fatal(err)
	}
	if got := fs.Lookup("clickhouse-cluster").Value.String(); got != "eu-1" {
		t.Fatalf("--cluster set %q, want eu-1", got)
	}
	for _, name := range []string{"api", "dev", "ingest"} {
		if commandFlags(t, name).Lookup("clickhouse-cluster") != nil {
			t.Errorf("moat %s has --clickhouse-cluster, but applies no migrations", name)
		}
	}
	var stderr bytes.Buffer
	if code := Main(context.Background(), []string{"migrate", "--cluster", "a'b"}, &stderr); code != 2 || !strings.Contains(stderr.String(), "cluster name") {
		t.Fatalf("moat migrate --cluster a'b: exit %d, %s", code, stderr.String())
	}
}
