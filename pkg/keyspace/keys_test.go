package keyspace

import (
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestValidatePrefix(t *testing.T) {
	tests := []struct {
		prefix  string
		wantErr string
	}{
		{"/remotegpu", ""},
		{"/a/b", ""},
		{"", "must not be empty"},
		{"remotegpu", `must start with "/"`},
		{"/remotegpu/", "trailing"},
		{"/", "named prefix"},
	}
	for _, tt := range tests {
		t.Run(tt.prefix, func(t *testing.T) {
			err := ValidatePrefix(tt.prefix)
			if tt.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.wantErr)
		})
	}
}

func TestKeysRoundTrip(t *testing.T) {
	ks, err := New("/rg")
	require.NoError(t, err)

	tests := []struct {
		key  string
		kind KeyKind
		id   string
	}{
		{ks.HostInfo("h1"), KindHostInfo, "h1"},
		{ks.HostStatus("h1"), KindHostStatus, "h1"},
		{ks.HostLedger("h-2.x"), KindHostLedger, "h-2.x"},
		{ks.Allocation("alloc-1"), KindAllocation, "alloc-1"},
		{ks.Idempotency("job:7"), KindIdempotency, "job:7"},
		{ks.AllocationLease("alloc-1"), KindAllocationLease, "alloc-1"},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			assert.True(t, strings.HasPrefix(tt.key, "/rg/"))
			got, err := ks.ParseKey(tt.key)
			require.NoError(t, err)
			assert.Equal(t, tt.kind, got.Kind)
			assert.Equal(t, tt.id, got.ID)
		})
	}
}

func TestParseKeyRejectsUnknownLayout(t *testing.T) {
	ks, err := New("/rg")
	require.NoError(t, err)

	for _, key := range []string{
		"/rg/hosts/h1",
		"/rg/hosts/h1/info/extra",
		"/rg/hosts/h1/other",
		"/rg/hosts//info",
		"/rg/allocations/",
		"/rg/allocations/a/b",
		"/rg/leases/",
		"/rg/leases/a/b",
		"/rg/unknown/x",
		"/other/hosts/h1/info",
		"/rg/hosts/.hidden/info",
	} {
		t.Run(key, func(t *testing.T) {
			_, err := ks.ParseKey(key)
			require.Error(t, err)
			assert.True(t, errors.Is(err, ErrUnknownKey))
			assert.Contains(t, err.Error(), key)
		})
	}
}

func TestValidID(t *testing.T) {
	require.NoError(t, ValidID("gpu-node-01.example:a_b"))
	for _, bad := range []string{"", "a/b", ".x", "a b", "ü", strings.Repeat("a", MaxIDLength+1)} {
		assert.Error(t, ValidID(bad), "ID %q", bad)
	}
}
