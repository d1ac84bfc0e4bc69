// Package metrics exports the agent's state as Prometheus metrics on its
// own registry, never the global default one.
//
// Metrics implements heartbeat.Observer for the registration counters and
// keeps the last host sample for the CPU, memory and per-GPU gauges. GPU
// series carry the labels uuid and index; a value the driver could not
// report is left out rather than exported as zero, and a GPU that vanished
// from the last sample loses its series. Percentages from the sample are
// exported as ratios between 0 and 1, as Prometheus naming expects.
//
// No label or value holds a credential: the only strings exported are the
// host ID, the agent version, GPU UUIDs and the fixed reasons and
// operation names of the heartbeat package.
package metrics
