package harness

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"go.uber.org/goleak"
)

// Packages of the binaries that scenarios build, relative to the module
// root.
const (
	AgentPackage       = "./agent/cmd/remotegpu-agent"
	CoordinatorPackage = "./coordinator/cmd/remotegpu-coordinator"
	EtcdMemberPackage  = "./integration/cmd/etcd-member"
)

// BuildVersion is the version stamped into binaries built by the harness.
const BuildVersion = "integration"

// buildEnv holds the cgo settings of the Makefile: go-nvml's wrappers call
// NVML functions that the header marks deprecated.
var buildEnv = []string{
	"CGO_ENABLED=1",
	"CGO_CFLAGS=-O2 -g -Wno-deprecated-declarations",
}

type buildResult struct {
	once sync.Once
	path string
	err  error
}

// builds caches one build per package for the life of the test binary.
var builds struct {
	// mu guards the fields below.
	mu      sync.Mutex
	dir     string
	results map[string]*buildResult
}

// Binary builds the main package pkg, a path relative to the module root
// such as AgentPackage, and returns the binary's path. The first call per
// package builds it; later calls, also from parallel tests, reuse the
// result. A build error fails t.
func Binary(t testing.TB, pkg string) string {
	t.Helper()
	path, err := Build(pkg)
	if err != nil {
		t.Fatalf("build %s: %v", pkg, err)
	}
	return path
}

// Build is Binary without a test: it returns the build error instead.
func Build(pkg string) (string, error) {
	builds.mu.Lock()
	if builds.results == nil {
		builds.results = make(map[string]*buildResult)
	}
	r, ok := builds.results[pkg]
	if !ok {
		r = &buildResult{}
		builds.results[pkg] = r
	}
	builds.mu.Unlock()

	r.once.Do(func() { r.path, r.err = build(pkg) })
	return r.path, r.err
}

func build(pkg string) (string, error) {
	dir, err := buildDir()
	if err != nil {
		return "", err
	}
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	out := filepath.Join(dir, filepath.Base(pkg))
	ldflags := "-X github.com/YoungBoyGod/remotegpu/pkg/version.Version=" +
		BuildVersion
	cmd := exec.Command(goTool(), "build", "-ldflags", ldflags,
		"-o", out, pkg)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), buildEnv...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go build %s: %w\n%s", pkg, err,
			strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

func buildDir() (string, error) {
	builds.mu.Lock()
	defer builds.mu.Unlock()
	if builds.dir != "" {
		return builds.dir, nil
	}
	dir, err := os.MkdirTemp("", "remotegpu-integration-bin-")
	if err != nil {
		return "", fmt.Errorf("create build folder: %w", err)
	}
	builds.dir = dir
	return dir, nil
}

// removeBuilds deletes the build folder and clears the build cache.
func removeBuilds() error {
	builds.mu.Lock()
	defer builds.mu.Unlock()
	dir := builds.dir
	builds.dir = ""
	builds.results = nil
	if dir == "" {
		return nil
	}
	return os.RemoveAll(dir)
}

func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return "go"
}

// ModuleRoot returns the folder of the go.mod that the tests run in.
func ModuleRoot() (string, error) {
	out, err := exec.Command(goTool(), "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("go env GOMOD: not inside a Go module; " +
			"run the tests from the remotegpu repository")
	}
	return filepath.Dir(gomod), nil
}

// Main runs the tests of a package that uses the harness: it checks for
// leaked goroutines after a passing run, removes the built binaries and
// exits with the tests' status. Call it from TestMain.
func Main(m *testing.M, leakOptions ...goleak.Option) {
	code := m.Run()
	if code == 0 {
		if err := goleak.Find(leakOptions...); err != nil {
			fmt.Fprintf(os.Stderr, "goroutines leaked: %v\n", err)
			code = 1
		}
	}
	if err := removeBuilds(); err != nil {
		fmt.Fprintf(os.Stderr, "remove built binaries: %v\n", err)
	}
	os.Exit(code)
}
