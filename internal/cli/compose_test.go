package cli

import (
	"flag"
	"os"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// TestComposeMatchesCLI keeps compose.yaml (which cannot run here: no
// Docker) honest: every service running moat names a real command, passes
// only flags that command has, and sets only MOAT_* variables that map to
// its flags.
func TestComposeMatchesCLI(t *testing.T) {
	b, err := os.ReadFile("../../compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Services map[string]struct {
			Image       string            `yaml:"image"`
			Command     []string          `yaml:"command"`
			Environment map[string]string `yaml:"environment"`
			Healthcheck struct {
				Test []string `yaml:"test"`
			} `yaml:"healthcheck"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	cmds := map[string]Command{}
	for _, c := range Commands() {
		cmds[c.Name] = c
	}
	// Variables read directly rather than through a flag.
	direct := map[string]bool{"MOAT_API_SECRET": true}
	checkArgs := func(svc string, args []string, env map[string]string) {
		c, ok := cmds[args[0]]
		if !ok {
			t.Errorf("%s: moat has no command %q", svc, args[0])
			return
		}
		fs, _ := c.Flags()
		fs.Init(c.Name, flag.ContinueOnError)
		fs.SetOutput(new(strings.Builder))
		if err := fs.Parse(args[1:]); err != nil {
			t.Errorf("%s: %v", svc, err)
		}
		for k := range env {
			if !strings.HasPrefix(k, "MOAT_") || direct[k] {
				continue
			}
			name := strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(k, "MOAT_"), "_", "-"))
			if fs.Lookup(name) == nil && c.Name != "migrate" {
				t.Errorf("%s: %s sets no flag of moat %s", svc, k, c.Name)
			}
		}
	}
	roles := 0
	for name, s := range doc.Services {
		if s.Image != "moat:dev" {
			continue
		}
		roles++
		if len(s.Command) == 0 {
			t.Errorf("%s: no command", name)
			continue
		}
		checkArgs(name, s.Command, s.Environment)
		if hc := s.Healthcheck.Test; len(hc) > 2 && strings.HasSuffix(hc[1], "/moat") {
			checkArgs(name+" healthcheck", hc[2:], nil)
		}
	}
	if roles < 6 {
		t.Errorf("compose.yaml runs %d moat services, want every role and migrate", roles)
	}
}
