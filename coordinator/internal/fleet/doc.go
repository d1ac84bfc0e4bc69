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
// Release removes the ledger entry, deletes the allocation's lease key
// and marks the record released in one transaction. Released and expired
// records, and their idempotency keys, which keep pointing to them, are
// attached to a lease shared by this coordinator, so they disappear
// between ReleasedRetention and 1.5 × ReleasedRetention after the end.
// Until then a second release of the same allocation reports
// AlreadyReleased, and a request with the same idempotency key returns
// the ended allocation.
//
// # Expiry
//
// An allocation with a TTL gets its own etcd lease of TTLSeconds, and the
// commit transaction puts the key <prefix>/leases/<alloc-id> under it.
// Renew keeps the lease alive with one KeepAliveOnce and moves the
// record's expires_at. When the lease expires, etcd deletes the key. An
// active or lost record with a TTL and no lease key is therefore expired:
// whichever coordinator detects that first, from the watch, a list after a
// restart or a periodic sweep, ends it with the same transaction as
// Release, which also requires the lease key to be absent and the record
// unchanged since its read. With several coordinators exactly one
// transaction wins, and each expiry is logged ("allocation expired" with
// alloc_id, owner and host_id) and counted once. A lease key that expired
// while no coordinator ran is found by the first list. etcd raises TTLs
// below its minimum lease TTL, and a leader change extends leases, so an
// allocation may live longer than its TTL, never shorter. Renew of an
// expired allocation returns ErrConflict.
//
// # Lost allocations
//
// A registered host without a status key (its agent's lease expired, or
// the agent stopped on purpose) is down from the moment this coordinator
// saw the key missing, on its own clock; after a restart the coordinator
// counts from its first list. Once a host has been down for
// LostGracePeriod, the sweep marks each of its active allocations lost,
// with a compare-and-swap that requires the status key to be absent.
// A lost allocation keeps its ledger entry, so its resources stay
// reserved, and it can be released as usual. When the host's status key
// returns, the sweep marks its lost allocations active again, with a
// compare-and-swap that requires the status key to exist. With
// LostReleaseAfter set, a lost allocation is released once that long has
// passed since its lost_at, compared with the sweeping coordinator's
// clock. The sweep runs every SweepInterval and when the watch reports a
// deleted lease key or a health change.
//
// # Not guaranteed
//
//   - A registration that shrinks (an agent restarting with fewer CPUs or
//     GPUs) does not evict allocations; the ledger may then exceed the new
//     totals until they are released, and requests for the over-committed
//     resource skip the host until then.
//   - Allocations whose host's keys were all deleted by hand are never
//     marked lost; they stay active until released.
//   - lost_at and released_at come from the clock of the coordinator that
//     wrote them; coordinators with skewed clocks release lost
//     allocations earlier or later by that skew.
//   - Select is a dry run on the view and may differ from a later
//     Allocate.
package fleet
