package fleet

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/YoungBoyGod/remotegpu/coordinator/internal/service"
	"github.com/YoungBoyGod/remotegpu/pkg/host"
	"github.com/YoungBoyGod/remotegpu/pkg/keyspace"
)

// verdict is the reason a host can or cannot take a request.
type verdict int

const (
	fits verdict = iota
	notRegistered
	notHealthy
	badLedger
	draining
	labelsDiffer
	ledgerFull
	tooSmall
)

// gpuChoice is a host's GPUs as seen by one request.
type gpuChoice struct {
	// capacity counts the GPUs that match the request's model and memory.
	capacity int
	// free lists the matching GPUs that are healthy, not busy and not
	// allocated, lowest index first.
	free []keyspace.GPUInfo
}

// judge decides whether h can take r now, from h's keys alone.
func (f *Fleet) judge(h *hostState, r request) (verdict, gpuChoice) {
	switch {
	case h.info == nil:
		return notRegistered, gpuChoice{}
	case h.statusRev == 0 || h.statusErr != nil:
		return notHealthy, gpuChoice{}
	case h.ledgerErr != nil:
		return badLedger, gpuChoice{}
	case h.ledger.Draining:
		return draining, gpuChoice{}
	case !labelsMatch(h.info.Labels, r.Labels):
		return labelsDiffer, gpuChoice{}
	case len(h.ledger.Allocations) >= keyspace.MaxLedgerEntries:
		return ledgerFull, gpuChoice{}
	}

	gpus := f.gpusFor(h, r)
	cpu, memory := freeCPUMemory(h)
	if r.CPU > cpu || r.Memory > memory || r.GPU > len(gpus.free) {
		return tooSmall, gpus
	}
	return fits, gpus
}

func labelsMatch(have, want map[string]string) bool {
	for k, v := range want {
		if got, ok := have[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// freeCPUMemory returns the registered totals minus the ledger's; the
// result is negative when the ledger exceeds a shrunk registration.
func freeCPUMemory(h *hostState) (int, int64) {
	cpu, memory, _ := h.ledger.Totals()
	return h.info.TotalCPU - cpu, h.info.TotalMemory - memory
}

// gpusFor lists h's GPUs that r may use. A GPU qualifies when it matches
// r, the live status lists it healthy, no allocation holds it and its
// memory use shows no outside work.
func (f *Fleet) gpusFor(h *hostState, r request) gpuChoice {
	inUse := h.ledger.GPUsInUse()
	live := liveGPUs(h)

	var c gpuChoice
	for _, g := range sortedGPUs(h.info) {
		if !gpuMatches(g, r) {
			continue
		}
		c.capacity++
		if _, held := inUse[g.UUID]; held {
			continue
		}
		st, ok := live[g.UUID]
		if !ok || st.Health != keyspace.GPUHealthy || f.busy(st) {
			continue
		}
		c.free = append(c.free, g)
	}
	return c
}

func gpuMatches(g keyspace.GPUInfo, r request) bool {
	if r.model != "" && !strings.Contains(strings.ToLower(g.Name), r.model) {
		return false
	}
	return g.MemoryTotal >= r.MinGPUMemory
}

// busy reports whether a GPU that no allocation holds is in use by work
// that remotegpu did not place.
func (f *Fleet) busy(st keyspace.GPUStatus) bool {
	return st.MemoryUsed != nil && *st.MemoryUsed > f.cfg.BusyGPUMemoryBytes
}

func liveGPUs(h *hostState) map[string]keyspace.GPUStatus {
	live := make(map[string]keyspace.GPUStatus)
	if h.status != nil {
		for _, g := range h.status.GPUs {
			live[g.UUID] = g
		}
	}
	return live
}

// sortedGPUs returns the registered GPUs by index, then UUID.
func sortedGPUs(info *keyspace.HostInfo) []keyspace.GPUInfo {
	gpus := slices.Clone(info.GPUs)
	slices.SortFunc(gpus, func(a, b keyspace.GPUInfo) int {
		if a.Index != b.Index {
			return a.Index - b.Index
		}
		return strings.Compare(a.UUID, b.UUID)
	})
	return gpus
}

// candidate converts a host that fits r into pkg/host form for ranking.
// Its GPU capacity counts only the GPUs matching r, and the matching GPUs
// that are not free for r count as used.
func candidate(h *hostState, gpus gpuChoice) *host.HostInfo {
	cpu, memory, _ := h.ledger.Totals()
	return &host.HostInfo{
		ID:          h.id,
		Name:        h.info.Name,
		IPAddress:   h.info.IPAddress,
		Status:      host.StatusActive,
		TotalCPU:    h.info.TotalCPU,
		UsedCPU:     cpu,
		TotalMemory: h.info.TotalMemory,
		UsedMemory:  memory,
		TotalGPU:    gpus.capacity,
		UsedGPU:     gpus.capacity - len(gpus.free),
		Labels:      h.info.Labels,
	}
}

// shortage collects why hosts were rejected, for the no-capacity error.
type shortage struct {
	// hosts counts registered hosts and healthy those with a live status.
	hosts, healthy int
	// Healthy hosts ruled out before their free resources were compared.
	draining, labels, badLedger, full int
	// considered counts the hosts whose free resources were compared, and
	// the max fields hold the largest free amounts among them.
	considered int
	maxCPU     int
	maxMemory  int64
	maxGPU     int
	// fresh explains hosts that a fresh read showed unable to take r.
	fresh []string
}

// add records the verdict on one registered host.
func (s *shortage) add(h *hostState, v verdict, gpus gpuChoice) {
	if v == notRegistered {
		return
	}
	s.hosts++
	switch v {
	case notHealthy:
		return
	case badLedger:
		s.badLedger++
	case draining:
		s.draining++
	case labelsDiffer:
		s.labels++
	case ledgerFull:
		s.full++
	default:
		cpu, memory := freeCPUMemory(h)
		s.considered++
		s.maxCPU = max(s.maxCPU, cpu)
		s.maxMemory = max(s.maxMemory, memory)
		s.maxGPU = max(s.maxGPU, len(gpus.free))
	}
	s.healthy++
}

// err builds the ErrNoCapacity error: what was asked, how many hosts
// were ruled out and why, and the largest free amount of each resource
// that was short.
func (s *shortage) err(r request) error {
	var reasons []string
	registered := "hosts registered"
	if s.hosts == 1 {
		registered = "host registered"
	}
	reasons = append(reasons, fmt.Sprintf("%d %s, %d healthy",
		s.hosts, registered, s.healthy))
	for _, c := range []struct {
		n    int
		text string
	}{
		{s.draining, "draining"},
		{s.labels, "without labels " + formatLabels(r.Labels)},
		{s.badLedger, "with an invalid ledger"},
		{s.full, fmt.Sprintf("at the maximum of %d allocations",
			keyspace.MaxLedgerEntries)},
	} {
		if c.n > 0 {
			reasons = append(reasons, fmt.Sprintf("%d %s", c.n, c.text))
		}
	}
	if s.considered > 0 {
		reasons = append(reasons, s.shortfalls(r)...)
	}
	reasons = append(reasons, s.fresh...)
	return fmt.Errorf("%w: no host can take %s: %s", service.ErrNoCapacity,
		describeRequest(r), strings.Join(reasons, "; "))
}

// shortfalls names each resource that no considered host has enough of.
func (s *shortage) shortfalls(r request) []string {
	var out []string
	if r.CPU > s.maxCPU {
		out = append(out, fmt.Sprintf("most free CPU on any host is %d",
			max(s.maxCPU, 0)))
	}
	if r.Memory > s.maxMemory {
		out = append(out, fmt.Sprintf("most free memory on any host is %s",
			formatBytes(max(s.maxMemory, 0))))
	}
	if r.GPU > s.maxGPU {
		out = append(out, fmt.Sprintf("most free GPUs on any host is %d%s",
			s.maxGPU, gpuQualifier(r)))
	}
	if len(out) == 0 {
		out = append(out, "no host has all of it free at once")
	}
	return out
}

// gpuQualifier describes which GPUs counted as free.
func gpuQualifier(r request) string {
	q := []string{"healthy", "not busy"}
	if r.GPUModel != "" {
		q = append(q, fmt.Sprintf("model matching %q", r.GPUModel))
	}
	if r.MinGPUMemory > 0 {
		q = append(q, "at least "+formatBytes(r.MinGPUMemory))
	}
	return " (" + strings.Join(q, ", ") + ")"
}

// describeRequest formats the non-zero amounts, like "4 CPU, 1 GPU".
func describeRequest(r request) string {
	var parts []string
	if r.CPU > 0 {
		parts = append(parts, fmt.Sprintf("%d CPU", r.CPU))
	}
	if r.Memory > 0 {
		parts = append(parts, formatBytes(r.Memory)+" memory")
	}
	if r.GPU > 0 {
		parts = append(parts, fmt.Sprintf("%d GPU", r.GPU))
	}
	return strings.Join(parts, ", ")
}

// describeShortfall explains why a host read fresh from etcd cannot take r.
func describeShortfall(h *hostState, r request, v verdict, gpus gpuChoice) string {
	switch v {
	case notRegistered:
		return "it is no longer registered"
	case notHealthy:
		return "its heartbeat lease is gone"
	case badLedger:
		return "its ledger is invalid"
	case draining:
		return "it is draining"
	case labelsDiffer:
		return "its labels changed"
	case ledgerFull:
		return fmt.Sprintf("it holds the maximum of %d allocations",
			keyspace.MaxLedgerEntries)
	}

	cpu, memory := freeCPUMemory(h)
	var short []string
	if r.CPU > cpu {
		short = append(short, fmt.Sprintf("%d CPU free", max(cpu, 0)))
	}
	if r.Memory > memory {
		short = append(short, formatBytes(max(memory, 0))+" memory free")
	}
	if r.GPU > len(gpus.free) {
		short = append(short, fmt.Sprintf("%d eligible GPUs free",
			len(gpus.free)))
	}
	return "only " + strings.Join(short, ", ")
}

func formatLabels(labels map[string]string) string {
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	pairs := make([]string, len(keys))
	for i, k := range keys {
		pairs[i] = k + "=" + labels[k]
	}
	return strings.Join(pairs, ",")
}

var byteUnits = [...]string{"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}

// formatBytes formats n with the largest binary unit that keeps the value
// at 1 or more, with up to two decimals: 17179869184 is "16 GiB".
func formatBytes(n int64) string {
	v, unit := float64(n), 0
	for v >= 1024 && unit < len(byteUnits)-1 {
		v /= 1024
		unit++
	}
	s := strconv.FormatFloat(v, 'f', 2, 64)
	s = strings.TrimSuffix(strings.TrimRight(s, "0"), ".")
	return s + " " + byteUnits[unit]
}
