// Package collect reads the host's CPU and memory through gopsutil.
//
// What it reports:
//   - CPU count is the host's logical CPU count. When the agent's cgroup
//     has a CPU quota (cgroup v2 cpu.max, or cgroup v1 cpu.cfs_quota_us)
//     below that count, the capacity offered is the quota rounded down, at
//     least 1, so that allocations never exceed what the cgroup can run.
//     A cpuset restriction is not taken into account.
//   - Memory total is the host's total, or the cgroup's memory limit
//     (memory.max, or memory.limit_in_bytes) when that is lower. Available
//     memory is the host's available memory, or the cgroup's headroom
//     (limit minus usage, not counting inactive page cache) when lower.
//     Used memory is always total minus available, because the meaning of
//     gopsutil's "used" has changed between versions.
//   - CPU utilisation is the host's, computed from the difference between
//     two readings of /proc/stat. New takes the first reading, so the first
//     Sample already covers the time since New; it is never a fixed zero.
//   - Load averages are the host's.
//
// Cgroup limits are read once, in New. A limit changed later is seen after
// a restart.
package collect
