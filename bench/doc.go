// Package bench measures remotegpu on the machine it runs on: raw etcd
// compare-and-swap throughput, allocation throughput through the
// coordinator's HTTP API, host selection, fleet scale (many simulated
// agents against one coordinator process) and the footprint of one real
// agent.
//
// Every scenario runs against real components on 127.0.0.1 with free
// ports and temporary folders: an embedded etcd member (pkg/etcdembed),
// real remotegpu-coordinator and remotegpu-agent processes, and simulated
// hosts that write their info and status documents under real etcd
// leases. Nothing is mocked.
//
// Figures are summarised as the median and the min–max over several runs.
// Comparisons are ratios of runs taken side by side, so a noisy shared
// machine shifts both sides alike. Absolute figures are valid only for the
// machine named in the report.
//
// The scenarios start and stop their own processes; a scenario that fails
// stops what it started before it returns its error.
package bench
