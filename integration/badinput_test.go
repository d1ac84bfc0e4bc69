package integration

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/YoungBoyGod/remotegpu/integration/harness"
	"github.com/YoungBoyGod/remotegpu/pkg/api"
	"github.com/YoungBoyGod/remotegpu/pkg/keyspace"
)

// storedKey is one etcd key's value and revisions.
type storedKey struct {
	Value       string
	ModRevision int64
	Lease       int64
}

// storedKeys reads every key under the prefix except the agents' status
// keys, which the agents rewrite on their own.
func (e *env) storedKeys() map[string]storedKey {
	e.t.Helper()
	resp, err := e.cluster.Client().Get(harness.Ctx(e.t, 5*time.Second),
		e.ks.Root(), clientv3.WithPrefix())
	require.NoError(e.t, err)
	keys := make(map[string]storedKey, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		key := string(kv.Key)
		if pk, err := e.ks.ParseKey(key); err == nil &&
			pk.Kind == keyspace.KindHostStatus {
			continue
		}
		keys[key] = storedKey{Value: string(kv.Value),
			ModRevision: kv.ModRevision, Lease: kv.Lease}
	}
	return keys
}

// garbage returns documents that no remotegpu process writes, keyed by
// their path below the prefix.
func garbage(t *testing.T) map[string]string {
	t.Helper()
	negative, err := json.Marshal(keyspace.HostInfo{
		ID: "bad-negative", Name: "bad-negative", TotalCPU: -4,
		TotalMemory: -1, GPUs: []keyspace.GPUInfo{},
	})
	require.NoError(t, err)
	orphan, err := json.Marshal(keyspace.HostStatus{
		InstanceID: "orphan-1", HeartbeatAt: time.Now().UTC(),
	})
	require.NoError(t, err)
	return map[string]string{
		"/hosts/bad-json/info":        `{"id": "bad-json", `,
		"/hosts/bad-types/info":       `{"id": "bad-types", "total_cpu": "eight", "gpus": 8}`,
		"/hosts/bad-negative/info":    string(negative),
		"/hosts/orphan/status":        string(orphan),
		"/hosts/deep/info/extra":      `{}`,
		"/hosts/bad-ledger/info/":     `{}`,
		"/allocations/nested/record":  `{"id": "nested"}`,
		"/allocations/bad-record":     `{"id": 7, "state": "maybe"}`,
		"/idempotency/bad-key":        "not a valid/allocation id",
		"/unknown-top-level/whatever": `{}`,
	}
}

func TestEtcdGarbageIsSkipped(t *testing.T) {
	e := newEnv(t)
	e.startHosts("host-a")
	before := e.startCoordinator("before", "")
	before.awaitHealth(t, "host-a", api.HealthHealthy, startTimeout)

	// Garbage arrives through the watch of one coordinator and the
	// initial list of another.
	docs := garbage(t)
	cli := e.cluster.Client()
	for path, value := range docs {
		_, err := cli.Put(harness.Ctx(t, 5*time.Second),
			e.ks.Prefix()+path, value)
		require.NoError(t, err)
	}
	stored := e.storedKeys()
	after := e.startCoordinator("after", "")

	for _, c := range []*coordinator{before, after} {
		harness.WaitHTTPOK(t, c.url+"/readyz", 5*time.Second)
		c.awaitHealth(t, "host-a", api.HealthHealthy, 5*time.Second)
		for path := range docs {
			c.proc.WaitLog("key="+e.ks.Prefix()+path, 5*time.Second)
		}
		hosts, err := c.api.ListHosts(ctxFor(t))
		require.NoError(t, err)
		for _, h := range hosts {
			if h.ID != "host-a" {
				require.NotEqual(t, api.HealthHealthy, h.Health,
					"host %s made of garbage", h.ID)
			}
		}
		for _, id := range []string{"bad-json", "bad-types",
			"bad-negative", "orphan", "deep", "bad-ledger"} {
			requireAPIStatusBelow500(t, c.url+"/v1/hosts/"+id)
		}
		requireAPIStatusBelow500(t, c.url+"/v1/allocations/bad-record")
	}

	// The coordinators leave the garbage alone and keep allocating.
	require.Equal(t, stored, e.storedKeys(), "etcd changed")
	acks := harness.NewAckSet()
	for i, c := range []*coordinator{before, after} {
		a := mustAllocate(t, c, gpuRequest(1, "host-a"),
			fmt.Sprintf("garbage-%d", i))
		acks.Ack(a.ID)
	}

	// Without the garbage the stored state is consistent.
	for path := range docs {
		_, err := cli.Delete(harness.Ctx(t, 5*time.Second),
			e.ks.Prefix()+path)
		require.NoError(t, err)
	}
	harness.RequireInvariants(t, cli, e.ks, acks)
	e.requireViewMatchesEtcd(after, 10*time.Second)
}

// requireAPIStatusBelow500 fails the test when GET url returns a 5xx
// status.
func requireAPIStatusBelow500(t *testing.T, url string) {
	t.Helper()
	resp := do(t, http.MethodGet, url, "", nil)
	require.Less(t, resp.status, 500, "GET %s: %s", url, resp.body)
}

// response is what a raw request got back.
type response struct {
	status      int
	contentType string
	body        []byte
}

// rawClient sends requests without keep-alive, so no connection
// goroutine outlives a test.
var rawClient = &http.Client{
	Timeout: 10 * time.Second,
	Transport: &http.Transport{
		DisableKeepAlives:     true,
		ExpectContinueTimeout: 5 * time.Second,
	},
}

func do(t *testing.T, method, url, contentType string,
	body []byte) response {
	t.Helper()
	req, err := http.NewRequestWithContext(harness.Ctx(t, 10*time.Second),
		method, url, bytes.NewReader(body))
	require.NoError(t, err)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if len(body) > api.MaxBodyBytes {
		// The server rejects such a body by its Content-Length without
		// reading it, so a client that sends it at once may see its
		// write reset before it reads the 413, as with any HTTP server.
		// Waiting for 100 Continue is how a client sends a large body.
		req.Header.Set("Expect", "100-continue")
	}
	resp, err := rawClient.Do(req)
	require.NoError(t, err, "%s %s", method, url)
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return response{status: resp.StatusCode,
		contentType: resp.Header.Get("Content-Type"), body: data}
}

// badRequest is one request the API must reject.
type badRequest struct {
	name        string
	method      string
	path        string
	contentType string // "application/json" when empty and body is set
	body        string
	status      int
	// message, when set, must appear in the error message.
	message string
}

func badRequests(hostID string) []badRequest {
	const post, get, del = http.MethodPost, http.MethodGet, http.MethodDelete
	// One byte over the limit: the server reads the whole body before it
	// responds and closes the connection, so the client reads the response
	// instead of failing with a broken pipe.
	const open, end = `{"owner": "`, `"}`
	huge := open + strings.Repeat("x", api.MaxBodyBytes+1-len(open)-len(end)) +
		end
	return []badRequest{
		{"negative cpu", post, "/v1/allocations", "", `{"cpu": -1}`, 400, `"cpu"`},
		{"negative memory", post, "/v1/allocations", "", `{"memory": -5, "gpu": 1}`, 400, `"memory"`},
		{"negative gpu", post, "/v1/allocations", "", `{"gpu": -1}`, 400, `"gpu"`},
		{"zero everything", post, "/v1/allocations", "", `{"cpu": 0, "memory": 0, "gpu": 0}`, 400, "at least one"},
		{"empty object", post, "/v1/allocations", "", `{}`, 400, "at least one"},
		{"missing fields", post, "/v1/allocations", "", `{"owner": "me"}`, 400, "at least one"},
		{"overflowing memory", post, "/v1/allocations", "", `{"memory": 9223372036854775808}`, 400, `"memory"`},
		{"overflowing cpu", post, "/v1/allocations", "", `{"cpu": 9223372036854775808}`, 400, `"cpu"`},
		{"largest cpu", post, "/v1/allocations", "", `{"cpu": 9223372036854775807}`, 409, ""},
		{"non-numeric gpu", post, "/v1/allocations", "", `{"gpu": "one"}`, 400, `"gpu"`},
		{"fractional cpu", post, "/v1/allocations", "", `{"cpu": 1.5}`, 400, `"cpu"`},
		{"unknown strategy", post, "/v1/allocations", "", `{"gpu": 1, "strategy": "fastest"}`, 400, "fastest"},
		{"unknown field", post, "/v1/allocations", "", `{"gpu": 1, "gpus": 2}`, 400, "gpus"},
		{"negative ttl", post, "/v1/allocations", "", `{"gpu": 1, "ttl_seconds": -1}`, 400, "ttl_seconds"},
		{"malformed json", post, "/v1/allocations", "", `{"gpu": 1`, 400, ""},
		{"not json", post, "/v1/allocations", "", `gpu=1`, 400, ""},
		{"array body", post, "/v1/allocations", "", `[{"gpu": 1}]`, 400, "array"},
		{"empty body", post, "/v1/allocations", "application/json", ``, 400, "empty"},
		{"two objects", post, "/v1/allocations", "", `{"gpu": 1} {"gpu": 1}`, 400, ""},
		{"body over 1 MiB", post, "/v1/allocations", "", huge, 413, ""},
		{"text content type", post, "/v1/allocations", "text/plain", `{"gpu": 1}`, 415, "application/json"},
		{"form content type", post, "/v1/allocations", "application/x-www-form-urlencoded", `gpu=1`, 415, ""},
		{"latin-1 charset", post, "/v1/allocations", "application/json; charset=latin1", `{"gpu": 1}`, 415, ""},
		{"select negative", post, "/v1/select", "", `{"gpu": -1}`, 400, `"gpu"`},
		{"select unknown strategy", post, "/v1/select", "", `{"gpu": 1, "strategy": "x"}`, 400, ""},
		{"unknown host", get, "/v1/hosts/no-such-host", "", "", 404, "no-such-host"},
		{"unknown host health", get, "/v1/hosts/no-such-host/health", "", "", 404, ""},
		{"drain unknown host", post, "/v1/hosts/no-such-host/drain", "", "", 404, ""},
		{"undrain unknown host", post, "/v1/hosts/no-such-host/undrain", "", "", 404, ""},
		{"remove unknown host", del, "/v1/hosts/no-such-host", "", "", 404, ""},
		{"remove live host", del, "/v1/hosts/" + hostID, "", "", 409, ""},
		{"drain with body", post, "/v1/hosts/" + hostID + "/drain", "", `{"force": true}`, 400, "force"},
		{"unknown allocation", get, "/v1/allocations/no-such-alloc", "", "", 404, "no-such-alloc"},
		{"release unknown allocation", del, "/v1/allocations/no-such-alloc", "", "", 404, ""},
		{"renew unknown allocation", post, "/v1/allocations/no-such-alloc/renew", "", "", 404, ""},
		{"invalid host id", get, "/v1/hosts/.hidden", "", "", 400, ""},
		{"unknown filter", get, "/v1/allocations?colour=red", "", "", 400, "colour"},
		{"unknown state filter", get, "/v1/allocations?state=sleeping", "", "", 400, "sleeping"},
		{"put allocations", http.MethodPut, "/v1/allocations", "", `{"gpu": 1}`, 405, ""},
		{"patch hosts", http.MethodPatch, "/v1/hosts", "", `{}`, 405, ""},
		{"delete host list", del, "/v1/hosts", "", "", 405, ""},
		{"get select", get, "/v1/select", "", "", 405, ""},
		{"post readyz", post, "/readyz", "", "", 405, ""},
		{"unknown path", get, "/v1/nothing-here", "", "", 404, ""},
	}
}

func TestAPIRejectsBadRequests(t *testing.T) {
	e := newEnv(t)
	e.startHosts("host-a")
	c := e.startCoordinator("a", "")
	c.awaitHealth(t, "host-a", api.HealthHealthy, startTimeout)
	acks := harness.NewAckSet()
	acks.Ack(mustAllocate(t, c, gpuRequest(1, "host-a"), "api-held").ID)
	stored := e.storedKeys()

	for _, tc := range badRequests("host-a") {
		t.Run(tc.name, func(t *testing.T) {
			ct := tc.contentType
			if ct == "" && tc.body != "" {
				ct = "application/json"
			}
			resp := do(t, tc.method, c.url+tc.path, ct, []byte(tc.body))
			body := string(resp.body)
			if len(body) > 300 {
				body = body[:300] + "..."
			}
			assert.Equal(t, tc.status, resp.status, "body: %s", body)
			assert.Equal(t, "application/json", resp.contentType)
			var apiErr api.Error
			require.NoError(t, json.Unmarshal(resp.body, &apiErr),
				"error body must be JSON: %s", body)
			assert.NotEmpty(t, apiErr.Error)
			assert.NotEmpty(t, apiErr.Code)
			assert.Contains(t, apiErr.Error, tc.message)
			t.Logf("%d %s: %s", resp.status, apiErr.Code, apiErr.Error)
		})
	}

	// Nothing was written, and the coordinator still serves.
	after := e.storedKeys()
	require.Equal(t, stored, after, "etcd changed; new or changed keys: %v",
		changedKeys(stored, after))
	harness.WaitHTTPOK(t, c.url+"/readyz", 5*time.Second)
	acks.Ack(mustAllocate(t, c, gpuRequest(1, "host-a"), "api-after").ID)
	harness.RequireInvariants(t, e.cluster.Client(), e.ks, acks)
}

// changedKeys lists the keys whose stored value differs between a and b.
func changedKeys(a, b map[string]storedKey) []string {
	var keys []string
	for k, v := range b {
		if old, ok := a[k]; !ok || old != v {
			keys = append(keys, k)
		}
	}
	for k := range a {
		if _, ok := b[k]; !ok {
			keys = append(keys, k+" (deleted)")
		}
	}
	slices.Sort(keys)
	return keys
}

// agentCommand returns a valid agent command line against an etcd
// endpoint where nothing listens, with extra flags appended.
func agentCommand(t *testing.T, extra ...string) []string {
	endpoint := fmt.Sprintf("http://127.0.0.1:%d", harness.FreePort(t))
	args := []string{
		"run", "--host-id=bad-setup", "--gpu-backend=mock-dgxa100",
		"--etcd-endpoints=" + endpoint, "--etcd-dial-timeout=1s",
		"--advertise-addr=127.0.0.1",
	}
	return append(args, extra...)
}

func TestAgentRejectsBadSetup(t *testing.T) {
	harness.SkipShort(t)
	bin := harness.Binary(t, harness.AgentPackage)
	dir := t.TempDir()
	notPEM := dir + "/not-pem.crt"
	require.NoError(t, os.WriteFile(notPEM, []byte("not a certificate\n"),
		0o600))

	tests := []struct {
		name    string
		args    []string
		message string
	}{
		{"invalid template", []string{"--advertise-addr={{ bogus }}"},
			`invalid --advertise-addr template "{{ bogus }}"`},
		{"template without address", []string{`--advertise-addr=` +
			`{{ GetAllInterfaces | include "name" "no-such-if0" | attr "address" }}`},
			"yields no address"},
		{"ttl below etcd minimum", []string{"--ttl=1s", "--interval=500ms"},
			"invalid --ttl 1s"},
		{"missing CA file", []string{"--etcd-cacert=" + dir + "/absent.crt"},
			"absent.crt: no such file"},
		{"CA file without PEM", []string{"--etcd-cacert=" + notPEM},
			"contains no PEM certificate"},
		{"certificate without PEM", []string{"--etcd-cert=" + notPEM,
			"--etcd-key=" + notPEM}, "failed to find any PEM data"},
		{"certificate without key", []string{"--etcd-cert=" + notPEM},
			"--etcd-cert and --etcd-key must be given together"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := harness.StartProcess(t, harness.ProcessConfig{
				Name: "agent", Path: bin, Args: agentCommand(t, tc.args...),
			})
			st, err := p.Wait(20 * time.Second)
			require.NoError(t, err, "agent must exit; log:\n%s", p.Logs())
			assert.Equal(t, 2, st.Code, "exit status; log:\n%s", p.Logs())
			assert.Contains(t, p.Logs(), tc.message)
		})
	}

	t.Run("unreachable etcd", func(t *testing.T) {
		t.Parallel()
		p := harness.StartProcess(t, harness.ProcessConfig{
			Name: "agent", Path: bin, Args: agentCommand(t),
		})
		// The agent retries with backoff and names the failure each time.
		p.WaitLog("attempt=3", 30*time.Second)
		require.True(t, p.Running(), "agent must keep retrying")
		assert.Contains(t, p.Logs(), `msg="not registered; retrying"`)
		assert.Contains(t, p.Logs(), "context deadline exceeded")

		st := p.Terminate(10 * time.Second)
		assert.Equal(t, 0, st.Code, "exit status after SIGTERM; log:\n%s",
			p.Logs())
		assert.Contains(t, p.Logs(), "stopped before registering")
	})
}
