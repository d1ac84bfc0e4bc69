package cli

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/YoungBoyGod/remotegpu/pkg/cliutil"
	"github.com/YoungBoyGod/remotegpu/pkg/version"
)

// Main runs the command line with args (without the program name) and
// returns the process exit code: 0 on success, 1 on any error, whose
// message goes to stderr.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := NewRootCommand(stdout, stderr)
	root.SetArgs(args)
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintf(stderr, "Error: %v\n", err)
		return 1
	}
	return 0
}

// NewRootCommand returns the remotegpu-coordinator command with all its
// subcommands, writing to stdout and stderr.
func NewRootCommand(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "remotegpu-coordinator",
		Short: "Coordinate a fleet of GPU hosts: serve the API or call it",
		Long: "remotegpu-coordinator watches the hosts that remotegpu agents register " +
			"in etcd and places CPU, memory and GPU allocations on them.\n\n" +
			"Run \"remotegpu-coordinator serve\" to start a coordinator; the other " +
			"commands call a running one. Every flag can also be set from the " +
			"environment as REMOTEGPU_<FLAG>, e.g. REMOTEGPU_ADDR for --addr.",
		Version:       version.Version,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return cliutil.ApplyEnv(envFlags(cmd.Flags()), nil)
		},
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetVersionTemplate("remotegpu-coordinator {{.Version}}\n")

	root.AddCommand(newServeCommand())
	root.AddCommand(clientCommands()...)
	return root
}

// envFlags returns fs without --help and --version, so that a variable
// such as REMOTEGPU_VERSION set for a build does not turn into a flag.
func envFlags(fs *pflag.FlagSet) *pflag.FlagSet {
	out := pflag.NewFlagSet(fs.Name(), pflag.ContinueOnError)
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Name != "help" && f.Name != "version" {
			out.AddFlag(f)
		}
	})
	return out
}
