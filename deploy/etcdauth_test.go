package deploy

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/YoungBoyGod/remotegpu/pkg/etcdconn"
	"github.com/YoungBoyGod/remotegpu/pkg/etcdembed"
	"github.com/YoungBoyGod/remotegpu/pkg/etcdembed/etcdtest"
)

const authScript = "scripts/etcd-auth.sh"

// etcdctlPath builds etcdctl from the version pinned in go.mod, so each
// script run starts a binary instead of "go tool".
func etcdctlPath(t *testing.T) string {
	t.Helper()
	return buildBinary(t, "go.etcd.io/etcd/etcdctl/v3")
}

// authFixture is a real etcd member, password files and the etcdctl that
// the script runs.
type authFixture struct {
	cluster   *etcdtest.Cluster
	dir       string
	env       []string
	rootFile  string
	coordFile string
	// passwords lists every password written, to prove none is printed.
	passwords []string
}

func newAuthFixture(t *testing.T) *authFixture {
	t.Helper()
	// Every password login runs a bcrypt comparison on the server. At
	// etcd's default cost (10) under the race detector a login took about
	// 0.6 s on a 2-core machine, so use bcrypt's minimum cost, 4.
	cluster := etcdtest.StartWith(t, func(cfg *etcdembed.Config) { cfg.BcryptCost = 4 })
	f := &authFixture{
		cluster: cluster,
		dir:     t.TempDir(),
		env:     []string{"ETCDCTL=" + etcdctlPath(t)},
	}
	f.rootFile = f.passwordFile(t, "root", "Root-pw-7f3a")
	f.coordFile = f.passwordFile(t, "coordinator", "Coord-pw-91bc")
	return f
}

func (f *authFixture) passwordFile(t *testing.T, name, password string) string {
	t.Helper()
	f.passwords = append(f.passwords, password)
	return writeFile(t, f.dir, name+".password", password+"\n", 0o600)
}

// run runs etcd-auth.sh against the fixture's member as root and checks
// that no password appears in its output.
func (f *authFixture) run(t *testing.T, args ...string) scriptResult {
	t.Helper()
	args = append(args, "--endpoints", f.cluster.Endpoint,
		"--root-password-file", f.rootFile)
	res := runScript(t, authScript, f.env, args...)
	for _, pw := range f.passwords {
		assert.NotContains(t, res.Stdout+res.Stderr, pw, "a password was printed")
	}
	return res
}

func (f *authFixture) mustRun(t *testing.T, args ...string) scriptResult {
	t.Helper()
	res := f.run(t, args...)
	require.Equal(t, 0, res.ExitCode, res.Output())
	return res
}

func (f *authFixture) init(t *testing.T) {
	t.Helper()
	f.mustRun(t, "init", "--coordinator-password-file", f.coordFile)
}

// client connects as user with the password in passwordFile, the way the
// daemons do.
func (f *authFixture) client(t *testing.T, user, passwordFile string) (*clientv3.Client, error) {
	t.Helper()
	cfg := etcdconn.Config{
		Endpoints:    []string{f.cluster.Endpoint},
		User:         user,
		PasswordFile: passwordFile,
		DialTimeout:  5 * time.Second,
	}
	cli, err := cfg.New()
	if err == nil {
		t.Cleanup(func() { _ = cli.Close() })
	}
	return cli, err
}

func (f *authFixture) mustClient(t *testing.T, user, passwordFile string) *clientv3.Client {
	t.Helper()
	cli, err := f.client(t, user, passwordFile)
	require.NoError(t, err, "log in as %s", user)
	return cli
}

func assertDenied(t *testing.T, err error, operation string) {
	t.Helper()
	assert.ErrorIs(t, err, rpctypes.ErrPermissionDenied, operation)
}

func TestEtcdAuthAgentWritesOnlyItsOwnKeys(t *testing.T) {
	t.Parallel()
	f := newAuthFixture(t)
	f.init(t)
	h1File := f.passwordFile(t, "h1", "Agent-h1-pw")
	f.mustRun(t, "add-host", "h1", "--password-file", h1File)
	f.mustRun(t, "add-host", "h2", "--password-file", f.passwordFile(t, "h2", "Agent-h2-pw"))

	agent := f.mustClient(t, "remotegpu-agent-h1", h1File)
	coord := f.mustClient(t, "remotegpu-coordinator", f.coordFile)
	ctx := etcdtest.Ctx(t, 30*time.Second)

	t.Run("agent registers and heartbeats", func(t *testing.T) {
		assertAgentHeartbeat(ctx, t, agent)
	})
	t.Run("agent cannot touch other keys", func(t *testing.T) {
		assertAgentConfined(ctx, t, agent)
	})
	t.Run("rejected txn writes nothing", func(t *testing.T) {
		_, err := agent.Put(ctx, "/remotegpu/hosts/h1/info", `{"v":1}`)
		require.NoError(t, err)
		_, err = agent.Txn(ctx).Then(
			clientv3.OpPut("/remotegpu/hosts/h1/info", `{"v":2}`),
			clientv3.OpPut("/remotegpu/hosts/h1/allocations", "{}"),
		).Commit()
		assertDenied(t, err, "txn with a ledger write")

		resp, err := coord.Get(ctx, "/remotegpu/hosts/h1/info")
		require.NoError(t, err)
		require.Len(t, resp.Kvs, 1)
		assert.Equal(t, `{"v":1}`, string(resp.Kvs[0].Value))
	})
	t.Run("coordinator reads and writes the prefix", func(t *testing.T) {
		assertCoordinatorAccess(ctx, t, coord)
	})
	t.Run("unauthenticated access is rejected", func(t *testing.T) {
		anon := f.cluster.Client
		_, err := anon.Get(ctx, "/remotegpu/hosts/h1/info")
		assert.ErrorIs(t, err, rpctypes.ErrUserEmpty)
		_, err = anon.Put(ctx, "/remotegpu/hosts/h1/status", "{}")
		assert.ErrorIs(t, err, rpctypes.ErrUserEmpty)
	})
	t.Run("wrong password is rejected", func(t *testing.T) {
		wrong := f.passwordFile(t, "wrong", "not-the-password")
		cli, err := f.client(t, "remotegpu-agent-h1", wrong)
		if err == nil {
			_, err = cli.Get(ctx, "/remotegpu/hosts/h1/info")
		}
		assert.ErrorIs(t, err, rpctypes.ErrAuthFailed)
	})
}

// assertAgentHeartbeat runs what the agent does: register, attach status
// to a lease, keep it alive, stop in one txn and revoke the lease.
func assertAgentHeartbeat(ctx context.Context, t *testing.T, agent *clientv3.Client) {
	t.Helper()
	_, err := agent.Put(ctx, "/remotegpu/hosts/h1/info", `{"host_id":"h1"}`)
	require.NoError(t, err, "put own info")
	_, err = agent.Put(ctx, "/remotegpu/hosts/h1/status", `{}`)
	require.NoError(t, err, "put own status")

	lease, err := agent.Grant(ctx, 3)
	require.NoError(t, err, "grant lease")
	_, err = agent.Put(ctx, "/remotegpu/hosts/h1/status", `{"cpu":1}`, clientv3.WithLease(lease.ID))
	require.NoError(t, err, "put status under the lease")
	_, err = agent.KeepAliveOnce(ctx, lease.ID)
	require.NoError(t, err, "keep the lease alive")

	resp, err := agent.Get(ctx, "/remotegpu/hosts/h1/status")
	require.NoError(t, err, "read own status")
	require.Len(t, resp.Kvs, 1)
	assert.Equal(t, int64(lease.ID), resp.Kvs[0].Lease)

	_, err = agent.Txn(ctx).Then(
		clientv3.OpPut("/remotegpu/hosts/h1/info", `{"host_id":"h1","stopped_at":"now"}`),
		clientv3.OpDelete("/remotegpu/hosts/h1/status"),
	).Commit()
	require.NoError(t, err, "stop txn")
	_, err = agent.Revoke(ctx, lease.ID)
	require.NoError(t, err, "revoke lease")
}

func assertAgentConfined(ctx context.Context, t *testing.T, agent *clientv3.Client) {
	t.Helper()
	puts := []string{
		"/remotegpu/hosts/h1/allocations",
		"/remotegpu/allocations/x",
		"/remotegpu/idempotency/k",
		"/remotegpu/hosts/h2/info",
		"/remotegpu/hosts/h2/status",
		"/remotegpu/hosts/h2/allocations",
		"/remotegpu/hosts/h1/other",
		"/remotegpu/hosts/h1",
		"/elsewhere",
	}
	for _, key := range puts {
		_, err := agent.Put(ctx, key, "{}")
		assertDenied(t, err, "put "+key)
	}
	_, err := agent.Delete(ctx, "/remotegpu/hosts/h2/status")
	assertDenied(t, err, "delete another host's status")
	_, err = agent.Get(ctx, "/remotegpu/hosts/h2/info")
	assertDenied(t, err, "read another host's info")
	_, err = agent.Get(ctx, "/remotegpu/hosts/h1/allocations")
	assertDenied(t, err, "read own ledger")
	_, err = agent.Get(ctx, "/remotegpu/hosts/", clientv3.WithPrefix())
	assertDenied(t, err, "list every host")
	_, err = agent.Delete(ctx, "/remotegpu/hosts/h1/", clientv3.WithPrefix())
	assertDenied(t, err, "delete own keys by prefix")
}

func assertCoordinatorAccess(ctx context.Context, t *testing.T, coord *clientv3.Client) {
	t.Helper()
	keys := []string{
		"/remotegpu/hosts/h1/allocations",
		"/remotegpu/hosts/h2/status",
		"/remotegpu/allocations/x",
		"/remotegpu/idempotency/k",
	}
	for _, key := range keys {
		_, err := coord.Put(ctx, key, "{}")
		require.NoError(t, err, "put %s", key)
	}
	resp, err := coord.Get(ctx, "/remotegpu/", clientv3.WithPrefix())
	require.NoError(t, err, "list the prefix")
	got := map[string]bool{}
	for _, kv := range resp.Kvs {
		got[string(kv.Key)] = true
	}
	for _, key := range keys {
		assert.True(t, got[key], "%s missing from the listing", key)
	}

	watch := coord.Watch(clientv3.WithRequireLeader(ctx), "/remotegpu/",
		clientv3.WithPrefix(), clientv3.WithRev(resp.Header.Revision))
	select {
	case wr := <-watch:
		require.NoError(t, wr.Err(), "watch the prefix")
		assert.NotEmpty(t, wr.Events)
	case <-ctx.Done():
		t.Fatal("watch of the prefix delivered nothing")
	}

	_, err = coord.Delete(ctx, "/remotegpu/allocations/x")
	require.NoError(t, err, "delete an allocation")
	_, err = coord.Put(ctx, "/elsewhere", "{}")
	assertDenied(t, err, "coordinator put outside the prefix")
}

func TestEtcdAuthRerunChangesNothing(t *testing.T) {
	t.Parallel()
	f := newAuthFixture(t)
	first := f.mustRun(t, "init", "--coordinator-password-file", f.coordFile)
	for _, line := range []string{
		"created user root",
		"granted role root to user root",
		"created role remotegpu-coordinator",
		"granted readwrite on every key under /remotegpu/ to role remotegpu-coordinator",
		"created user remotegpu-coordinator",
		"enabled authentication",
		"checked: user remotegpu-coordinator can read /remotegpu/",
	} {
		assert.Contains(t, first.Stdout, line+"\n")
	}

	// The second run finds etcdctl through "go tool", as operators do.
	f.env = nil
	second := f.mustRun(t, "init", "--coordinator-password-file", f.coordFile)
	assert.Contains(t, second.Stdout, "nothing changed")

	h1File := f.passwordFile(t, "h1", "Agent-h1-pw")
	f.env = []string{"ETCDCTL=" + etcdctlPath(t)}
	first = f.mustRun(t, "add-host", "h1", "--password-file", h1File)
	assert.Contains(t, first.Stdout, "5 change(s) made")
	second = f.mustRun(t, "add-host", "h1", "--password-file", h1File)
	assert.Contains(t, second.Stdout, "nothing changed")
	assert.Empty(t, second.Stderr)
}

func TestEtcdAuthCustomPrefix(t *testing.T) {
	t.Parallel()
	f := newAuthFixture(t)
	f.mustRun(t, "init", "--prefix", "/fleet-a", "--coordinator-password-file", f.coordFile)
	h1File := f.passwordFile(t, "h1", "Agent-h1-pw")
	f.mustRun(t, "add-host", "h1", "--prefix", "/fleet-a", "--password-file", h1File)

	ctx := etcdtest.Ctx(t, 30*time.Second)
	agent := f.mustClient(t, "remotegpu-agent-h1", h1File)
	_, err := agent.Put(ctx, "/fleet-a/hosts/h1/status", "{}")
	require.NoError(t, err)
	_, err = agent.Put(ctx, "/remotegpu/hosts/h1/status", "{}")
	assertDenied(t, err, "agent put under the default prefix")

	coord := f.mustClient(t, "remotegpu-coordinator", f.coordFile)
	_, err = coord.Put(ctx, "/fleet-a/allocations/x", "{}")
	require.NoError(t, err)
	_, err = coord.Put(ctx, "/remotegpu/allocations/x", "{}")
	assertDenied(t, err, "coordinator put under the default prefix")
	// "/fleet-ab" shares the prefix's bytes but not its folder.
	_, err = coord.Put(ctx, "/fleet-ab/allocations/x", "{}")
	assertDenied(t, err, "coordinator put under a longer prefix")
}

func TestEtcdAuthRotatesAndRemovesHost(t *testing.T) {
	t.Parallel()
	f := newAuthFixture(t)
	f.init(t)
	h1File := f.passwordFile(t, "h1", "Agent-h1-old")
	f.mustRun(t, "add-host", "h1", "--password-file", h1File)
	oldFile := f.passwordFile(t, "h1-old", "Agent-h1-old")

	// A new password in the file is set on the next run.
	f.passwordFile(t, "h1", "Agent-h1-new")
	res := f.mustRun(t, "add-host", "h1", "--password-file", h1File)
	assert.Contains(t, res.Stdout, "set the password of user remotegpu-agent-h1")
	f.mustClient(t, "remotegpu-agent-h1", h1File)
	_, err := f.client(t, "remotegpu-agent-h1", oldFile)
	assert.ErrorIs(t, err, rpctypes.ErrAuthFailed)

	res = f.mustRun(t, "remove-host", "h1")
	assert.Contains(t, res.Stdout, "deleted user remotegpu-agent-h1\n")
	assert.Contains(t, res.Stdout, "deleted role remotegpu-agent-h1\n")
	_, err = f.client(t, "remotegpu-agent-h1", h1File)
	assert.ErrorIs(t, err, rpctypes.ErrAuthFailed)
	res = f.mustRun(t, "remove-host", "h1")
	assert.Contains(t, res.Stdout, "nothing changed")
}

func TestEtcdAuthNeedsRootOnceEnabled(t *testing.T) {
	t.Parallel()
	f := newAuthFixture(t)
	f.init(t)
	h1File := f.passwordFile(t, "h1", "Agent-h1-pw")

	args := []string{"add-host", "h1", "--password-file", h1File, "--endpoints", f.cluster.Endpoint}
	res := runScript(t, authScript, f.env, args...)
	assert.Equal(t, 1, res.ExitCode, res.Output())
	assert.Contains(t, res.Stderr, "--root-password-file")

	wrong := f.passwordFile(t, "wrong-root", "Not-root-pw")
	res = runScript(t, authScript, f.env, append(args, "--root-password-file", wrong)...)
	assert.Equal(t, 1, res.ExitCode, res.Output())
	assert.Contains(t, res.Stderr, "etcd rejected root with the password in")
	assert.Contains(t, res.Stderr, wrong)
}

func TestEtcdAuthRejectsBadInput(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	good := writeFile(t, dir, "good", "Good-pw\n", 0o600)
	empty := writeFile(t, dir, "empty", "\n", 0o600)
	spaced := writeFile(t, dir, "spaced", "two words\n", 0o600)
	missing := filepath.Join(dir, "missing")
	// Nothing listens there: every case must fail before contacting etcd.
	endpoint := []string{"--endpoints", "http://127.0.0.1:1"}

	cases := []struct {
		name    string
		args    []string
		code    int
		message string
	}{
		{"host ID with slash", []string{"add-host", "a/b", "--password-file", good}, 1, `invalid host ID "a/b"`},
		{"host ID with colon", []string{"add-host", "h:1", "--password-file", good}, 1, `invalid host ID "h:1"`},
		{"host ID starting with dot", []string{"add-host", ".h", "--password-file", good}, 1, `invalid host ID ".h"`},
		{"relative prefix", []string{"init", "--prefix", "remotegpu", "--coordinator-password-file", good},
			1, `invalid prefix "remotegpu"`},
		{"prefix with trailing slash", []string{"init", "--prefix", "/remotegpu/",
			"--coordinator-password-file", good}, 1, `invalid prefix "/remotegpu/"`},
		{"empty password", []string{"add-host", "h1", "--password-file", empty}, 1, empty + `" is empty`},
		{"password with space", []string{"add-host", "h1", "--password-file", spaced}, 1, "white space"},
		{"missing password file", []string{"add-host", "h1", "--password-file", missing}, 1, missing},
		{"init without coordinator password", []string{"init"}, 2, "--coordinator-password-file"},
		{"add-host without password", []string{"add-host", "h1"}, 2, "--password-file"},
		{"add-host without ID", []string{"add-host"}, 2, "exactly one host ID"},
		{"unknown command", []string{"destroy"}, 2, "unknown command 'destroy'"},
		{"unknown option", []string{"init", "--force"}, 2, "unknown option '--force'"},
		{"bad timeout", []string{"add-host", "h1", "--password-file", good, "--timeout", "10"},
			1, `invalid --timeout "10"`},
		{"cert without key", []string{"add-host", "h1", "--password-file", good, "--cert", good},
			1, "--cert and --key must be given together"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			start := time.Now()
			res := runScript(t, authScript, nil, append(tc.args, endpoint...)...)
			assert.Equal(t, tc.code, res.ExitCode, res.Output())
			assert.Contains(t, res.Stderr, tc.message)
			assert.NotContains(t, res.Stderr, "Good-pw")
			assert.Less(t, time.Since(start), 3*time.Second, "the script tried to reach etcd")
		})
	}
}

func TestEtcdAuthUnreachableEtcd(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pw := writeFile(t, dir, "pw", "Some-pw\n", 0o600)
	addr := "http://127.0.0.1:" + strconv.Itoa(etcdtest.FreePort(t))
	res := runScript(t, authScript, []string{"ETCDCTL=" + etcdctlPath(t)},
		"add-host", "h1", "--password-file", pw, "--endpoints", addr, "--timeout", "1s")
	assert.Equal(t, 1, res.ExitCode, res.Output())
	assert.Contains(t, res.Stderr, "cannot reach etcd at "+addr)
}

func TestPasswordFileModeWarning(t *testing.T) {
	t.Parallel()
	f := newAuthFixture(t)
	f.init(t)
	loose := f.passwordFile(t, "loose", "Agent-loose-pw")
	require.NoError(t, os.Chmod(loose, 0o644))
	res := f.mustRun(t, "add-host", "h1", "--password-file", loose)
	assert.Contains(t, res.Stderr, "has mode 644")
	assert.Contains(t, res.Stderr, "chmod 0600")
	assert.True(t, strings.HasPrefix(res.Stderr, "etcd-auth.sh: warning:"), res.Stderr)
}

func TestEtcdAuthInitTakesOverExistingRoot(t *testing.T) {
	t.Parallel()
	f := newAuthFixture(t)
	ctx := etcdtest.Ctx(t, 30*time.Second)
	// A root user made by hand, with a password the operator lost and no
	// root role, while authentication is still off.
	_, err := f.cluster.Client.UserAdd(ctx, "root", "Lost-pw-0000")
	require.NoError(t, err)

	res := f.mustRun(t, "init", "--coordinator-password-file", f.coordFile)
	assert.Contains(t, res.Stdout, "set the password of user root from "+f.rootFile+"\n")
	assert.Contains(t, res.Stdout, "granted role root to user root\n")
	assert.Contains(t, res.Stdout, "enabled authentication\n")

	root := f.mustClient(t, "root", f.rootFile)
	status, err := root.AuthStatus(ctx)
	require.NoError(t, err)
	assert.True(t, status.Enabled)
}

func TestEtcdAuthWarnsAboutExtraPermissions(t *testing.T) {
	t.Parallel()
	f := newAuthFixture(t)
	f.init(t)
	h1File := f.passwordFile(t, "h1", "Agent-h1-pw")
	f.mustRun(t, "add-host", "h1", "--password-file", h1File)

	ctx := etcdtest.Ctx(t, 30*time.Second)
	root := f.mustClient(t, "root", f.rootFile)
	_, err := root.RoleGrantPermission(ctx, "remotegpu-agent-h1", "/remotegpu/allocations/",
		clientv3.GetPrefixRangeEnd("/remotegpu/allocations/"), clientv3.PermissionType(clientv3.PermReadWrite))
	require.NoError(t, err)

	res := f.mustRun(t, "add-host", "h1", "--password-file", h1File)
	assert.Contains(t, res.Stdout, "nothing changed")
	assert.Contains(t, res.Stderr, "role remotegpu-agent-h1 has permissions beyond remotegpu's")
	assert.Contains(t, res.Stderr, "[/remotegpu/allocations/, /remotegpu/allocations0)")
}
