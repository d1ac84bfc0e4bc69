package deploy

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/YoungBoyGod/remotegpu/pkg/cliutil"
)

// daemonCommand is a daemon and the subcommand its unit runs.
type daemonCommand struct {
	name       string // agent or coordinator
	pkg        string // main package, relative to the repository
	subcommand string
	// unitEnv is what systemd adds to the daemon's environment for the
	// unit's settings, so that its help shows the defaults the unit gets,
	// which the env file must show too.
	unitEnv []string
}

var daemonCommands = []daemonCommand{
	{name: "agent", pkg: "agent/cmd/remotegpu-agent", subcommand: "run"},
	{
		name: "coordinator", pkg: "coordinator/cmd/remotegpu-coordinator", subcommand: "serve",
		// StateDirectory=remotegpu
		unitEnv: []string{"STATE_DIRECTORY=/var/lib/remotegpu"},
	},
}

// buildDaemon builds a daemon's main package. It skips the test under
// -short, and while the package has no Go files so that this package's
// tests run before the daemons exist.
func buildDaemon(t *testing.T, d daemonCommand) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the daemons; skipped with -short")
	}
	sources, err := filepath.Glob(filepath.Join(repoRoot(t), d.pkg, "*.go"))
	require.NoError(t, err)
	if len(sources) == 0 {
		t.Skipf("%s has no Go files; this test needs the daemon", d.pkg)
	}
	return buildBinary(t, "./"+d.pkg)
}

// helpFlag is one flag line of cobra's help output.
type helpFlag struct {
	Name    string
	Default string
}

// cobra prints a flag as "  -s, --name type   usage (default x)"; bool
// flags have no type word.
var (
	helpFlagLine = regexp.MustCompile(`^\s+(?:-\w, )?--([a-z0-9-]+)\b(.*)$`)
	helpDefault  = regexp.MustCompile(`\(default (.*)\)$`)
)

// daemonFlags returns the flags that "binary subcommand --help" lists,
// run in a clean environment plus env.
func daemonFlags(t *testing.T, binary, subcommand string, env ...string) []helpFlag {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, subcommand, "--help")
	cmd.Env = append(cleanEnv(), env...)
	out, err := cmd.Output()
	require.NoError(t, err, "%s %s --help", binary, subcommand)

	var flags []helpFlag
	for _, line := range strings.Split(string(out), "\n") {
		m := helpFlagLine.FindStringSubmatch(line)
		if m == nil || m[1] == "help" || m[1] == "version" {
			continue
		}
		f := helpFlag{Name: m[1]}
		if d := helpDefault.FindStringSubmatch(strings.TrimSpace(m[2])); d != nil {
			f.Default = normalizeDefault(d[1])
		}
		flags = append(flags, f)
	}
	require.NotEmpty(t, flags, "no flags found in:\n%s", out)
	return flags
}

// normalizeDefault turns cobra's rendering of a default into the text an
// environment variable would hold: quotes and list brackets removed.
func normalizeDefault(v string) string {
	v = strings.Trim(v, `"`)
	if strings.HasPrefix(v, "[") && strings.HasSuffix(v, "]") {
		v = v[1 : len(v)-1]
	}
	return v
}

var envLine = regexp.MustCompile(`^(#?)(REMOTEGPU_[A-Z0-9_]+)=(.*)$`)

// envFileDefaults returns the variables an env file lists and their
// values, and fails the test on any line that sets a variable for real.
func envFileDefaults(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()

	values := map[string]string{}
	scanner := bufio.NewScanner(f)
	for scanner.Scan() {
		m := envLine.FindStringSubmatch(scanner.Text())
		if m == nil {
			continue
		}
		assert.Equal(t, "#", m[1],
			"%s sets %s; the shipped file must only document defaults", path, m[2])
		_, dup := values[m[2]]
		assert.False(t, dup, "%s lists %s twice", path, m[2])
		values[m[2]] = strings.Trim(m[3], "'")
	}
	require.NoError(t, scanner.Err())
	return values
}

func TestEnvFilesListEveryFlag(t *testing.T) {
	t.Parallel()
	root := repoRoot(t)
	for _, d := range daemonCommands {
		t.Run(d.name, func(t *testing.T) {
			binary := buildDaemon(t, d)
			flags := daemonFlags(t, binary, d.subcommand, d.unitEnv...)
			envFile := filepath.Join(root, "deploy", "config", d.name+".env")
			listed := envFileDefaults(t, envFile)

			known := map[string]bool{}
			for _, f := range flags {
				name := cliutil.EnvName(f.Name)
				known[name] = true
				got, ok := listed[name]
				if !assert.True(t, ok, "%s.env lacks %s for --%s", d.name, name, f.Name) {
					continue
				}
				assert.Equal(t, f.Default, got, "%s.env shows the wrong default of %s", d.name, name)
			}
			for name := range listed {
				assert.True(t, known[name], "%s.env lists %s, but %s %s has no such flag",
					d.name, name, filepath.Base(d.pkg), d.subcommand)
			}
		})
	}
}
