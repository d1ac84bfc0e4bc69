package host_test

import (
	"fmt"
	"time"

	"github.com/YoungBoyGod/remotegpu/pkg/host"
)

func Example() {
	const gib = int64(1) << 30

	selector := host.NewLeastUsedSelector()
	checker := host.NewSimpleHealthChecker(5 * time.Second)
	monitor := host.NewHealthMonitor(checker, 30*time.Second)
	manager := host.NewHostManager(selector, monitor)

	err := manager.RegisterHost(&host.HostInfo{
		ID:          "host-1",
		Name:        "gpu-node-1",
		IPAddress:   "10.0.0.1",
		Status:      host.StatusActive,
		TotalCPU:    32,
		UsedCPU:     8,
		TotalMemory: 128 * gib,
		UsedMemory:  32 * gib,
		TotalGPU:    4,
		UsedGPU:     1,
	})
	if err != nil {
		fmt.Println("register:", err)
		return
	}

	req := host.ResourceRequirement{CPU: 4, Memory: 16 * gib, GPU: 1}
	selected, err := manager.SelectHost(req)
	if err != nil {
		fmt.Println("select:", err)
		return
	}
	fmt.Printf("selected %s, free: %s\n",
		selected.ID, selected.AvailableResources())

	// SelectHost reserves nothing; Allocate would select and reserve in
	// one step.
	err = manager.UpdateHostResources(selected.ID,
		req.CPU, req.Memory, req.GPU, true)
	if err != nil {
		fmt.Println("reserve:", err)
		return
	}
	reserved, _ := manager.GetHost(selected.ID)
	fmt.Printf("after reserve, free: %s\n", reserved.AvailableResources())

	err = manager.UpdateHostResources(selected.ID,
		req.CPU, req.Memory, req.GPU, false)
	if err != nil {
		fmt.Println("release:", err)
		return
	}
	released, _ := manager.GetHost(selected.ID)
	fmt.Printf("after release, free: %s\n", released.AvailableResources())

	// The monitor is not started, so this runs the checker on demand.
	health, err := manager.GetHealthStatus("host-1")
	if err != nil {
		fmt.Println("health:", err)
		return
	}
	fmt.Printf("%s is %s\n", health.HostID, health.Status)

	// Output:
	// selected host-1, free: 24 CPU, 96 GiB memory, 3 GPU
	// after reserve, free: 20 CPU, 80 GiB memory, 2 GPU
	// after release, free: 24 CPU, 96 GiB memory, 3 GPU
	// host-1 is healthy
}
