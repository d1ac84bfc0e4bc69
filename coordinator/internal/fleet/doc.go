// Package fleet is the coordinator's view of the fleet and its allocator.
// It implements service.Fleet on top of etcd.
//
// # View
//
// Run lists everything under the keyspace prefix with a linearizable read,
// then watches from the list's revision + 1 (WithRequireLeader,
// WithPrevKV). When the watch fails, is cancelled or hits a compacted
// revision, Run lists again and resumes, so no change is missed. Events
// are applied per key by revision: a put or delete at a revision the view
// already holds for that key changes nothing, so a replayed response never
// counts an allocation twice.
//
// The view keeps, per host, the agent's info and status documents and the
// coordinators' ledger, and mirrors each host into a pkg/host.HostManager
// (Manager) with used CPU, memory and GPUs taken from the ledger and a
// status of "active" or "draining".
//
// # Health
//
// Liveness comes from the status key, which the agent keeps attached to
// its lease, and from this coordinator's clock. Timestamps written by
// agents are shown, never trusted:
//
//   - status key present: healthy (the message lists unhealthy GPUs);
//   - status key gone and info.stopped_at set: stopped;
//   - status key gone, seen by this coordinator before: unhealthy,
//     "heartbeat lease expired";
//   - status key never seen since this coordinator started: unknown.
//
// A host is never removed because it stopped; an operator removes it with
// RemoveHost. Health does not depend on how full a host is. LastHeartbeat
// is the time on this coordinator's clock when it last saw a status write.
//
// # Allocation
//
// Allocate filters hosts (healthy, not draining, labels, enough eligible
// GPUs), ranks them with the pkg/host ranker of the request's strategy and
// picks the lowest-index eligible GPUs on the best host. It then re-reads
// that host's info, status and ledger with a linearizable read and checks
// the request against them. The commit is one transaction that compares
// the ledger's and info's ModRevision and requires the status key to
// exist. For a request with an idempotency key, it also requires that key
// to be absent.
// A lost compare is retried on the next best host, at most MaxAttempts
// times. The guarantee, with any number of coordinators on one etcd: on
// every host the ledger's CPU, memory and GPUs stay within the registered
// totals at the time of each commit, and no GPU is in two allocations.
//
// A GPU is handed out only when the host's live status lists it healthy
// and, when no allocation holds it, its measured memory use is at most
// BusyGPUMemoryBytes.
//
// # Release and retention
//
// Release removes the ledger entry and marks the record released in one
// transaction. Released records, and their idempotency keys, which keep
// pointing to them, are attached to a lease shared by this coordinator, so
// they disappear between ReleasedRetention and 1.5 × ReleasedRetention
// after the release. Until then a second release of the same allocation
// reports AlreadyReleased, and a request with the same idempotency key
// returns the released allocation.
//
// # Not guaranteed
//
//   - A registration that shrinks (an agent restarting with fewer CPUs or
//     GPUs) does not evict allocations; the ledger may then exceed the new
//     totals until they are released, and requests for the over-committed
//     resource skip the host until then.
//   - Allocation TTLs are stored and renewed, but nothing expires an
//     allocation yet.
//   - Select is a dry run on the view and may differ from a later
//     Allocate.
package fleet
