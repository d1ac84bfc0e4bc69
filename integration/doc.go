// Package integration holds remotegpu's reliability scenarios. Each test
// builds the real agent and coordinator binaries and runs them as
// processes against a real three-member etcd cluster. It injects faults
// (killed or paused processes, lost etcd members, cut connections) and
// then checks the invariants stored in etcd. The machinery lives in the
// harness subpackage.
//
// Each scenario starts its own cluster, agents with the mock-dgxa100 GPU
// backend and a 2 s lease TTL, and coordinators with --etcd-endpoints,
// and talks to the coordinators through pkg/client or raw HTTP. The
// faults: an agent killed, paused past its TTL or cut off from etcd by
// proxies; the etcd leader killed under allocation load from two
// coordinators; the whole cluster stopped for 30 s; a coordinator killed
// under load or restarted. Each scenario ends with the invariants checked
// against every allocation a coordinator acknowledged. The bad-input
// tests write garbage under the prefix, send malformed requests to a
// running coordinator and start agents with invalid settings, and check
// that nothing in etcd changes.
//
// The scenarios start processes and take seconds each, so they are skipped
// under go test -short. Run them with:
//
//	go test -race -count=1 -v ./integration/... | grep FIGURES
//
// to see the figures each scenario measured.
package integration
