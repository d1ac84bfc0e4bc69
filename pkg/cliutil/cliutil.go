// Package cliutil holds what the daemons' command lines share: settings from
// REMOTEGPU_* environment variables and the slog logger flags.
package cliutil

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/pflag"
)

// EnvPrefix starts the name of every environment variable that sets a flag.
const EnvPrefix = "REMOTEGPU_"

// EnvName returns the environment variable for a flag: "etcd-endpoints"
// becomes REMOTEGPU_ETCD_ENDPOINTS.
func EnvName(flag string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// ApplyEnv sets every flag of fs that was not given on the command line from
// its environment variable, if that is set. A flag on the command line wins.
// For list flags the variable holds a comma-separated list.
func ApplyEnv(fs *pflag.FlagSet, lookup func(string) (string, bool)) error {
	if lookup == nil {
		lookup = os.LookupEnv
	}
	var firstErr error
	fs.VisitAll(func(f *pflag.Flag) {
		if firstErr != nil || f.Changed {
			return
		}
		name := EnvName(f.Name)
		v, ok := lookup(name)
		if !ok {
			return
		}
		if sv, isSlice := f.Value.(pflag.SliceValue); isSlice {
			if err := sv.Replace(splitList(v)); err != nil {
				firstErr = fmt.Errorf("invalid %s=%q: %w", name, v, err)
				return
			}
			// Replace bypasses FlagSet.Set, so mark the flag as given
			// like any other flag an environment variable sets.
			f.Changed = true
			return
		}
		if err := fs.Set(f.Name, v); err != nil {
			firstErr = fmt.Errorf("invalid %s=%q: %w", name, v, err)
		}
	})
	return firstErr
}

func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// LogConfig holds the --log-format and --log-level flags.
type LogConfig struct {
	Format string
	Level  string
}

// AddFlags registers the logging flags on fs.
func (c *LogConfig) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&c.Format, "log-format", "text", "log format: text or json")
	fs.StringVar(&c.Level, "log-level", "info", "log level: debug, info, warn or error")
}

// NewLogger returns a logger writing to w with the configured format and
// level.
func (c *LogConfig) NewLogger(w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.Level)); err != nil {
		return nil, fmt.Errorf("invalid --log-level %q: use debug, info, warn or error", c.Level)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch c.Format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	default:
		return nil, fmt.Errorf("invalid --log-format %q: use text or json", c.Format)
	}
}
