// Command moat runs Moat, a self-hosted device-intelligence and
// account-takeover risk platform with a Castle-compatible API. See
// `moat help` for the subcommands.
package main

import (
	"os"

	"github.com/moat-dev/moat/internal/cli"
)

func main() {
	ctx, stop := cli.SignalContext()
	code := cli.Main(ctx, os.Args[1:], os.Stderr)
	stop()
	os.Exit(code)
}
