// Package config holds the agent's command-line settings, registers them as
// flags and validates them before the agent touches etcd or a GPU.
//
// Every validation error names the flag and the rejected value. The timing
// rules live in ValidateTiming, next to the constants they use:
//   - The lease TTL is at least MinTTL. etcd raises a smaller TTL to its own
//     minimum, so the host would be declared dead later than requested.
//   - The sampling interval is shorter than the TTL.
//   - The maximum time between status writes is at least the sampling
//     interval.
//
// The lease keepalive runs at a third of the TTL, which is what etcd's
// client (clientv3 v3.7) does on its own.
package config
