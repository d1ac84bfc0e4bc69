// Command remotegpu-coordinator runs a remotegpu coordinator (serve) and
// calls one from the command line (hosts, allocate, release, ...). See
// coordinator/internal/cli for the commands.
package main

import (
	"context"
	"os"

	"github.com/YoungBoyGod/remotegpu/coordinator/internal/cli"
)

func main() {
	os.Exit(cli.Main(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}
