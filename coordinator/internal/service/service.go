// Package service is the contract between the coordinator's fleet logic
// (the etcd-fed view and the allocator) and its HTTP API. The API layer maps
// the sentinel errors below to status codes; the fleet layer wraps them with
// a message that names the value and what to do.
package service

import (
	"context"
	"errors"

	"github.com/YoungBoyGod/remotegpu/pkg/api"
)

// Sentinel errors that the API maps to HTTP status codes.
var (
	// ErrInvalid marks a request that can never succeed as sent (400).
	ErrInvalid = errors.New("invalid request")
	// ErrNotFound marks an unknown host or allocation (404).
	ErrNotFound = errors.New("not found")
	// ErrNoCapacity marks a valid request that no host can take now (409).
	ErrNoCapacity = errors.New("no capacity")
	// ErrConflict marks a request that clashes with the current state, such
	// as removing a host that still holds allocations (409).
	ErrConflict = errors.New("conflict")
	// ErrUnavailable marks etcd being unreachable or the view not yet
	// synced (503).
	ErrUnavailable = errors.New("unavailable")
)

// AllocationFilter narrows ListAllocations; empty fields match everything.
type AllocationFilter struct {
	HostID string
	Owner  string
	// State is one of the keyspace.State* values.
	State string
}

// Fleet is the part of the coordinator that the HTTP API calls.
type Fleet interface {
	ListHosts(ctx context.Context) ([]api.Host, error)
	GetHost(ctx context.Context, hostID string) (api.Host, error)
	HostHealth(ctx context.Context, hostID string) (api.HostHealth, error)
	Drain(ctx context.Context, hostID string) (api.Host, error)
	Undrain(ctx context.Context, hostID string) (api.Host, error)
	// RemoveHost deletes a host that is gone for good. It fails with
	// ErrConflict while the host is alive or holds allocations.
	RemoveHost(ctx context.Context, hostID string) error

	// Select is a dry run of Allocate.
	Select(ctx context.Context, req api.AllocationRequest) (api.Selection, error)
	// Allocate places a request. created is false when the idempotency key
	// matched an existing allocation, which is returned instead.
	Allocate(ctx context.Context, req api.AllocationRequest) (alloc api.Allocation, created bool, err error)
	ListAllocations(ctx context.Context, f AllocationFilter) ([]api.Allocation, error)
	GetAllocation(ctx context.Context, allocID string) (api.Allocation, error)
	// Release frees an allocation. Releasing one that was already released
	// succeeds with AlreadyReleased set.
	Release(ctx context.Context, allocID string) (api.Allocation, error)
	// Renew pushes an allocation's expiry TTLSeconds into the future.
	Renew(ctx context.Context, allocID string) (api.Allocation, error)

	// Ready reports whether the view has synced with etcd.
	Ready() bool
}
