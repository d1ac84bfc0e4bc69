package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/YoungBoyGod/remotegpu/pkg/cliutil"
	"github.com/YoungBoyGod/remotegpu/pkg/version"
)

// Main runs the command line with args (without the program name) and
// returns the process exit code: 0 on success, 2 for a usage error (an
// unknown command, or an invalid flag, argument or environment variable)
// and 1 for any other error. The error message goes to stderr, as an
// errorOutput JSON object when the command was given --json.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := NewRootCommand(stdout, stderr)
	root.SetArgs(args)

	// cobra parses the command line, flags and positional arguments
	// before it calls PersistentPreRunE, and returns its errors untyped.
	// An error that comes before the hook is therefore a usage error.
	parsed := false
	preRun := root.PersistentPreRunE
	root.PersistentPreRunE = func(cmd *cobra.Command, args []string) error {
		parsed = true
		return preRun(cmd, args)
	}

	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return 0
	}
	var usage usageError
	if !parsed && !errors.As(err, &usage) {
		err = usageError{err}
	}
	isUsage := errors.As(err, &usage)

	if wantsJSON(cmd, args, parsed) {
		writeJSONError(stderr, err)
		return exitCode(isUsage)
	}
	fmt.Fprintf(stderr, "Error: %v\n", err)
	if isUsage {
		if cmd == nil {
			cmd = root
		}
		fmt.Fprintf(stderr, "Run '%s --help' for usage.\n", cmd.CommandPath())
	}
	return exitCode(isUsage)
}

// exitCode returns 2 for a usage error and 1 for any other.
func exitCode(isUsage bool) int {
	if isUsage {
		return 2
	}
	return 1
}

// usageError marks an invalid flag, argument or setting, for which Main
// returns exit code 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

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
			if err := applyEnv(envFlags(cmd.Flags())); err != nil {
				return usageError{err}
			}
			return nil
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

// envSource is the flag annotation that names the environment variable
// a flag's value came from.
const envSource = "remotegpu-env-source"

// applyEnv sets the flags of fs that the command line left unset from
// their REMOTEGPU_* environment variables, and annotates each flag it set
// with envSource so that error messages can name the variable.
func applyEnv(fs *pflag.FlagSet) error {
	onCommandLine := map[string]bool{}
	fs.VisitAll(func(f *pflag.Flag) { onCommandLine[f.Name] = f.Changed })
	if err := cliutil.ApplyEnv(fs, nil); err != nil {
		return err
	}
	// cliutil.ApplyEnv sets a flag from the environment exactly when the
	// command line left it unset and its variable exists. It does not mark
	// list flags as changed, so the variable is looked up here again.
	fs.VisitAll(func(f *pflag.Flag) {
		name := cliutil.EnvName(f.Name)
		if _, set := os.LookupEnv(name); set && !onCommandLine[f.Name] {
			_ = fs.SetAnnotation(f.Name, envSource, []string{name})
		}
	})
	return nil
}

// flagSource names a flag for an error message: "--data-dir", or
// "--data-dir (set by REMOTEGPU_DATA_DIR)" when the environment set it.
func flagSource(fs *pflag.FlagSet, name string) string {
	return "--" + name + envNote(fs, name)
}

// envNote returns " (set by REMOTEGPU_<FLAG>)" when the environment set
// the flag, and "" otherwise.
func envNote(fs *pflag.FlagSet, name string) string {
	f := fs.Lookup(name)
	if f == nil || len(f.Annotations[envSource]) == 0 {
		return ""
	}
	return fmt.Sprintf(" (set by %s)", f.Annotations[envSource][0])
}
