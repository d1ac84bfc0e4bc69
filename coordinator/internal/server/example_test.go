package server_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"time"

	"github.com/YoungBoyGod/remotegpu/coordinator/internal/server"
	"github.com/YoungBoyGod/remotegpu/coordinator/internal/server/servertest"
	"github.com/YoungBoyGod/remotegpu/pkg/api"
	"github.com/YoungBoyGod/remotegpu/pkg/client"
)

// Example_goClient runs the pkg/client example against this server over an
// in-memory fleet: allocate one GPU, print CUDA_VISIBLE_DEVICES, renew
// while working, release.
func Example_goClient() {
	fleet := servertest.NewFleet(nil)
	fleet.AddHost(servertest.SampleHost("gpu-1", 2))
	srv := httptest.NewServer(server.New(server.Config{
		Fleet: fleet, Logger: slog.New(slog.DiscardHandler),
	}))
	defer srv.Close()

	c, err := client.New(srv.URL, client.WithHTTPClient(srv.Client()))
	if err != nil {
		panic(err)
	}
	ctx := context.Background()

	alloc, _, err := c.Allocate(ctx, api.AllocationRequest{
		CPU: 4, Memory: 16 << 30, GPU: 1, Owner: "alice", TTLSeconds: 60,
	})
	if err != nil {
		panic(err)
	}
	fmt.Println("CUDA_VISIBLE_DEVICES=" + alloc.CUDAVisibleDevices)

	// Work for a while; KeepAlive renews meanwhile and releases at the end.
	work, stop := context.WithTimeout(ctx, 50*time.Millisecond)
	defer stop()
	if err := c.KeepAlive(work, alloc.ID, 10*time.Millisecond); err != nil {
		panic(err)
	}

	got, err := c.GetAllocation(ctx, alloc.ID)
	if err != nil {
		panic(err)
	}
	fmt.Println("renewed:", fleet.Calls("Renew") > 0)
	fmt.Println("state:", got.State)
	// Output:
	// CUDA_VISIBLE_DEVICES=GPU-gpu-1-0
	// renewed: true
	// state: released
}
