package deploy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.Cleanup(removeBuilds))
}

// builds caches the binaries built by buildBinary for the life of the test
// binary.
var builds struct {
	mu    sync.Mutex
	dir   string
	paths map[string]string
	errs  map[string]error
}

// buildBinary builds the Go package pkg (a path inside the repository such
// as "./agent/cmd/remotegpu-agent", or a module package) once per test
// binary and returns the executable's path.
func buildBinary(t *testing.T, pkg string) string {
	t.Helper()
	builds.mu.Lock()
	defer builds.mu.Unlock()
	if path, ok := builds.paths[pkg]; ok {
		require.NoError(t, builds.errs[pkg])
		return path
	}
	if builds.dir == "" {
		dir, err := os.MkdirTemp("", "remotegpu-deploy-test-")
		require.NoError(t, err)
		builds.dir = dir
		builds.paths = map[string]string{}
		builds.errs = map[string]error{}
	}

	path := filepath.Join(builds.dir, filepath.Base(pkg))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", path, pkg)
	cmd.Dir = repoRoot(t)
	// As the Makefile does: go-nvml's deprecation warnings are noise.
	cmd.Env = append(os.Environ(), "CGO_ENABLED=1",
		"CGO_CFLAGS=-O2 -g -Wno-deprecated-declarations")
	out, err := cmd.CombinedOutput()
	if err != nil {
		err = fmt.Errorf("go build %s: %w\n%s", pkg, err, out)
	}
	builds.paths[pkg] = path
	builds.errs[pkg] = err
	require.NoError(t, err)
	return path
}

func removeBuilds(int) {
	builds.mu.Lock()
	defer builds.mu.Unlock()
	if builds.dir != "" {
		_ = os.RemoveAll(builds.dir)
	}
}

// repoRoot returns the repository root: the nearest parent of the test's
// working directory that contains go.mod.
func repoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	require.NoError(t, err)
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		require.NotEqual(t, dir, parent, "go.mod not found above the test directory")
		dir = parent
	}
}

// scriptResult is the outcome of one script run.
type scriptResult struct {
	Stdout   string
	Stderr   string
	ExitCode int
}

// Output returns stdout and stderr together, for failure messages.
func (r scriptResult) Output() string {
	return "stdout:\n" + r.Stdout + "\nstderr:\n" + r.Stderr
}

// runScript runs a script of the repository with args and a clean
// environment: the caller's REMOTEGPU_*, ETCD_* and ETCDCTL* variables are
// dropped so that they cannot change the outcome, and env is added.
func runScript(t testing.TB, script string, env []string, args ...string) scriptResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	cmd := exec.CommandContext(ctx, filepath.Join(repoRoot(t), script), args...)
	cmd.Env = append(cleanEnv(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	err := cmd.Run()

	res := scriptResult{Stdout: stdout.String(), Stderr: stderr.String()}
	var exitErr *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exitErr):
		res.ExitCode = exitErr.ExitCode()
	default:
		require.NoError(t, err, "run %s", script)
	}
	require.NoError(t, ctx.Err(), "%s timed out\n%s", script, res.Output())
	return res
}

func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "REMOTEGPU_") ||
			strings.HasPrefix(name, "ETCD") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// writeFile writes content to dir/name with mode and returns the path.
func writeFile(t testing.TB, dir, name, content string, mode os.FileMode) string {
	t.Helper()
	path := filepath.Join(dir, name)
	require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
	require.NoError(t, os.WriteFile(path, []byte(content), mode))
	require.NoError(t, os.Chmod(path, mode))
	return path
}
