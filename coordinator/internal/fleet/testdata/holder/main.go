// Command holder is a test helper that holds one allocation. It
// allocates one GPU with a TTL through pkg/client and prints the
// allocation ID on a line of its own. Then it keeps the allocation alive
// with KeepAlive until it is killed or interrupted.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/YoungBoyGod/remotegpu/pkg/api"
	"github.com/YoungBoyGod/remotegpu/pkg/client"
)

func main() {
	addr := flag.String("addr", "", "URL of the coordinator's HTTP API")
	ttl := flag.Int64("ttl", 3, "TTL of the allocation in seconds")
	owner := flag.String("owner", "holder", "owner of the allocation")
	flag.Parse()

	if err := run(*addr, *ttl, *owner); err != nil {
		fmt.Fprintln(os.Stderr, "holder:", err)
		os.Exit(1)
	}
}

func run(addr string, ttl int64, owner string) error {
	ctx, stop := signal.NotifyContext(context.Background(),
		syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	c, err := client.New(addr)
	if err != nil {
		return err
	}
	alloc, _, err := c.Allocate(ctx, api.AllocationRequest{
		CPU: 1, GPU: 1, TTLSeconds: ttl, Owner: owner,
	})
	if err != nil {
		return fmt.Errorf("allocate: %w", err)
	}
	fmt.Println(alloc.ID)
	return c.KeepAlive(ctx, alloc.ID, 0)
}
