// Package integration holds remotegpu's reliability scenarios. Each test
// builds the real agent and coordinator binaries and runs them as
// processes against a real three-member etcd cluster. It injects faults
// (killed or paused processes, lost etcd members, cut connections) and
// then checks the invariants stored in etcd. The machinery lives in the
// harness subpackage.
//
// The scenarios start processes and take seconds each, so they are skipped
// under go test -short. Run them with:
//
//	go test -race -count=1 -v ./integration/... | grep FIGURES
//
// to see the figures each scenario measured.
package integration
