package cli

import (
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/YoungBoyGod/remotegpu/pkg/api"
	"github.com/YoungBoyGod/remotegpu/pkg/client"
)

// placementOptions are the flags that describe what a request needs and
// how to place it, shared by allocate and select.
type placementOptions struct {
	cpu          int
	memory       byteSize
	gpu          int
	gpuModel     string
	minGPUMemory byteSize
	labels       map[string]string
	strategy     string
}

func (p *placementOptions) addFlags(fs *pflag.FlagSet) {
	fs.IntVar(&p.cpu, "cpu", 0, "CPU cores")
	fs.Var(&p.memory, "memory", "memory in bytes, or with a unit such as 16GiB")
	fs.IntVar(&p.gpu, "gpu", 0, "number of GPUs")
	fs.StringVar(&p.gpuModel, "gpu-model", "",
		"only GPUs whose name contains this, ignoring case (e.g. A100)")
	fs.Var(&p.minGPUMemory, "min-gpu-memory", "minimum memory of each GPU, e.g. 40GiB")
	fs.StringToStringVar(&p.labels, "label", nil,
		"host label that must match, as key=value; repeat for several")
	fs.StringVar(&p.strategy, "strategy", "",
		"placement strategy: least_used (default), most_free, bin_pack, round_robin or random")
}

func (p *placementOptions) request() api.AllocationRequest {
	return api.AllocationRequest{
		CPU:          p.cpu,
		Memory:       int64(p.memory),
		GPU:          p.gpu,
		GPUModel:     p.gpuModel,
		MinGPUMemory: int64(p.minGPUMemory),
		Labels:       p.labels,
		Strategy:     p.strategy,
	}
}

// allocateOptions are the flags of the allocate command.
type allocateOptions struct {
	placementOptions
	owner          string
	idempotencyKey string
	ttl            ttlFlag
}

func newAllocateCommand() *cobra.Command {
	a := &allocateOptions{}
	cmd := clientCommand("allocate", "Allocate CPUs, memory and GPUs on a host",
		cobra.NoArgs, func(cl *call) error {
			alloc, created, err := cl.client.Allocate(cl.ctx, a.request())
			if err != nil {
				return err
			}
			if cl.opts.json {
				return printJSON(cl.out, alloc)
			}
			return writeAllocation(cl.out, alloc, created)
		})
	cmd.Long = "allocate asks the coordinator for resources on one host and prints the " +
		"allocation, including the CUDA_VISIBLE_DEVICES value for its GPUs. " +
		"Release it with \"remotegpu-coordinator release ID\"."

	fs := cmd.Flags()
	a.placementOptions.addFlags(fs)
	fs.StringVar(&a.owner, "owner", "", "who the allocation is for, shown in listings")
	fs.StringVar(&a.idempotencyKey, "idempotency-key", "",
		"key that makes retries of this request return the same allocation")
	fs.Var(&a.ttl, "ttl", "lifetime without renewal, in whole seconds up to "+
		formatHours(maxTTL)+" (e.g. 30m); 0 uses the coordinator's default")
	return cmd
}

func (a *allocateOptions) request() api.AllocationRequest {
	req := a.placementOptions.request()
	req.Owner = a.owner
	req.IdempotencyKey = a.idempotencyKey
	req.TTLSeconds = int64(time.Duration(a.ttl) / time.Second)
	return req
}

func newSelectCommand() *cobra.Command {
	p := &placementOptions{}
	cmd := clientCommand("select", "Show where a request would be placed, without allocating",
		cobra.NoArgs, func(cl *call) error {
			req := p.request()
			sel, err := cl.client.Select(cl.ctx, req)
			if err != nil {
				return err
			}
			if cl.opts.json {
				sel.GPUs = nonNil(sel.GPUs)
				return printJSON(cl.out, sel)
			}
			return writeSelection(cl.out, req, sel)
		})
	cmd.Long = "select asks the coordinator which host and GPUs it would pick for a " +
		"request, as a dry run: nothing is allocated, and a later allocate with " +
		"the same flags may land elsewhere if the fleet changes in between. It " +
		"fails like allocate when no host can take the request."
	p.addFlags(cmd.Flags())
	return cmd
}

func newAllocationsCommand() *cobra.Command {
	var f client.AllocationFilter
	cmd := clientCommand("allocations", "List allocations",
		cobra.NoArgs, func(cl *call) error {
			allocs, err := cl.client.ListAllocations(cl.ctx, f)
			if err != nil {
				return err
			}
			if cl.opts.json {
				return printJSON(cl.out, api.AllocationList{Allocations: nonNil(allocs)})
			}
			return writeAllocationTable(cl.out, allocs, cl.opts.now())
		})
	fs := cmd.Flags()
	fs.StringVar(&f.HostID, "host", "", "only allocations on this host")
	fs.StringVar(&f.Owner, "owner", "", "only allocations of this owner")
	fs.StringVar(&f.State, "state", "",
		"only allocations in this state: active, lost, expired or released")
	return cmd
}
