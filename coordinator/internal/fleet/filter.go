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

// fit is judge's finding on one host for one request.
type fit struct {
	verdict verdict
	// capacity counts the GPUs that match the request's model and memory,
	// and freeGPUs those of them that are healthy, not busy and not
	// allocated.
	capacity, freeGPUs int
	// freeCPU and freeMemory are the registered totals minus the
	// ledger's, negative when the ledger exceeds a shrunk registration.
	freeCPU    int
	freeMemory int64
	// The four amounts are set only for the verdicts fits and tooSmall.
}

// judge decides whether h can take r now, from h's keys alone. It runs
// for every host on every request, so it counts GPUs without listing
// them. freeGPUs lists them for the chosen host.
func (f *Fleet) judge(h *hostState, r request) fit {
	switch {
	case h.info == nil:
		return fit{verdict: notRegistered}
	case h.statusRev == 0 || h.statusErr != nil:
		return fit{verdict: notHealthy}
	case h.ledgerErr != nil:
		return fit{verdict: badLedger}
	case h.ledger.Draining:
		return fit{verdict: draining}
	case !labelsMatch(h.info.Labels, r.Labels):
		return fit{verdict: labelsDiffer}
	case len(h.ledger.Allocations) >= keyspace.MaxLedgerEntries:
		return fit{verdict: ledgerFull}
	}

	v := fit{verdict: fits}
	v.capacity, v.freeGPUs = f.countGPUs(h, r)
	v.freeCPU, v.freeMemory = freeCPUMemory(h)
	if r.CPU > v.freeCPU || r.Memory > v.freeMemory || r.GPU > v.freeGPUs {
		v.verdict = tooSmall
	}
	return v
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

// heldGPUsOnStack is the number of held GPU UUIDs that countGPUs and
// freeGPUs collect without allocating. Longer lists spill to the heap.
const heldGPUsOnStack = 16

// countGPUs returns how many of h's GPUs match r and how many of those
// are free for r, as gpuFree decides.
func (f *Fleet) countGPUs(h *hostState, r request) (capacity, free int) {
	var buf [heldGPUsOnStack]string
	heldUUIDs := heldGPUs(h.ledger, buf[:0])
	for i, g := range h.info.GPUs {
		if !gpuMatches(g, r) {
			continue
		}
		capacity++
		if f.gpuFree(h, i, g, heldUUIDs) {
			free++
		}
	}
	return capacity, free
}

// freeGPUs lists h's GPUs that match r and are free for r, by index, then
// UUID.
func (f *Fleet) freeGPUs(h *hostState, r request) []keyspace.GPUInfo {
	var buf [heldGPUsOnStack]string
	heldUUIDs := heldGPUs(h.ledger, buf[:0])
	var out []keyspace.GPUInfo
	for i, g := range h.info.GPUs {
		if gpuMatches(g, r) && f.gpuFree(h, i, g, heldUUIDs) {
			out = append(out, g)
		}
	}
	sortGPUs(out)
	return out
}

// gpuFree reports whether g, registered at position i of h's GPUs, may
// be allocated: the live status lists it healthy, no allocation holds it
// and its memory use shows no outside work. heldUUIDs lists the GPUs
// that h's allocations hold.
func (f *Fleet) gpuFree(
	h *hostState, i int, g keyspace.GPUInfo, heldUUIDs []string,
) bool {
	if slices.Contains(heldUUIDs, g.UUID) {
		return false
	}
	st := liveGPU(h, i, g.UUID)
	return st != nil && st.Health == keyspace.GPUHealthy && !f.busy(st)
}

// heldGPUs appends the UUIDs of the GPUs that l's allocations hold to buf.
func heldGPUs(l *keyspace.Ledger, buf []string) []string {
	for _, e := range l.Allocations {
		buf = append(buf, e.GPUs...)
	}
	return buf
}

func gpuMatches(g keyspace.GPUInfo, r request) bool {
	if r.model != "" && !strings.Contains(strings.ToLower(g.Name), r.model) {
		return false
	}
	return g.MemoryTotal >= r.MinGPUMemory
}

// busy reports whether a GPU that no allocation holds is in use by work
// that remotegpu did not place.
func (f *Fleet) busy(st *keyspace.GPUStatus) bool {
	return st.MemoryUsed != nil && *st.MemoryUsed > f.cfg.BusyGPUMemoryBytes
}

// liveGPU returns the live status of the GPU with uuid, registered at
// position i, or nil when h's status does not list it. When the status
// lists a UUID twice, the last entry counts. The agent builds both lists
// in device order, so position i is tried first.
func liveGPU(h *hostState, i int, uuid string) *keyspace.GPUStatus {
	if h.status == nil {
		return nil
	}
	gpus := h.status.GPUs
	if h.statusGPUsDistinct && i < len(gpus) && gpus[i].UUID == uuid {
		return &gpus[i]
	}
	for j := len(gpus) - 1; j >= 0; j-- {
		if gpus[j].UUID == uuid {
			return &gpus[j]
		}
	}
	return nil
}

// distinctGPUs reports whether no UUID appears twice in gpus. Up to
// distinctByScan entries it compares every pair, which allocates nothing.
func distinctGPUs(gpus []keyspace.GPUStatus) bool {
	if len(gpus) <= distinctByScan {
		for i := range gpus {
			for j := i + 1; j < len(gpus); j++ {
				if gpus[i].UUID == gpus[j].UUID {
					return false
				}
			}
		}
		return true
	}
	seen := make(map[string]struct{}, len(gpus))
	for _, g := range gpus {
		if _, ok := seen[g.UUID]; ok {
			return false
		}
		seen[g.UUID] = struct{}{}
	}
	return true
}

// distinctByScan is the longest GPU list that distinctGPUs checks by
// comparing pairs, 120 comparisons at most, instead of with a map.
const distinctByScan = 16

// sortedGPUs returns the registered GPUs by index, then UUID.
func sortedGPUs(info *keyspace.HostInfo) []keyspace.GPUInfo {
	gpus := slices.Clone(info.GPUs)
	sortGPUs(gpus)
	return gpus
}

// sortGPUs sorts gpus by index, then UUID.
func sortGPUs(gpus []keyspace.GPUInfo) {
	slices.SortFunc(gpus, func(a, b keyspace.GPUInfo) int {
		if a.Index != b.Index {
			return a.Index - b.Index
		}
		return strings.Compare(a.UUID, b.UUID)
	})
}

// candidate converts a host that fits r, with judge's finding v, into
// pkg/host form for ranking. Its GPU capacity counts only the GPUs
// matching r, and the matching GPUs that are not free for r count as
// used.
func candidate(h *hostState, v fit) host.HostInfo {
	return host.HostInfo{
		ID:          h.id,
		Name:        h.info.Name,
		IPAddress:   h.info.IPAddress,
		Status:      host.StatusActive,
		TotalCPU:    h.info.TotalCPU,
		UsedCPU:     h.info.TotalCPU - v.freeCPU,
		TotalMemory: h.info.TotalMemory,
		UsedMemory:  h.info.TotalMemory - v.freeMemory,
		TotalGPU:    v.capacity,
		UsedGPU:     v.capacity - v.freeGPUs,
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

// add records judge's finding on one registered host.
func (s *shortage) add(v fit) {
	if v.verdict == notRegistered {
		return
	}
	s.hosts++
	switch v.verdict {
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
		s.considered++
		s.maxCPU = max(s.maxCPU, v.freeCPU)
		s.maxMemory = max(s.maxMemory, v.freeMemory)
		s.maxGPU = max(s.maxGPU, v.freeGPUs)
	}
	s.healthy++
}

// err builds the ErrNoCapacity error: what was asked, how many hosts
// were ruled out and why, and the largest free amount of each resource
// that was short.
func (s *shortage) err(r request) error {
	var reasons []string
	reasons = append(reasons, fmt.Sprintf("%s registered, %d healthy",
		countNoun(s.hosts, "host"), s.healthy))
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

// describeRequest formats the non-zero amounts, like "4 CPUs, 1 GPU".
func describeRequest(r request) string {
	var parts []string
	if r.CPU > 0 {
		parts = append(parts, countNoun(r.CPU, "CPU"))
	}
	if r.Memory > 0 {
		parts = append(parts, formatBytes(r.Memory)+" memory")
	}
	if r.GPU > 0 {
		parts = append(parts, countNoun(r.GPU, "GPU"))
	}
	return strings.Join(parts, ", ")
}

// countNoun formats n with noun, adding "s" unless n is 1.
func countNoun(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// describeShortfall explains, from judge's finding v, why a host read
// fresh from etcd cannot take r.
func describeShortfall(r request, v fit) string {
	switch v.verdict {
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

	var short []string
	if r.CPU > v.freeCPU {
		short = append(short, fmt.Sprintf("%d CPU free", max(v.freeCPU, 0)))
	}
	if r.Memory > v.freeMemory {
		short = append(short, formatBytes(max(v.freeMemory, 0))+" memory free")
	}
	if r.GPU > v.freeGPUs {
		short = append(short, fmt.Sprintf("%d eligible GPUs free",
			v.freeGPUs))
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
