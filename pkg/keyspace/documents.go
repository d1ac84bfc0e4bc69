package keyspace

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"
)

// HostInfo is the registration document at <prefix>/hosts/<id>/info. The
// agent writes it without a lease, so it outlives the agent and the
// coordinator can report a host whose heartbeat stopped.
type HostInfo struct {
	ID           string            `json:"id"`
	Name         string            `json:"name"`
	IPAddress    string            `json:"ip_address"`
	Labels       map[string]string `json:"labels,omitempty"`
	TotalCPU     int               `json:"total_cpu"`
	TotalMemory  int64             `json:"total_memory"`
	GPUs         []GPUInfo         `json:"gpus"`
	AgentVersion string            `json:"agent_version"`
	// InstanceID identifies one run of the agent process; it changes on
	// every start.
	InstanceID   string    `json:"instance_id"`
	RegisteredAt time.Time `json:"registered_at"`
	// StoppedAt is set by an agent that shut down on purpose, in the same
	// transaction that deletes its status key. A status key that vanished
	// while StoppedAt is nil means the lease expired.
	StoppedAt *time.Time `json:"stopped_at,omitempty"`
}

// GPUInfo describes one GPU as registered. Memory is in bytes.
type GPUInfo struct {
	Index       int    `json:"index"`
	UUID        string `json:"uuid"`
	Name        string `json:"name"`
	MemoryTotal int64  `json:"memory_total"`
	PCIBusID    string `json:"pci_bus_id,omitempty"`
}

// GPU health values in GPUStatus.Health.
const (
	GPUHealthy   = "healthy"
	GPUUnhealthy = "unhealthy"
)

// HostStatus is the live document at <prefix>/hosts/<id>/status, attached to
// the agent's lease. Timestamps in it come from the agent's clock and are for
// display only: liveness is judged by the lease.
type HostStatus struct {
	InstanceID      string      `json:"instance_id"`
	HeartbeatAt     time.Time   `json:"heartbeat_at"`
	CPUPercent      float64     `json:"cpu_percent"`
	UsedMemory      int64       `json:"used_memory"`
	AvailableMemory int64       `json:"available_memory"`
	Load1           float64     `json:"load1"`
	Load5           float64     `json:"load5"`
	Load15          float64     `json:"load15"`
	GPUs            []GPUStatus `json:"gpus"`
}

// GPUStatus is the live state of one GPU. A nil pointer means the driver
// could not report that field (for example NOT_SUPPORTED), which differs
// from zero.
type GPUStatus struct {
	Index                    int      `json:"index"`
	UUID                     string   `json:"uuid"`
	UtilizationGPUPercent    *uint32  `json:"utilization_gpu_percent,omitempty"`
	UtilizationMemoryPercent *uint32  `json:"utilization_memory_percent,omitempty"`
	MemoryUsed               *int64   `json:"memory_used,omitempty"`
	TemperatureC             *uint32  `json:"temperature_c,omitempty"`
	PowerW                   *float64 `json:"power_w,omitempty"`
	PowerLimitW              *float64 `json:"power_limit_w,omitempty"`
	ECCCorrected             *uint64  `json:"ecc_corrected,omitempty"`
	ECCUncorrected           *uint64  `json:"ecc_uncorrected,omitempty"`
	// Health is GPUHealthy or GPUUnhealthy; HealthReason says why a GPU is
	// unhealthy.
	Health       string `json:"health"`
	HealthReason string `json:"health_reason,omitempty"`
	// LastFaultAt and LastFaultReason keep the most recent fault after the
	// GPU has recovered.
	LastFaultAt     *time.Time `json:"last_fault_at,omitempty"`
	LastFaultReason string     `json:"last_fault_reason,omitempty"`
}

// MaxLedgerEntries bounds the allocations one host can hold, which keeps the
// ledger far below etcd's default request limit of 1.5 MiB.
const MaxLedgerEntries = 1024

// Ledger is the document at <prefix>/hosts/<id>/allocations: what is
// allocated on one host, keyed by allocation ID. Coordinators change it only
// in a transaction that compares its ModRevision.
type Ledger struct {
	Allocations map[string]LedgerEntry `json:"allocations"`
	// Draining is set by an operator: the host takes no new allocations
	// and keeps the ones it has. It lives in the ledger so that a drain and
	// a concurrent allocation conflict on the same compare-and-swap.
	Draining  bool       `json:"draining,omitempty"`
	DrainedAt *time.Time `json:"drained_at,omitempty"`
}

// LedgerEntry is what one allocation holds on its host. Memory is in bytes;
// GPUs are UUIDs.
type LedgerEntry struct {
	CPU    int      `json:"cpu"`
	Memory int64    `json:"memory"`
	GPUs   []string `json:"gpus,omitempty"`
}

// Totals returns the CPU cores, memory bytes and GPU count the ledger holds.
func (l *Ledger) Totals() (cpu int, memory int64, gpus int) {
	for _, e := range l.Allocations {
		cpu += e.CPU
		memory += e.Memory
		gpus += len(e.GPUs)
	}
	return cpu, memory, gpus
}

// GPUsInUse returns the set of GPU UUIDs that some allocation holds.
func (l *Ledger) GPUsInUse() map[string]string {
	used := make(map[string]string)
	for id, e := range l.Allocations {
		for _, uuid := range e.GPUs {
			used[uuid] = id
		}
	}
	return used
}

// Allocation states.
const (
	// StateActive is an allocation that holds its resources.
	StateActive = "active"
	// StateLost is an allocation on a host whose lease expired; it keeps its
	// resources until released or until the host returns.
	StateLost = "lost"
	// StateExpired is an allocation whose TTL ran out; its resources are
	// freed.
	StateExpired = "expired"
	// StateReleased is an allocation released by its holder or an operator.
	StateReleased = "released"
)

// AllocatedGPU is one GPU handed out by an allocation.
type AllocatedGPU struct {
	Index int    `json:"index"`
	UUID  string `json:"uuid"`
}

// Allocation is the record at <prefix>/allocations/<id>. It is written in the
// same transaction as its host's ledger entry.
type Allocation struct {
	ID             string         `json:"id"`
	HostID         string         `json:"host_id"`
	HostName       string         `json:"host_name"`
	HostAddress    string         `json:"host_address"`
	CPU            int            `json:"cpu"`
	Memory         int64          `json:"memory"`
	GPUs           []AllocatedGPU `json:"gpus"`
	Owner          string         `json:"owner,omitempty"`
	IdempotencyKey string         `json:"idempotency_key,omitempty"`
	State          string         `json:"state"`
	CreatedAt      time.Time      `json:"created_at"`
	// TTLSeconds is the allocation's lifetime without renewal; 0 means it
	// lives until released.
	TTLSeconds int64      `json:"ttl_seconds,omitempty"`
	ExpiresAt  *time.Time `json:"expires_at,omitempty"`
	ReleasedAt *time.Time `json:"released_at,omitempty"`
	// LostAt is when the coordinator marked the allocation lost.
	LostAt *time.Time `json:"lost_at,omitempty"`
}

// GPUUUIDs returns the UUIDs of the allocation's GPUs in order.
func (a *Allocation) GPUUUIDs() []string {
	uuids := make([]string, len(a.GPUs))
	for i, g := range a.GPUs {
		uuids[i] = g.UUID
	}
	return uuids
}

// LedgerEntry returns the ledger entry that matches the record.
func (a *Allocation) LedgerEntry() LedgerEntry {
	return LedgerEntry{CPU: a.CPU, Memory: a.Memory, GPUs: a.GPUUUIDs()}
}

// ErrInvalidDocument is wrapped by every decoding error.
var ErrInvalidDocument = errors.New("invalid document")

func decodeStrict(key string, data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w at %q: %v", ErrInvalidDocument, key, err)
	}
	if dec.More() {
		return fmt.Errorf("%w at %q: trailing data after the JSON value", ErrInvalidDocument, key)
	}
	return nil
}

func invalid(key, format string, args ...any) error {
	return fmt.Errorf("%w at %q: %s", ErrInvalidDocument, key, fmt.Sprintf(format, args...))
}

// DecodeHostInfo parses and validates a registration document read from key.
func DecodeHostInfo(key string, data []byte) (*HostInfo, error) {
	var info HostInfo
	if err := decodeStrict(key, data, &info); err != nil {
		return nil, err
	}
	if err := info.Validate(); err != nil {
		return nil, invalid(key, "%v", err)
	}
	return &info, nil
}

// Upper bounds of a registration's totals. They are far above any real
// server and keep every sum over a host's allocations from overflowing.
const (
	MaxTotalCPU    = 1 << 20
	MaxTotalMemory = 1 << 60
)

// Validate checks the quantities and identities in a registration.
func (h *HostInfo) Validate() error {
	if err := ValidID(h.ID); err != nil {
		return fmt.Errorf("host id: %w", err)
	}
	if h.TotalCPU < 0 || h.TotalCPU > MaxTotalCPU {
		return fmt.Errorf("total_cpu is %d, must be between 0 and %d", h.TotalCPU, MaxTotalCPU)
	}
	if h.TotalMemory < 0 || h.TotalMemory > MaxTotalMemory {
		return fmt.Errorf("total_memory is %d, must be between 0 and %d", h.TotalMemory, int64(MaxTotalMemory))
	}
	seen := make(map[string]bool, len(h.GPUs))
	for i, g := range h.GPUs {
		if g.UUID == "" {
			return fmt.Errorf("gpus[%d] has no uuid", i)
		}
		if seen[g.UUID] {
			return fmt.Errorf("gpus[%d]: uuid %q is listed twice", i, g.UUID)
		}
		seen[g.UUID] = true
		if g.MemoryTotal < 0 {
			return fmt.Errorf("gpus[%d].memory_total is %d, must not be negative", i, g.MemoryTotal)
		}
		if g.Index < 0 {
			return fmt.Errorf("gpus[%d].index is %d, must not be negative", i, g.Index)
		}
	}
	return nil
}

// DecodeHostStatus parses and validates a status document read from key.
func DecodeHostStatus(key string, data []byte) (*HostStatus, error) {
	var st HostStatus
	if err := decodeStrict(key, data, &st); err != nil {
		return nil, err
	}
	if st.UsedMemory < 0 || st.AvailableMemory < 0 {
		return nil, invalid(key, "used_memory %d and available_memory %d must not be negative", st.UsedMemory, st.AvailableMemory)
	}
	for i, g := range st.GPUs {
		if g.UUID == "" {
			return nil, invalid(key, "gpus[%d] has no uuid", i)
		}
		if g.Health != GPUHealthy && g.Health != GPUUnhealthy {
			return nil, invalid(key, "gpus[%d].health is %q, want %q or %q", i, g.Health, GPUHealthy, GPUUnhealthy)
		}
	}
	return &st, nil
}

// DecodeLedger parses and validates a ledger read from key. An empty value
// decodes to an empty ledger.
func DecodeLedger(key string, data []byte) (*Ledger, error) {
	l := &Ledger{}
	if len(data) > 0 {
		if err := decodeStrict(key, data, l); err != nil {
			return nil, err
		}
	}
	if l.Allocations == nil {
		l.Allocations = make(map[string]LedgerEntry)
	}
	if err := l.Validate(); err != nil {
		return nil, invalid(key, "%v", err)
	}
	return l, nil
}

// Validate checks that quantities are not negative, that no GPU is held by
// two allocations and that the ledger is within MaxLedgerEntries.
func (l *Ledger) Validate() error {
	if len(l.Allocations) > MaxLedgerEntries {
		return fmt.Errorf("ledger holds %d allocations, more than the maximum of %d", len(l.Allocations), MaxLedgerEntries)
	}
	holder := make(map[string]string)
	var cpu, memory int64
	for id, e := range l.Allocations {
		if err := ValidID(id); err != nil {
			return fmt.Errorf("allocation id: %w", err)
		}
		if e.CPU < 0 || e.Memory < 0 {
			return fmt.Errorf("allocation %q has negative cpu %d or memory %d", id, e.CPU, e.Memory)
		}
		cpu += int64(e.CPU)
		memory += e.Memory
		if cpu < 0 || cpu > math.MaxInt32 || memory < 0 {
			return fmt.Errorf("allocation %q makes the ledger's cpu or memory total overflow", id)
		}
		for _, uuid := range e.GPUs {
			if other, ok := holder[uuid]; ok {
				return fmt.Errorf("GPU %q is held by both %q and %q", uuid, other, id)
			}
			holder[uuid] = id
		}
	}
	return nil
}

// DecodeAllocation parses and validates an allocation record read from key.
func DecodeAllocation(key string, data []byte) (*Allocation, error) {
	var a Allocation
	if err := decodeStrict(key, data, &a); err != nil {
		return nil, err
	}
	if err := ValidID(a.ID); err != nil {
		return nil, invalid(key, "id: %v", err)
	}
	if err := ValidID(a.HostID); err != nil {
		return nil, invalid(key, "host_id: %v", err)
	}
	if a.CPU < 0 || a.Memory < 0 || a.TTLSeconds < 0 {
		return nil, invalid(key, "cpu %d, memory %d and ttl_seconds %d must not be negative", a.CPU, a.Memory, a.TTLSeconds)
	}
	switch a.State {
	case StateActive, StateLost, StateExpired, StateReleased:
	default:
		return nil, invalid(key, "state is %q, want one of active, lost, expired, released", a.State)
	}
	return &a, nil
}

// Encode marshals a document for storage.
func Encode(v any) (string, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return "", fmt.Errorf("encode %T: %w", v, err)
	}
	return string(data), nil
}
