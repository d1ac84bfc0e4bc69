// Package metrics exports a coordinator's state as Prometheus metrics on
// its own registry, never the global default one.
//
// Metrics implements fleet.Observer for the event counters and the
// allocation latency histogram, and reads fleet.Stats at each scrape for
// the gauges of hosts by health and allocations by state. Every health
// and state value is exported, with 0 when no host or allocation has it,
// so that dashboards and alerts see a series from the first scrape.
//
// Host IDs are not used as labels, which keeps the number of series
// independent of the fleet's size; per-host detail is in the API.
package metrics
