package host

import (
	"encoding/json"
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRequirementValidate(t *testing.T) {
	tests := []struct {
		name    string
		req     ResourceRequirement
		wantErr string
	}{
		{name: "zero is valid", req: ResourceRequirement{}},
		{name: "positive is valid", req: res(4, 16, 1)},
		{name: "negative cpu", req: ResourceRequirement{CPU: -1},
			wantErr: "cpu is -1"},
		{name: "negative memory", req: ResourceRequirement{Memory: -5},
			wantErr: "memory is -5"},
		{name: "negative gpu", req: ResourceRequirement{GPU: -2},
			wantErr: "gpu is -2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.req.Validate()
			if tt.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, ErrInvalidRequirement)
			assert.Contains(t, err.Error(), tt.wantErr)
		})
	}
}

func TestRequirementString(t *testing.T) {
	got := ResourceRequirement{CPU: 4, Memory: 16 * gib, GPU: 1}.String()
	assert.Equal(t, "4 CPU, 16 GiB memory, 1 GPU", got)
}

func TestFormatBytes(t *testing.T) {
	tests := []struct {
		in   int64
		want string
	}{
		{0, "0 B"},
		{512, "512 B"},
		{1024, "1 KiB"},
		{1536, "1.5 KiB"},
		{16 * gib, "16 GiB"},
		{gib + gib/4, "1.25 GiB"},
		{1024 * gib, "1 TiB"},
		{math.MaxInt64, "8 EiB"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			assert.Equal(t, tt.want, formatBytes(tt.in))
		})
	}
}

func TestHostInfoValidate(t *testing.T) {
	full := res(8, 32, 2)
	tests := []struct {
		name    string
		host    *HostInfo
		wantErr string
	}{
		{name: "valid", host: newHost("h1", full, res(8, 32, 2))},
		{name: "zero totals valid", host: newHost("h1", res(0, 0, 0), res(0, 0, 0))},
		{name: "nil host", host: nil, wantErr: "host is nil"},
		{name: "empty id", host: idleHost("", full), wantErr: "id is empty"},
		{name: "negative total cpu",
			host:    idleHost("h1", ResourceRequirement{CPU: -1}),
			wantErr: `host "h1": total_cpu is -1`},
		{name: "negative total memory",
			host:    idleHost("h1", ResourceRequirement{Memory: -1}),
			wantErr: "total_memory is -1"},
		{name: "negative total gpu",
			host:    idleHost("h1", ResourceRequirement{GPU: -3}),
			wantErr: "total_gpu is -3"},
		{name: "negative used cpu",
			host:    newHost("h1", full, ResourceRequirement{CPU: -1}),
			wantErr: "used_cpu is -1"},
		{name: "used cpu above total",
			host:    newHost("h1", full, res(9, 0, 0)),
			wantErr: "used_cpu 9 exceeds total_cpu 8"},
		{name: "used memory above total",
			host:    newHost("h1", full, res(0, 33, 0)),
			wantErr: "used_memory"},
		{name: "used gpu above total",
			host:    newHost("h1", full, res(0, 0, 3)),
			wantErr: "used_gpu 3 exceeds total_gpu 2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.host.Validate()
			if tt.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, ErrInvalidHost)
			assert.Contains(t, err.Error(), tt.wantErr)
		})
	}
}

func TestAvailableResources(t *testing.T) {
	h := newHost("h1", res(32, 128, 4), res(8, 32, 1))
	assert.Equal(t, res(24, 96, 3), h.AvailableResources())

	// Usage above total, possible on a host built by hand, reports 0 free.
	over := newHost("h2", res(4, 4, 1), res(6, 8, 2))
	assert.Equal(t, ResourceRequirement{}, over.AvailableResources())
}

func TestUsageRate(t *testing.T) {
	tests := []struct {
		name string
		host *HostInfo
		want float64
	}{
		{name: "idle", host: idleHost("h", res(8, 8, 8)), want: 0},
		{name: "full", host: newHost("h", res(8, 8, 8), res(8, 8, 8)), want: 1},
		{name: "half cpu only",
			host: newHost("h", res(8, 8, 8), res(4, 0, 0)), want: 0.2},
		{name: "half memory only",
			host: newHost("h", res(8, 8, 8), res(0, 4, 0)), want: 0.2},
		{name: "half gpu only",
			host: newHost("h", res(8, 8, 8), res(0, 0, 4)), want: 0.1},
		{name: "weighted mix",
			host: newHost("h", res(32, 128, 4), res(8, 32, 1)), want: 0.25},
		{name: "no gpu peaks at 0.8",
			host: newHost("h", res(8, 8, 0), res(8, 8, 0)), want: 0.8},
		{name: "all totals zero",
			host: idleHost("h", ResourceRequirement{}), want: 0},
		{name: "usage above total clamps to 1",
			host: newHost("h", res(2, 2, 2), res(4, 4, 4)), want: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.host.UsageRate()
			assert.False(t, math.IsNaN(got), "usage rate is NaN")
			assert.InDelta(t, tt.want, got, 1e-9)
		})
	}
}

func TestCanAllocate(t *testing.T) {
	h := newHost("h1", res(32, 128, 4), res(8, 32, 1))
	tests := []struct {
		name string
		req  ResourceRequirement
		want bool
	}{
		{name: "zero fits", req: ResourceRequirement{}, want: true},
		{name: "exactly free fits", req: res(24, 96, 3), want: true},
		{name: "one cpu too many", req: res(25, 0, 0), want: false},
		{name: "one byte too many",
			req: ResourceRequirement{Memory: 96*gib + 1}, want: false},
		{name: "one gpu too many", req: res(0, 0, 4), want: false},
		{name: "negative rejected", req: ResourceRequirement{GPU: -1}, want: false},
		{name: "huge request no overflow",
			req: ResourceRequirement{Memory: math.MaxInt64}, want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, h.CanAllocate(tt.req))
		})
	}
}

func TestCanAllocateIgnoresStatus(t *testing.T) {
	h := withStatus(idleHost("h1", res(4, 4, 1)), StatusDraining)
	assert.True(t, h.CanAllocate(res(1, 1, 1)))
}

func TestCloneIsDeep(t *testing.T) {
	h := idleHost("h1", res(4, 4, 1))
	h.Labels = map[string]string{"zone": "a"}

	c := h.Clone()
	c.Labels["zone"] = "b"
	c.UsedCPU = 3

	assert.Equal(t, "a", h.Labels["zone"])
	assert.Equal(t, 0, h.UsedCPU)
	assert.NotSame(t, h, c)
}

func TestCloneNil(t *testing.T) {
	var h *HostInfo
	assert.Nil(t, h.Clone())

	noLabels := idleHost("h1", res(1, 1, 1))
	assert.Nil(t, noLabels.Clone().Labels)
}

func TestHostInfoJSON(t *testing.T) {
	h := newHost("h1", res(4, 1, 2), res(1, 0, 1))
	h.IPAddress = "10.0.0.1"
	h.Labels = map[string]string{"zone": "a"}

	data, err := json.Marshal(h)
	require.NoError(t, err)

	var fields map[string]any
	require.NoError(t, json.Unmarshal(data, &fields))
	for _, key := range []string{
		"id", "name", "ip_address", "status", "total_cpu", "used_cpu",
		"total_memory", "used_memory", "total_gpu", "used_gpu", "labels",
	} {
		assert.Contains(t, fields, key)
	}
	assert.Len(t, fields, 11)

	var back HostInfo
	require.NoError(t, json.Unmarshal(data, &back))
	assert.Equal(t, h, &back)
}

func TestRequirementJSON(t *testing.T) {
	data, err := json.Marshal(res(4, 1, 2))
	require.NoError(t, err)
	assert.JSONEq(t, `{"cpu":4,"memory":1073741824,"gpu":2}`, string(data))
}
