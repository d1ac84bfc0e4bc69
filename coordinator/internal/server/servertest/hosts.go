package servertest

import (
	"fmt"
	"time"

	"github.com/YoungBoyGod/remotegpu/pkg/api"
)

// GiB is 2^30 bytes.
const GiB = int64(1) << 30

// SampleHost returns a healthy, active host with 32 CPUs, 256 GiB of memory
// and gpus A100 GPUs of 80 GiB, whose UUIDs are GPU-<id>-<index>.
func SampleHost(id string, gpus int) api.Host {
	seen := time.Now().Add(-3 * time.Second)
	h := api.Host{
		ID:            id,
		Name:          id + ".example",
		IPAddress:     "10.0.0.1",
		TotalCPU:      32,
		TotalMemory:   256 * GiB,
		Health:        api.HealthHealthy,
		LastHeartbeat: &seen,
		AgentVersion:  "test",
		GPUs:          []api.GPU{},
	}
	for i := range gpus {
		h.GPUs = append(h.GPUs, api.GPU{
			Index:       i,
			UUID:        fmt.Sprintf("GPU-%s-%d", id, i),
			Name:        "NVIDIA A100-SXM4-80GB",
			MemoryTotal: 80 * GiB,
			Health:      api.HealthHealthy,
		})
	}
	return h
}
