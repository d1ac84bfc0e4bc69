package deploy

import (
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const installScript = "scripts/install.sh"

// installedFile is one file install.sh puts into the --root tree.
type installedFile struct {
	path   string // relative to the root
	source string // relative to the repository, or "bin/<name>" for a stub
	mode   fs.FileMode
}

func installedFiles(daemon string) []installedFile {
	return []installedFile{
		{path: "usr/local/bin/remotegpu-" + daemon, source: "bin/remotegpu-" + daemon, mode: 0o755},
		{path: "etc/systemd/system/remotegpu-" + daemon + ".service",
			source: "deploy/systemd/remotegpu-" + daemon + ".service", mode: 0o644},
		{path: "etc/remotegpu/" + daemon + ".env", source: "deploy/config/" + daemon + ".env", mode: 0o640},
	}
}

// installFixture is a --root tree and a folder of stub daemon binaries.
type installFixture struct {
	root   string
	binSrc string
}

func newInstallFixture(t *testing.T) installFixture {
	t.Helper()
	dir := t.TempDir()
	f := installFixture{root: filepath.Join(dir, "root"), binSrc: filepath.Join(dir, "bin")}
	require.NoError(t, os.Mkdir(f.root, 0o755))
	for _, daemon := range []string{"agent", "coordinator"} {
		writeFile(t, f.binSrc, "remotegpu-"+daemon,
			"#!/bin/sh\necho stub remotegpu-"+daemon+" v1\n", 0o755)
	}
	return f
}

func (f installFixture) run(t *testing.T, args ...string) scriptResult {
	t.Helper()
	args = append([]string{"--root", f.root, "--bin-src", f.binSrc}, args...)
	return runScript(t, installScript, nil, args...)
}

// sourcePath returns where an installed file comes from.
func (f installFixture) sourcePath(t *testing.T, file installedFile) string {
	if rest, ok := strings.CutPrefix(file.source, "bin/"); ok {
		return filepath.Join(f.binSrc, rest)
	}
	return filepath.Join(repoRoot(t), file.source)
}

// fileState is what a second install must leave untouched.
type fileState struct {
	Mode    fs.FileMode
	SHA256  string
	ModTime time.Time
}

// snapshot records every file and folder under root.
func snapshot(t *testing.T, root string) map[string]fileState {
	t.Helper()
	states := map[string]fileState{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		state := fileState{Mode: info.Mode(), ModTime: info.ModTime()}
		if info.Mode().IsRegular() {
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(data)
			state.SHA256 = hex.EncodeToString(sum[:])
		}
		states[rel] = state
		return nil
	})
	require.NoError(t, err)
	return states
}

func assertInstalled(t *testing.T, f installFixture, daemon string) {
	t.Helper()
	for _, file := range installedFiles(daemon) {
		path := filepath.Join(f.root, file.path)
		info, err := os.Stat(path)
		if !assert.NoError(t, err, "%s is not installed", file.path) {
			continue
		}
		assert.Equal(t, file.mode, info.Mode().Perm(), "mode of %s", file.path)
		assert.Equal(t, readString(t, f.sourcePath(t, file)), readString(t, path),
			"content of %s", file.path)
	}

	// The unit starts the binary that install.sh put in place.
	u := parseUnit(t, filepath.Join(f.root, "etc/systemd/system/remotegpu-"+daemon+".service"))
	binary := strings.Fields(u.value("Service", "ExecStart"))[0]
	assert.FileExists(t, filepath.Join(f.root, binary))
}

func assertNotInstalled(t *testing.T, f installFixture, daemon string, keepConfig bool) {
	t.Helper()
	for _, file := range installedFiles(daemon) {
		path := filepath.Join(f.root, file.path)
		if keepConfig && strings.HasPrefix(file.path, "etc/remotegpu/") {
			assert.FileExists(t, path, "uninstall without --purge removed config")
			continue
		}
		assert.NoFileExists(t, path)
	}
}

// actionLines returns the lines of install.sh output that report verb.
func actionLines(stdout, verb string) []string {
	var lines []string
	for _, line := range strings.Split(stdout, "\n") {
		if first, _, _ := strings.Cut(line, " "); first == verb {
			lines = append(lines, line)
		}
	}
	return lines
}

func TestInstallTwiceChangesNothing(t *testing.T) {
	t.Parallel()
	f := newInstallFixture(t)

	first := f.run(t)
	require.Equal(t, 0, first.ExitCode, first.Output())
	assert.Contains(t, first.Stdout, "skipped    creating system user remotegpu (--root given)")
	assert.Contains(t, first.Stdout, "6 change(s) made")
	assert.Len(t, actionLines(first.Stdout, "installed"), 6)
	assert.Contains(t, first.Stdout, "systemctl daemon-reload")
	assert.Contains(t, first.Stdout,
		"systemctl enable --now remotegpu-agent.service remotegpu-coordinator.service")
	assertInstalled(t, f, "agent")
	assertInstalled(t, f, "coordinator")
	before := snapshot(t, f.root)

	second := f.run(t)
	require.Equal(t, 0, second.ExitCode, second.Output())
	assert.Contains(t, second.Stdout, "nothing changed: remotegpu is already installed")
	assert.Empty(t, actionLines(second.Stdout, "installed"))
	assert.Empty(t, actionLines(second.Stdout, "updated"))
	assert.Len(t, actionLines(second.Stdout, "unchanged"), 4)
	assert.Len(t, actionLines(second.Stdout, "kept"), 2)
	assert.Equal(t, before, snapshot(t, f.root), "second install touched the tree")
}

func TestUninstallRemovesWhatInstallAdded(t *testing.T) {
	t.Parallel()
	f := newInstallFixture(t)
	res := f.run(t)
	require.Equal(t, 0, res.ExitCode, res.Output())
	// What "systemctl enable" adds, so uninstall must remove it too.
	wants := filepath.Join(f.root, "etc/systemd/system/multi-user.target.wants")
	require.NoError(t, os.MkdirAll(wants, 0o755))
	link := filepath.Join(wants, "remotegpu-agent.service")
	require.NoError(t, os.Symlink("/etc/systemd/system/remotegpu-agent.service", link))

	res = f.run(t, "--uninstall")
	require.Equal(t, 0, res.ExitCode, res.Output())
	assertNotInstalled(t, f, "agent", true)
	assertNotInstalled(t, f, "coordinator", true)
	assert.NoFileExists(t, link)
	assert.Contains(t, res.Stdout, "--uninstall --purge removes them")

	res = f.run(t, "--uninstall")
	require.Equal(t, 0, res.ExitCode, res.Output())
	assert.Contains(t, res.Stdout, "nothing changed: remotegpu was not installed")

	res = f.run(t, "--uninstall", "--purge")
	require.Equal(t, 0, res.ExitCode, res.Output())
	assertNotInstalled(t, f, "agent", false)
	assertNotInstalled(t, f, "coordinator", false)
	assert.NoDirExists(t, filepath.Join(f.root, "etc/remotegpu"))
}

func TestInstallKeepsEditedConfig(t *testing.T) {
	t.Parallel()
	f := newInstallFixture(t)
	res := f.run(t)
	require.Equal(t, 0, res.ExitCode, res.Output())

	env := filepath.Join(f.root, "etc/remotegpu/agent.env")
	edited := "REMOTEGPU_ETCD_ENDPOINTS=https://10.0.0.11:2379\n"
	require.NoError(t, os.WriteFile(env, []byte(edited), 0o640))
	newBinary := "#!/bin/sh\necho stub remotegpu-agent v2\n"
	writeFile(t, f.binSrc, "remotegpu-agent", newBinary, 0o755)
	// An operator narrowed the config folder; reinstalling keeps that.
	confDir := filepath.Join(f.root, "etc/remotegpu")
	require.NoError(t, os.Chmod(confDir, 0o750))

	res = f.run(t)
	require.Equal(t, 0, res.ExitCode, res.Output())
	assert.Contains(t, res.Stdout, "updated    "+filepath.Join(f.root, "usr/local/bin/remotegpu-agent"))
	assert.Contains(t, res.Stdout, "kept       "+env)
	assert.Contains(t, res.Stdout, "1 change(s) made")
	assert.Equal(t, edited, readString(t, env))
	info, err := os.Stat(confDir)
	require.NoError(t, err)
	assert.Equal(t, fs.FileMode(0o750), info.Mode().Perm())
	assert.Equal(t, newBinary, readString(t, filepath.Join(f.root, "usr/local/bin/remotegpu-agent")))
}

func TestInstallOneDaemon(t *testing.T) {
	t.Parallel()
	f := newInstallFixture(t)
	res := f.run(t, "--agent-only")
	require.Equal(t, 0, res.ExitCode, res.Output())
	assertInstalled(t, f, "agent")
	assertNotInstalled(t, f, "coordinator", false)

	// Uninstalling the other daemon leaves the agent alone.
	res = f.run(t, "--uninstall", "--purge", "--coordinator-only")
	require.Equal(t, 0, res.ExitCode, res.Output())
	assertInstalled(t, f, "agent")

	res = f.run(t, "--coordinator-only")
	require.Equal(t, 0, res.ExitCode, res.Output())
	assertInstalled(t, f, "coordinator")

	res = f.run(t, "--uninstall", "--agent-only")
	require.Equal(t, 0, res.ExitCode, res.Output())
	assertNotInstalled(t, f, "agent", true)
	assertInstalled(t, f, "coordinator")
}

func TestPurgeKeepsForeignFiles(t *testing.T) {
	t.Parallel()
	f := newInstallFixture(t)
	res := f.run(t)
	require.Equal(t, 0, res.ExitCode, res.Output())
	secret := writeFile(t, filepath.Join(f.root, "etc/remotegpu"), "agent.etcd-password", "pw\n", 0o600)
	data := filepath.Join(f.root, "var/lib/remotegpu")
	writeFile(t, data, "member/snap/db", "etcd data", 0o600)

	res = f.run(t, "--uninstall", "--purge")
	require.Equal(t, 0, res.ExitCode, res.Output())
	assert.FileExists(t, secret, "purge removed a file it did not install")
	assert.Contains(t, res.Stdout, "it contains files this script did not install")
	assert.NoFileExists(t, filepath.Join(f.root, "etc/remotegpu/agent.env"))
	assert.NoDirExists(t, data, "purge kept the embedded etcd data")
}

func TestInstallMissingBinaryWritesNothing(t *testing.T) {
	t.Parallel()
	f := newInstallFixture(t)
	require.NoError(t, os.Remove(filepath.Join(f.binSrc, "remotegpu-coordinator")))

	res := f.run(t)
	assert.Equal(t, 1, res.ExitCode, res.Output())
	assert.Contains(t, res.Stderr, "remotegpu-coordinator")
	assert.Contains(t, res.Stderr, "make build")
	entries, err := os.ReadDir(f.root)
	require.NoError(t, err)
	assert.Empty(t, entries, "a failed install left files behind")
}

func TestInstallRejectsBadOptions(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		args    []string
		message string
	}{
		{name: "unknown option", args: []string{"--frobnicate"}, message: "unknown option '--frobnicate'"},
		{name: "both only flags", args: []string{"--agent-only", "--coordinator-only"},
			message: "exclude each other"},
		{name: "purge without uninstall", args: []string{"--purge"}, message: "--purge works only with --uninstall"},
		{name: "root without folder", args: []string{"--root"}, message: "--root needs a directory"},
		{name: "root with equals sign", args: []string{"--root=/tmp/x"}, message: "with a space"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			res := runScript(t, installScript, nil, tc.args...)
			assert.Equal(t, 2, res.ExitCode, res.Output())
			assert.Contains(t, res.Stderr, tc.message)
			assert.Contains(t, res.Stderr, "Usage: scripts/install.sh")
			assert.Empty(t, res.Stdout)
		})
	}
}

func TestInstallRootMustExist(t *testing.T) {
	t.Parallel()
	missing := filepath.Join(t.TempDir(), "absent")
	res := runScript(t, installScript, nil, "--root", missing)
	assert.Equal(t, 1, res.ExitCode, res.Output())
	assert.Contains(t, res.Stderr, missing)
	assert.NoDirExists(t, missing)
}
