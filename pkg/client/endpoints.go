package client

import (
	"context"
	"fmt"
	"net/http"
	"net/url"

	"github.com/YoungBoyGod/remotegpu/pkg/api"
)

// ListHosts returns every host in the coordinator's view.
func (c *Client) ListHosts(ctx context.Context) ([]api.Host, error) {
	var out api.HostList
	_, err := c.do(ctx, call{method: http.MethodGet, path: "/v1/hosts", retryable: true, out: &out})
	return out.Hosts, err
}

// GetHost returns one host.
func (c *Client) GetHost(ctx context.Context, hostID string) (api.Host, error) {
	var out api.Host
	err := c.idCall(ctx, http.MethodGet, "host", hostID, "/v1/hosts/%s", true, &out)
	return out, err
}

// HostHealth returns a host's health as the coordinator judges it now.
func (c *Client) HostHealth(ctx context.Context, hostID string) (api.HostHealth, error) {
	var out api.HostHealth
	err := c.idCall(ctx, http.MethodGet, "host", hostID, "/v1/hosts/%s/health", true, &out)
	return out, err
}

// Drain stops new allocations on a host; existing ones stay.
func (c *Client) Drain(ctx context.Context, hostID string) (api.Host, error) {
	var out api.Host
	err := c.idCall(ctx, http.MethodPost, "host", hostID, "/v1/hosts/%s/drain", false, &out)
	return out, err
}

// Undrain lets a drained host take new allocations again.
func (c *Client) Undrain(ctx context.Context, hostID string) (api.Host, error) {
	var out api.Host
	err := c.idCall(ctx, http.MethodPost, "host", hostID, "/v1/hosts/%s/undrain", false, &out)
	return out, err
}

// RemoveHost makes the coordinator forget a host that is gone for good. It
// fails with ErrConflict while the host is alive or holds allocations.
func (c *Client) RemoveHost(ctx context.Context, hostID string) error {
	return c.idCall(ctx, http.MethodDelete, "host", hostID, "/v1/hosts/%s", false, nil)
}

// Select returns where req would be placed now, without allocating.
func (c *Client) Select(ctx context.Context, req api.AllocationRequest) (api.Selection, error) {
	var out api.Selection
	_, err := c.do(ctx, call{
		method: http.MethodPost, path: "/v1/select", body: req, retryable: true, out: &out,
	})
	return out, err
}

// Allocate places req. created is false when req.IdempotencyKey matched an
// earlier allocation, which is returned instead. Only a request with an
// idempotency key is retried, because the server may have committed an
// allocation whose response was lost.
func (c *Client) Allocate(ctx context.Context,
	req api.AllocationRequest) (alloc api.Allocation, created bool, err error) {
	status, err := c.do(ctx, call{
		method: http.MethodPost, path: "/v1/allocations", body: req,
		retryable: req.IdempotencyKey != "", out: &alloc,
	})
	return alloc, status == http.StatusCreated, err
}

// AllocationFilter narrows ListAllocations; empty fields match everything.
type AllocationFilter struct {
	HostID string
	Owner  string
	// State is "active", "lost", "expired" or "released".
	State string
}

// ListAllocations returns the allocations that match f.
func (c *Client) ListAllocations(ctx context.Context,
	f AllocationFilter) ([]api.Allocation, error) {
	q := url.Values{}
	for name, v := range map[string]string{"host": f.HostID, "owner": f.Owner, "state": f.State} {
		if v != "" {
			q.Set(name, v)
		}
	}
	var out api.AllocationList
	_, err := c.do(ctx, call{
		method: http.MethodGet, path: "/v1/allocations", query: q, retryable: true, out: &out,
	})
	return out.Allocations, err
}

// GetAllocation returns one allocation.
func (c *Client) GetAllocation(ctx context.Context, allocID string) (api.Allocation, error) {
	var out api.Allocation
	err := c.idCall(ctx, http.MethodGet, "allocation", allocID, "/v1/allocations/%s", true, &out)
	return out, err
}

// Release frees an allocation. Releasing one that was released before
// succeeds with AlreadyReleased set, so a retried release is harmless.
func (c *Client) Release(ctx context.Context, allocID string) (api.Allocation, error) {
	var out api.Allocation
	err := c.idCall(ctx, http.MethodDelete, "allocation", allocID, "/v1/allocations/%s", true, &out)
	return out, err
}

// Renew pushes an allocation's expiry its TTL into the future.
func (c *Client) Renew(ctx context.Context, allocID string) (api.Allocation, error) {
	var out api.Allocation
	err := c.idCall(ctx, http.MethodPost, "allocation", allocID,
		"/v1/allocations/%s/renew", true, &out)
	return out, err
}

// Ready returns nil when the coordinator has synced with etcd and an error
// matching ErrUnavailable while it has not. It is not retried.
func (c *Client) Ready(ctx context.Context) error {
	_, err := c.do(ctx, call{method: http.MethodGet, path: "/readyz"})
	return err
}

// idCall calls a path that contains one host or allocation ID.
func (c *Client) idCall(ctx context.Context, method, kind, id, pathFormat string,
	retryable bool, out any) error {
	if id == "" {
		return fmt.Errorf("%w: %s ID is empty", ErrInvalid, kind)
	}
	_, err := c.do(ctx, call{
		method:    method,
		path:      fmt.Sprintf(pathFormat, url.PathEscape(id)),
		retryable: retryable,
		out:       out,
	})
	return err
}
