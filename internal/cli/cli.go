// Package cli implements the moat command: one binary whose subcommands run
// Moat all-in-one (dev) or one role per process (ingest, api, scorer,
// projector, webhooker), apply migrations, and run the embedded broker.
//
// Every flag can also be set through a MOAT_* environment variable
// (EnvName); docs/configuration.md lists them all.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
)

// Command is one subcommand.
type Command struct {
	Name    string
	Summary string
	// Flags returns the command's flag set and the function that runs the
	// command once the flags are parsed.
	Flags func() (*flag.FlagSet, func(ctx context.Context) error)
}

// Commands returns every subcommand, sorted by name.
func Commands() []Command {
	cmds := []Command{
		{"dev", "run every role in one process on an embedded Kafka and a local ClickHouse", devCommand},
		{"ingest", "run the ingest role (Castle-compatible write API)", ingestCommand},
		{"api", "run the api role (read and command API)", apiCommand},
		{"scorer", "run the scorer role (events -> decisions)", scorerCommand},
		{"projector", "run the projector role (decisions -> ClickHouse)", projectorCommand},
		{"webhooker", "run the webhooker role (incidents -> webhooks)", webhookerCommand},
		{"webhooks", "webhooks replay: send dead-lettered webhook deliveries again", webhooksCommand},
		{"healthcheck", "probe a URL (exit 0 on 200), for container health checks", healthcheckCommand},
		{"load", "drive Castle-style traffic at a running Moat and report throughput, latency and lag", loadCommand},
		{"simulate", "score labelled legitimate and attack traffic with the real scorer and a baseline; report detection quality", simulateCommand},
		{"migrate", "apply ClickHouse migrations and exit", migrateCommand},
		{"broker", "run the embedded Kafka-protocol broker (kfake) on its own", brokerCommand},
	}
	sort.Slice(cmds, func(i, j int) bool { return cmds[i].Name < cmds[j].Name })
	return cmds
}

// Main runs the command named by args[0] and returns the exit code.
func Main(ctx context.Context, args []string, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, c := range Commands() {
		if c.Name != args[0] {
			continue
		}
		fs, run := c.Flags()
		fs.SetOutput(stderr)
		if err := parse(fs, args[1:]); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return 0
			}
			fmt.Fprintf(stderr, "moat %s: %v\n", c.Name, err)
			return 2
		}
		if err := run(ctx); err != nil {
			fmt.Fprintf(stderr, "moat %s: %v\n", c.Name, err)
			return 1
		}
		return 0
	}
	fmt.Fprintf(stderr, "moat: unknown command %q\n\n", args[0])
	usage(stderr)
	return 2
}

func usage(w io.Writer) {
	var b strings.Builder
	b.WriteString("usage: moat <command> [flags]\n\ncommands:\n")
	for _, c := range Commands() {
		fmt.Fprintf(&b, "  %-10s %s\n", c.Name, c.Summary)
	}
	b.WriteString("\nEvery flag can also be set as MOAT_<FLAG_NAME>; run `moat <command> -h` for its flags.\n")
	fmt.Fprint(w, b.String())
}
