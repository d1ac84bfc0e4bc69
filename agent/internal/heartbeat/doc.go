// Package heartbeat registers the host in etcd and keeps it alive there.
//
// An Agent grants a lease and, in one transaction, writes the host's
// registration (<prefix>/hosts/<id>/info, no lease) and its status
// (<prefix>/hosts/<id>/status, attached to the lease). clientv3's KeepAlive
// renews the lease at a third of its TTL; a goroutine owned by the session
// drains the keepalive channel. Liveness therefore comes from the lease
// alone. The status is rewritten only when it changed by more than a
// threshold or when the maximum interval between writes has passed.
//
// Guarantees:
//   - The agent never overwrites a status key held by another lease, so a
//     stale instance cannot clobber a newer one. Registration succeeds only
//     when the status key is absent or was written by this process. Every
//     status write checks, in the same transaction, that the key is still
//     attached to the agent's lease.
//   - A second agent with the same host ID waits while the holder's lease
//     counts down, because the holder may be a killed instance whose lease
//     has not expired yet. When the holder's lease is still alive after its
//     full TTL plus a grace period, Run returns an error wrapping
//     ErrHostIDInUse that names the host ID.
//   - The registration can be lost: the keepalive channel closes,
//     ErrLeaseNotFound comes back after an outage, or the status key is
//     taken away. Then, and while etcd is unreachable, the agent grants a
//     new lease and registers again. Retries use capped exponential
//     backoff with jitter, and each is logged with its error. etcd being
//     unreachable at start is not fatal, and the logged error then names
//     the endpoints that did not respond. The first status write that
//     succeeds after failed ones is logged once, at info level, with how
//     long writes failed and how many attempts failed.
//   - Every etcd call has its own timeout. On shutdown the agent, in one
//     transaction guarded by its lease owning the status key, sets
//     stopped_at in the registration and deletes the status key, then
//     revokes the lease, all within StopTimeout, so shutdown never hangs
//     when etcd is unreachable.
//
// Not guaranteed: timestamps in the documents come from the agent's clock
// and are for display only. Coordinators judge liveness by the lease.
package heartbeat
