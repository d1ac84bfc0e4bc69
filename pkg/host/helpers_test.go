package host

import (
	"testing"

	"go.uber.org/goleak"
)

// gib is one gibibyte in bytes.
const gib = int64(1) << 30

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// res builds a requirement with memory given in GiB.
func res(cpu int, memoryGiB int64, gpu int) ResourceRequirement {
	return ResourceRequirement{CPU: cpu, Memory: memoryGiB * gib, GPU: gpu}
}

// newHost builds an active host with the given capacity and usage.
func newHost(id string, total, used ResourceRequirement) *HostInfo {
	return &HostInfo{
		ID:          id,
		Name:        "node-" + id,
		Status:      StatusActive,
		TotalCPU:    total.CPU,
		UsedCPU:     used.CPU,
		TotalMemory: total.Memory,
		UsedMemory:  used.Memory,
		TotalGPU:    total.GPU,
		UsedGPU:     used.GPU,
	}
}

// idleHost builds an active host with nothing in use.
func idleHost(id string, total ResourceRequirement) *HostInfo {
	return newHost(id, total, ResourceRequirement{})
}

// withStatus returns h after setting its status.
func withStatus(h *HostInfo, status string) *HostInfo {
	h.Status = status
	return h
}

// ids returns the IDs of hosts in order.
func ids(hosts []*HostInfo) []string {
	out := make([]string, len(hosts))
	for i, h := range hosts {
		out[i] = h.ID
	}
	return out
}
