package cli

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/YoungBoyGod/remotegpu/pkg/api"
)

func newTable(out io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
}

// writeHostTable prints one line per host. CPU and MEMORY are allocated
// over total; GPUS is free over total, where free GPUs are healthy, held
// by no allocation and not busy with outside work.
func writeHostTable(out io.Writer, hosts []api.Host, now time.Time) error {
	tw := newTable(out)
	fmt.Fprintln(tw, "ID\tADDRESS\tHEALTH\tCPU\tMEMORY (GiB)\tGPUS FREE\tLAST HEARTBEAT")
	for _, h := range hosts {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d/%d\t%s/%s\t%d/%d\t%s\n",
			h.ID, orDash(h.IPAddress), hostHealth(h),
			h.UsedCPU, h.TotalCPU, gib(h.UsedMemory), gib(h.TotalMemory),
			freeGPUs(h), h.TotalGPU, age(h.LastHeartbeat, now))
	}
	return tw.Flush()
}

// hostHealth is the health, with ",draining" for a drained host.
func hostHealth(h api.Host) string {
	if h.Status == "draining" {
		return h.Health + ",draining"
	}
	return h.Health
}

func freeGPUs(h api.Host) int {
	if len(h.GPUs) == 0 {
		return max(h.TotalGPU-h.UsedGPU, 0)
	}
	free := 0
	for _, g := range h.GPUs {
		if g.AllocationID == "" && !g.Busy && g.Health == api.HealthHealthy {
			free++
		}
	}
	return free
}

// age writes how long ago t was, in the largest whole unit, or "-" for
// never.
func age(t *time.Time, now time.Time) string {
	if t == nil || t.IsZero() {
		return "-"
	}
	d := now.Sub(*t)
	switch {
	case d < 0:
		return "just now"
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh ago", int(d.Hours()))
	default:
		return fmt.Sprintf("%dd ago", int(d.Hours()/24))
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// writeHostDetails prints one host as "key: value" lines and a GPU table.
func writeHostDetails(out io.Writer, h api.Host, now time.Time) error {
	tw := newTable(out)
	fmt.Fprintf(tw, "ID:\t%s\n", h.ID)
	fmt.Fprintf(tw, "Name:\t%s\n", orDash(h.Name))
	fmt.Fprintf(tw, "Address:\t%s\n", orDash(h.IPAddress))
	fmt.Fprintf(tw, "Status:\t%s\n", orDash(h.Status))
	health := h.Health
	if h.HealthMessage != "" {
		health += " (" + h.HealthMessage + ")"
	}
	fmt.Fprintf(tw, "Health:\t%s\n", health)
	fmt.Fprintf(tw, "Last heartbeat:\t%s\n", age(h.LastHeartbeat, now))
	fmt.Fprintf(tw, "CPU allocated:\t%d/%d (%.0f%% busy)\n", h.UsedCPU, h.TotalCPU, h.CPUPercent)
	fmt.Fprintf(tw, "Memory allocated:\t%s/%s (%s in use)\n",
		formatSize(h.UsedMemory), formatSize(h.TotalMemory), formatSize(h.MemoryInUse))
	fmt.Fprintf(tw, "GPUs free:\t%d/%d\n", freeGPUs(h), h.TotalGPU)
	if len(h.Labels) > 0 {
		fmt.Fprintf(tw, "Labels:\t%s\n", formatLabels(h.Labels))
	}
	fmt.Fprintf(tw, "Agent version:\t%s\n", orDash(h.AgentVersion))
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(h.GPUs) == 0 {
		return nil
	}

	fmt.Fprintln(out)
	tw = newTable(out)
	fmt.Fprintln(tw, "INDEX\tUUID\tNAME\tMEMORY (GiB)\tHEALTH\tALLOCATION")
	for _, g := range h.GPUs {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", g.Index, g.UUID, g.Name,
			gib(g.MemoryTotal), gpuHealth(g), gpuHolder(g))
	}
	return tw.Flush()
}

func gpuHealth(g api.GPU) string {
	if g.HealthReason != "" {
		return g.Health + " (" + g.HealthReason + ")"
	}
	return g.Health
}

func gpuHolder(g api.GPU) string {
	switch {
	case g.AllocationID != "":
		return g.AllocationID
	case g.Busy:
		return "busy (not allocated)"
	default:
		return "-"
	}
}

func formatLabels(labels map[string]string) string {
	parts := make([]string, 0, len(labels))
	for k, v := range labels {
		parts = append(parts, k+"="+v)
	}
	slices.Sort(parts)
	return strings.Join(parts, ",")
}

// writeAllocation prints a new or matched allocation.
func writeAllocation(out io.Writer, a api.Allocation, created bool) error {
	tw := newTable(out)
	if created {
		fmt.Fprintf(tw, "Allocated %s on host %s (%s).\n", a.ID, a.HostID, orDash(a.HostAddress))
	} else {
		fmt.Fprintf(tw, "Allocation %s on host %s (%s) already exists for idempotency key %q.\n",
			a.ID, a.HostID, orDash(a.HostAddress), a.IdempotencyKey)
	}
	fmt.Fprintf(tw, "CPU:\t%d\n", a.CPU)
	fmt.Fprintf(tw, "Memory:\t%s\n", formatSize(a.Memory))
	fmt.Fprintf(tw, "GPUs:\t%d\n", len(a.GPUs))
	if a.ExpiresAt != nil {
		fmt.Fprintf(tw, "Expires:\t%s (renew or it ends)\n", a.ExpiresAt.Format(time.RFC3339))
	}
	fmt.Fprintf(tw, "CUDA_VISIBLE_DEVICES=%s\n", a.CUDAVisibleDevices)
	return tw.Flush()
}

// writeAllocationTable prints one line per allocation.
func writeAllocationTable(out io.Writer, allocs []api.Allocation, now time.Time) error {
	tw := newTable(out)
	fmt.Fprintln(tw, "ID\tHOST\tOWNER\tSTATE\tCPU\tMEMORY (GiB)\tGPUS\tCREATED\tEXPIRES")
	for _, a := range allocs {
		created := a.CreatedAt
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%d\t%s\t%s\n",
			a.ID, a.HostID, orDash(a.Owner), a.State, a.CPU, gib(a.Memory),
			len(a.GPUs), age(&created, now), expires(a.ExpiresAt, now))
	}
	return tw.Flush()
}

// expires writes when an allocation expires relative to now, or "-" for
// never.
func expires(t *time.Time, now time.Time) string {
	if t == nil {
		return "-"
	}
	d := t.Sub(now).Round(time.Second)
	if d <= 0 {
		return "passed"
	}
	return "in " + d.String()
}

// plural writes n with the singular noun for 1 and the plural otherwise:
// "1 GPU", "0 GPUs", "2 GPUs".
func plural(n int, singular, pluralForm string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, singular)
	}
	return fmt.Sprintf("%d %s", n, pluralForm)
}

// writeSelection prints where the select dry run would place req.
func writeSelection(out io.Writer, req api.AllocationRequest, sel api.Selection) error {
	h := sel.Host
	_, err := fmt.Fprintf(out, "Host %s (%s) would take %s, %s of memory and %s; "+
		"nothing was allocated.\n", h.ID, orDash(h.IPAddress),
		plural(req.CPU, "CPU", "CPUs"), formatSize(req.Memory),
		plural(len(sel.GPUs), "GPU", "GPUs"))
	if err != nil || len(sel.GPUs) == 0 {
		return err
	}
	tw := newTable(out)
	fmt.Fprintln(tw, "INDEX\tUUID")
	for _, g := range sel.GPUs {
		fmt.Fprintf(tw, "%d\t%s\n", g.Index, g.UUID)
	}
	return tw.Flush()
}

// writeRenewal prints a renewed allocation's new expiry.
func writeRenewal(out io.Writer, a api.Allocation, now time.Time) error {
	if a.ExpiresAt == nil {
		_, err := fmt.Fprintf(out, "renewed allocation %s on host %s; it has no expiry\n",
			a.ID, a.HostID)
		return err
	}
	_, err := fmt.Fprintf(out, "renewed allocation %s on host %s; it expires at %s (%s)\n",
		a.ID, a.HostID, a.ExpiresAt.Format(time.RFC3339), expires(a.ExpiresAt, now))
	return err
}
