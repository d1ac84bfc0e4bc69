package metrics

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/YoungBoyGod/remotegpu/pkg/keyspace"
)

// gpuLabels are the labels of every per-GPU series.
var gpuLabels = []string{"uuid", "index"}

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(namespace+"_"+name, help, labels, nil)
}

// Descriptions of the host gauges that hostCollector builds per scrape.
var (
	infoDesc = desc("info", "Always 1; labels name the host and agent.",
		"host_id", "version")
	cpusDesc = desc("cpus",
		"CPUs the agent offers, after any cgroup limit.")
	cpuDesc = desc("cpu_utilization_ratio",
		"CPU busy time over the last interval, from 0 to 1.")
	memTotalDesc = desc("memory_total_bytes",
		"Memory the agent offers, after any cgroup limit.")
	memUsedDesc  = desc("memory_used_bytes", "Memory in use.")
	memAvailDesc = desc("memory_available_bytes",
		"Memory available to new work.")
	loadDesc = desc("load_average",
		"System load average over the period in minutes.", "minutes")

	gpuUtilDesc = desc("gpu_utilization_ratio",
		"Share of time a kernel ran on the GPU, from 0 to 1.", gpuLabels...)
	gpuMemUtilDesc = desc("gpu_memory_utilization_ratio",
		"Share of time GPU memory was read or written, from 0 to 1.",
		gpuLabels...)
	gpuMemUsedDesc = desc("gpu_memory_used_bytes",
		"GPU memory in use.", gpuLabels...)
	gpuMemTotalDesc = desc("gpu_memory_total_bytes",
		"GPU memory installed.", gpuLabels...)
	gpuTempDesc = desc("gpu_temperature_celsius",
		"GPU core temperature.", gpuLabels...)
	gpuPowerDesc = desc("gpu_power_watts",
		"GPU power draw.", gpuLabels...)
	gpuPowerLimitDesc = desc("gpu_power_limit_watts",
		"GPU power limit.", gpuLabels...)
	gpuHealthyDesc = desc("gpu_healthy",
		"1 while the GPU is healthy, 0 after a fault such as an Xid error.",
		gpuLabels...)
	gpuECCDesc = desc("gpu_ecc_errors_total",
		"ECC errors the driver counted, by type corrected or uncorrected.",
		append(gpuLabels, "type")...)
)

// hostCollector exports the last sample of Metrics. It is unchecked
// (Describe sends nothing) because the set of GPU series changes with the
// sample.
type hostCollector struct{ m *Metrics }

var _ prometheus.Collector = hostCollector{}

// Describe sends nothing, which makes the collector unchecked.
func (hostCollector) Describe(chan<- *prometheus.Desc) {}

// Collect sends the host and GPU gauges of the last sample.
func (c hostCollector) Collect(ch chan<- prometheus.Metric) {
	info, st := c.m.snapshot()
	ch <- gauge(infoDesc, 1, info.ID, info.AgentVersion)
	ch <- gauge(cpusDesc, float64(info.TotalCPU))
	ch <- gauge(memTotalDesc, float64(info.TotalMemory))
	for _, g := range info.GPUs {
		ch <- gauge(gpuMemTotalDesc, float64(g.MemoryTotal),
			g.UUID, strconv.Itoa(g.Index))
	}
	if st == nil {
		return
	}

	ch <- gauge(cpuDesc, st.CPUPercent/100)
	ch <- gauge(memUsedDesc, float64(st.UsedMemory))
	ch <- gauge(memAvailDesc, float64(st.AvailableMemory))
	ch <- gauge(loadDesc, st.Load1, "1")
	ch <- gauge(loadDesc, st.Load5, "5")
	ch <- gauge(loadDesc, st.Load15, "15")
	for _, g := range st.GPUs {
		collectGPU(ch, g)
	}
}

// collectGPU sends one GPU's series, leaving out what the driver did not
// report.
func collectGPU(ch chan<- prometheus.Metric, g keyspace.GPUStatus) {
	labels := []string{g.UUID, strconv.Itoa(g.Index)}
	optional := func(d *prometheus.Desc, v *float64) {
		if v != nil {
			ch <- gauge(d, *v, labels...)
		}
	}
	optional(gpuUtilDesc, ratio(g.UtilizationGPUPercent))
	optional(gpuMemUtilDesc, ratio(g.UtilizationMemoryPercent))
	optional(gpuMemUsedDesc, float(g.MemoryUsed))
	optional(gpuTempDesc, float(g.TemperatureC))
	optional(gpuPowerDesc, g.PowerW)
	optional(gpuPowerLimitDesc, g.PowerLimitW)

	healthy := 0.0
	if g.Health == keyspace.GPUHealthy {
		healthy = 1
	}
	ch <- gauge(gpuHealthyDesc, healthy, labels...)

	if v := float(g.ECCCorrected); v != nil {
		ch <- counter(gpuECCDesc, *v, append(labels, "corrected")...)
	}
	if v := float(g.ECCUncorrected); v != nil {
		ch <- counter(gpuECCDesc, *v, append(labels, "uncorrected")...)
	}
}

func gauge(d *prometheus.Desc, v float64, labels ...string) prometheus.Metric {
	return prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
}

func counter(d *prometheus.Desc, v float64, labels ...string) prometheus.Metric {
	return prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
}

// ratio turns a percentage into a value from 0 to 1; nil stays nil.
func ratio(p *uint32) *float64 {
	if p == nil {
		return nil
	}
	v := float64(*p) / 100
	return &v
}

// float converts a reported number; nil stays nil.
func float[T int64 | uint32 | uint64](p *T) *float64 {
	if p == nil {
		return nil
	}
	v := float64(*p)
	return &v
}
