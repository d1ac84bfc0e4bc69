// Command remotegpu-agent runs on each GPU server. It reads CPU, memory and
// GPU state and keeps the host registered in etcd under a lease, so the
// coordinators can place work on it.
//
// Subcommands: "run" is the daemon; "inspect" collects once and prints the
// registration and status documents as JSON without contacting etcd;
// "version" prints the version. Every flag can also be set from the
// environment variable REMOTEGPU_<FLAG>, for example REMOTEGPU_HOST_ID.
//
// Exit status: 0 on success and after SIGTERM or SIGINT, 2 for a usage
// error (an unknown command, or an invalid flag, argument or setting), 1
// for any other error, including a host ID already registered by a
// running agent.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/YoungBoyGod/remotegpu/agent/internal/config"
	"github.com/YoungBoyGod/remotegpu/pkg/cliutil"
	"github.com/YoungBoyGod/remotegpu/pkg/version"
)

// usageError marks an invalid flag or setting: exit status 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func main() {
	os.Exit(execute(newRootCommand(), os.Stderr))
}

// execute runs root and returns the exit status, writing any error to
// stderr. A usage error gets status 2 and a pointer to --help.
func execute(root *cobra.Command, stderr io.Writer) int {
	// cobra parses the command line, flags and positional arguments
	// before it calls PersistentPreRunE, and returns its errors, such as
	// an unknown command, untyped. An error that comes before the hook
	// is therefore a usage error.
	parsed := false
	preRun := root.PersistentPreRunE
	root.PersistentPreRunE = func(cmd *cobra.Command, args []string) error {
		parsed = true
		return preRun(cmd, args)
	}

	cmd, err := root.ExecuteC()
	if err == nil {
		return 0
	}
	fmt.Fprintf(stderr, "remotegpu-agent: %v\n", err)
	var usage usageError
	if parsed && !errors.As(err, &usage) {
		return 1
	}
	if cmd == nil {
		cmd = root
	}
	fmt.Fprintf(stderr, "Run '%s --help' for usage.\n", cmd.CommandPath())
	return 2
}

// agentVersion returns the build-time version, else the module version.
func agentVersion() string {
	if version.Version != "dev" {
		return version.Version
	}
	if info, ok := debug.ReadBuildInfo(); ok &&
		info.Main.Version != "" && info.Main.Version != "(devel)" {
		return info.Main.Version
	}
	return version.Version
}

func newRootCommand() *cobra.Command {
	var cfg config.Config
	root := &cobra.Command{
		Use:   "remotegpu-agent",
		Short: "Register this GPU server in remotegpu and report its state",
		Long: "remotegpu-agent reads CPU, memory and GPU state and keeps the " +
			"host registered in etcd under a lease.\nEvery flag can also " +
			"be set from REMOTEGPU_<FLAG>, e.g. REMOTEGPU_HOST_ID.",
		Version:       agentVersion(),
		SilenceErrors: true,
		SilenceUsage:  true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			if err := cliutil.ApplyEnv(envFlags(cmd), nil); err != nil {
				return usageError{err}
			}
			return nil
		},
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return usageError{err}
	})
	root.AddCommand(newRunCommand(&cfg), newInspectCommand(&cfg),
		newVersionCommand())
	return root
}

// envFlags returns the command's flags that environment variables may
// set: all but cobra's own --help and --version.
func envFlags(cmd *cobra.Command) *pflag.FlagSet {
	fs := pflag.NewFlagSet(cmd.Name(), pflag.ContinueOnError)
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if f.Name != "help" && f.Name != "version" {
			fs.AddFlag(f)
		}
	})
	return fs
}

func newVersionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the agent version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintln(cmd.OutOrStdout(), "remotegpu-agent", agentVersion())
		},
	}
}
