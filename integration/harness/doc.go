// Package harness runs remotegpu's reliability scenarios against real
// processes: a three-member etcd cluster built from etcd's own server code,
// the remotegpu binaries built from this module, a TCP proxy that cuts one
// process off from etcd, and a checker that reads etcd directly and reports
// every broken invariant.
//
// Guarantees:
//   - Every process, listener and client the harness starts for a test is
//     stopped in that test's cleanup, also when the test fails. A failed
//     test prints the tail of each process log.
//   - Everything binds 127.0.0.1 on ports picked free just before use.
//     Another program may take such a port in the moment between the pick
//     and the bind. The start then fails, and the process log names the
//     port.
//   - Binaries are built once per test binary run with go build, into a
//     temporary folder that Main removes. A test binary that panics leaves
//     the folder behind.
//
// The checker reads the whole keyspace in one linearizable Get, so it reads
// a single revision. It checks what is stored, not what clients received,
// except for the acknowledged allocations a test passes in.
//
// Methods that take no testing.TB fail the test given at construction and
// must be called from that test's goroutine.
package harness
