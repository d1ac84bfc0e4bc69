// Package api defines the coordinator's HTTP/JSON API: the request and
// response documents and the error codes. The server in coordinator/ and the
// Go client in pkg/client both use these types, so they cannot drift apart.
//
// Quantities follow pkg/host: CPU in whole cores, memory in bytes.
package api

import (
	"time"

	"github.com/YoungBoyGod/remotegpu/pkg/keyspace"
)

// Host health values in Host.Health.
const (
	HealthHealthy   = "healthy"
	HealthUnhealthy = "unhealthy"
	HealthStopped   = "stopped"
	HealthUnknown   = "unknown"
)

// Allocation strategies accepted in AllocationRequest.Strategy.
const (
	StrategyLeastUsed  = "least_used"
	StrategyMostFree   = "most_free"
	StrategyBinPack    = "bin_pack"
	StrategyRoundRobin = "round_robin"
	StrategyRandom     = "random"
)

// Strategies lists every accepted strategy; the first is the default.
var Strategies = []string{
	StrategyLeastUsed, StrategyMostFree, StrategyBinPack,
	StrategyRoundRobin, StrategyRandom,
}

// Host is one host in the coordinator's view: the pkg/host fields plus
// health and GPUs.
type Host struct {
	ID          string            `json:"id"`
	Name        string            `json:"name"`
	IPAddress   string            `json:"ip_address"`
	Status      string            `json:"status"`
	TotalCPU    int               `json:"total_cpu"`
	UsedCPU     int               `json:"used_cpu"`
	TotalMemory int64             `json:"total_memory"`
	UsedMemory  int64             `json:"used_memory"`
	TotalGPU    int               `json:"total_gpu"`
	UsedGPU     int               `json:"used_gpu"`
	Labels      map[string]string `json:"labels,omitempty"`

	Health        string     `json:"health"`
	HealthMessage string     `json:"health_message,omitempty"`
	LastHeartbeat *time.Time `json:"last_heartbeat,omitempty"`
	// CPUPercent and MemoryInUse are the agent's live measurements, as
	// opposed to UsedCPU and UsedMemory, which count allocations.
	CPUPercent   float64 `json:"cpu_percent"`
	MemoryInUse  int64   `json:"memory_in_use"`
	AgentVersion string  `json:"agent_version,omitempty"`
	GPUs         []GPU   `json:"gpus"`
}

// GPU is one GPU of a host with its allocation and health state.
type GPU struct {
	Index       int    `json:"index"`
	UUID        string `json:"uuid"`
	Name        string `json:"name"`
	MemoryTotal int64  `json:"memory_total"`
	// AllocationID is set when an allocation holds the GPU.
	AllocationID string `json:"allocation_id,omitempty"`
	Health       string `json:"health"`
	HealthReason string `json:"health_reason,omitempty"`
	// Busy is true when the GPU has no allocation but its memory use shows
	// work that remotegpu did not place. A busy GPU is not handed out.
	Busy                  bool    `json:"busy,omitempty"`
	MemoryUsed            *int64  `json:"memory_used,omitempty"`
	UtilizationGPUPercent *uint32 `json:"utilization_gpu_percent,omitempty"`
}

// HostList is the body of GET /v1/hosts.
type HostList struct {
	Hosts []Host `json:"hosts"`
}

// HostHealth is the body of GET /v1/hosts/{id}/health.
type HostHealth struct {
	HostID        string     `json:"host_id"`
	Health        string     `json:"health"`
	Message       string     `json:"message,omitempty"`
	LastHeartbeat *time.Time `json:"last_heartbeat,omitempty"`
	CheckedAt     time.Time  `json:"checked_at"`
}

// AllocationRequest is the body of POST /v1/allocations and POST /v1/select.
type AllocationRequest struct {
	CPU    int   `json:"cpu"`
	Memory int64 `json:"memory"`
	GPU    int   `json:"gpu"`
	// GPUModel, when set, matches GPU names containing it, ignoring case
	// (for example "A100").
	GPUModel string `json:"gpu_model,omitempty"`
	// MinGPUMemory is the least memory in bytes each GPU must have.
	MinGPUMemory int64 `json:"min_gpu_memory,omitempty"`
	// Labels must all match the host's labels exactly.
	Labels         map[string]string `json:"labels,omitempty"`
	Strategy       string            `json:"strategy,omitempty"`
	Owner          string            `json:"owner,omitempty"`
	IdempotencyKey string            `json:"idempotency_key,omitempty"`
	// TTLSeconds limits the allocation's life without renewal; 0 takes the
	// coordinator's default. At most MaxTTLSeconds.
	TTLSeconds int64 `json:"ttl_seconds,omitempty"`
}

// MaxTTLSeconds is the largest AllocationRequest.TTLSeconds the
// coordinator accepts: one year of 365 days.
const MaxTTLSeconds = 365 * 24 * 3600

// Selection is the body of POST /v1/select: where a request would go now,
// without allocating anything.
type Selection struct {
	Host Host           `json:"host"`
	GPUs []AllocatedGPU `json:"gpus"`
}

// AllocatedGPU is a GPU chosen for a request.
type AllocatedGPU = keyspace.AllocatedGPU

// Allocation is an allocation as the API returns it.
type Allocation struct {
	ID          string         `json:"id"`
	HostID      string         `json:"host_id"`
	HostName    string         `json:"host_name"`
	HostAddress string         `json:"host_address"`
	CPU         int            `json:"cpu"`
	Memory      int64          `json:"memory"`
	GPUs        []AllocatedGPU `json:"gpus"`
	// CUDAVisibleDevices is the GPUs' UUIDs joined by commas, ready for the
	// CUDA_VISIBLE_DEVICES environment variable.
	CUDAVisibleDevices string     `json:"cuda_visible_devices"`
	Owner              string     `json:"owner,omitempty"`
	IdempotencyKey     string     `json:"idempotency_key,omitempty"`
	State              string     `json:"state"`
	CreatedAt          time.Time  `json:"created_at"`
	TTLSeconds         int64      `json:"ttl_seconds,omitempty"`
	ExpiresAt          *time.Time `json:"expires_at,omitempty"`
	ReleasedAt         *time.Time `json:"released_at,omitempty"`
	LostAt             *time.Time `json:"lost_at,omitempty"`
	// AlreadyReleased is set in the response to a release of an
	// allocation that was released before.
	AlreadyReleased bool `json:"already_released,omitempty"`
}

// AllocationList is the body of GET /v1/allocations.
type AllocationList struct {
	Allocations []Allocation `json:"allocations"`
}

// Error is the body of every error response.
type Error struct {
	Error string `json:"error"`
	// Code is one of the Code* values, so that a client can tell apart
	// errors that share a status code, such as the two kinds of 409.
	Code string `json:"code,omitempty"`
}

// Machine-readable error codes in Error.Code.
const (
	CodeInvalid              = "invalid"
	CodeNotFound             = "not_found"
	CodeMethodNotAllowed     = "method_not_allowed"
	CodeNoCapacity           = "no_capacity"
	CodeConflict             = "conflict"
	CodeBodyTooLarge         = "body_too_large"
	CodeUnsupportedMediaType = "unsupported_media_type"
	CodeUnauthorized         = "unauthorized"
	CodeUnavailable          = "unavailable"
	CodeInternal             = "internal"
)

// MaxBodyBytes is the largest request body the API accepts.
const MaxBodyBytes = 1 << 20
