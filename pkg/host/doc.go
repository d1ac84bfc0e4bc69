// Package host keeps an in-memory view of a fleet of hosts, selects a host
// for a resource request, reserves and releases resources on it, and
// tracks each host's health. It does no I/O and keeps nothing on disk.
//
// # Model
//
// A HostInfo carries a host's capacity and usage: CPU in whole cores,
// memory in bytes and GPUs in whole devices. A ResourceRequirement is an
// amount of each. A host is eligible for a request when its Status is
// StatusActive and CanAllocate reports that every resource fits. A
// HostManager also skips hosts whose last health result is
// HealthUnhealthy, but a host that was never checked counts as eligible.
//
// # Selection
//
// A HostSelector picks one eligible host; a HostRanker orders all of them.
// The package provides:
//
//   - NewLeastUsedSelector: lowest UsageRate (0.4 CPU + 0.4 memory +
//     0.2 GPU of the used fractions).
//   - NewMostFreeSelector: most free resources, each normalized by the
//     largest eligible host's total.
//   - NewBinPackSelector: highest UsageRate after placing the request.
//   - NewRoundRobinSelector: the next eligible host in ID order.
//   - NewRandomSelector and NewRandomSelectorWithSeed: uniform at random.
//
// # Guarantees
//
//   - Score ties go to the lowest host ID, so the three scoring selectors
//     return the same host whatever the order of the input slice.
//   - Select makes one or two linear passes and allocates only the copy it
//     returns; it never sorts.
//   - When nothing fits, the error wraps ErrNoHostAvailable and names the
//     reason: no hosts, no active hosts, or the resource that every
//     active host lacks, with the largest free amount seen.
//   - Every method of HostManager, HealthMonitor and the selectors is safe
//     for concurrent use.
//   - HostManager stores copies of the hosts passed in and returns copies,
//     so callers cannot change its state except through its methods.
//   - HostManager.Allocate selects and reserves under one lock, and a
//     reservation or release applies to all resources or to none, so usage
//     stays within [0, total] for every resource.
//   - HealthMonitor.Stop returns only after the monitor's goroutine ended.
//
// # Limits
//
//   - Usage is bookkeeping: the package never measures a host. Used
//     amounts change only through RegisterHost, UpsertHost, Allocate,
//     Release and UpdateHostResources.
//   - The view is one process's memory. Two processes, each with a
//     HostManager, can reserve the same resources; cross-process
//     agreement, for example a compare-and-swap in etcd, is the caller's
//     job. HostRanker exists so a caller that loses such a race can try
//     the next-best host.
//   - SimpleHealthChecker judges a host only by its HostInfo (status and
//     usage rate). It does not contact the host, so it cannot detect a
//     host that is down; use SetHealth to record results from elsewhere.
//   - SelectHost does not reserve anything: between SelectHost and a later
//     UpdateHostResources another caller may take the same resources.
package host
