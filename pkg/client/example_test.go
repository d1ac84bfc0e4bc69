package client_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"os/exec"
	"time"

	"github.com/YoungBoyGod/remotegpu/pkg/api"
	"github.com/YoungBoyGod/remotegpu/pkg/client"
)

// Example allocates one GPU, runs a job on it with CUDA_VISIBLE_DEVICES
// set, keeps the allocation alive while the job runs and releases it at
// the end. It needs a running coordinator, so go test compiles it without
// running it; coordinator/internal/server has a variant that runs.
func Example() {
	c, err := client.New("http://127.0.0.1:8080", client.WithTimeout(10*time.Second))
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()

	alloc, _, err := c.Allocate(ctx, api.AllocationRequest{
		CPU:            4,
		Memory:         16 << 30,
		GPU:            1,
		Owner:          "alice",
		IdempotencyKey: "train-run-17",
		TTLSeconds:     300,
	})
	if errors.Is(err, client.ErrNoCapacity) {
		log.Fatalf("the fleet is full, try later: %v", err)
	}
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("CUDA_VISIBLE_DEVICES=" + alloc.CUDAVisibleDevices)

	// Renew every TTL/3 while the job runs; release when it ends.
	jobCtx, jobDone := context.WithCancel(ctx)
	keepAliveErr := make(chan error, 1)
	go func() { keepAliveErr <- c.KeepAlive(jobCtx, alloc.ID, 0) }()

	cmd := exec.CommandContext(jobCtx, "python", "train.py")
	cmd.Env = append(os.Environ(), "CUDA_VISIBLE_DEVICES="+alloc.CUDAVisibleDevices)
	jobErr := cmd.Run()

	jobDone()
	if err := <-keepAliveErr; err != nil {
		log.Printf("keepalive: %v", err)
	}
	if jobErr != nil {
		log.Fatal(jobErr)
	}
}
