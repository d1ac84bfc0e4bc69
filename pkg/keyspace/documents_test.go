package keyspace

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const testKey = "/remotegpu/hosts/h1/info"

func validInfo() *HostInfo {
	return &HostInfo{
		ID:           "h1",
		Name:         "node-1",
		IPAddress:    "10.0.0.1",
		TotalCPU:     32,
		TotalMemory:  128 << 30,
		GPUs:         []GPUInfo{{Index: 0, UUID: "GPU-a", MemoryTotal: 40 << 30}},
		RegisteredAt: time.Unix(1700000000, 0).UTC(),
	}
}

func TestHostInfoRoundTrip(t *testing.T) {
	in := validInfo()
	data, err := Encode(in)
	require.NoError(t, err)

	got, err := DecodeHostInfo(testKey, []byte(data))
	require.NoError(t, err)
	assert.Equal(t, in, got)
}

func TestDecodeHostInfoRejectsBadInput(t *testing.T) {
	tests := []struct {
		name string
		data string
		want string
	}{
		{"invalid JSON", `{"id":`, "unexpected EOF"},
		{"wrong type", `{"id":"h1","total_cpu":"32"}`, "total_cpu"},
		{"negative cpu", `{"id":"h1","total_cpu":-1}`, "total_cpu is -1"},
		{"huge cpu", `{"id":"h1","total_cpu":4611686018427387904}`, "between 0 and"},
		{"huge memory", `{"id":"h1","total_memory":9223372036854775807}`, "between 0 and"},
		{"negative memory", `{"id":"h1","total_memory":-5}`, "total_memory is -5"},
		{"missing id", `{"total_cpu":1}`, "ID is empty"},
		{"duplicate GPU", `{"id":"h1","gpus":[{"uuid":"g"},{"uuid":"g"}]}`, "listed twice"},
		{"GPU without UUID", `{"id":"h1","gpus":[{"index":0}]}`, "no uuid"},
		{"trailing data", `{"id":"h1"} {}`, "trailing data"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodeHostInfo(testKey, []byte(tt.data))
			require.Error(t, err)
			assert.True(t, errors.Is(err, ErrInvalidDocument))
			assert.Contains(t, err.Error(), tt.want)
			assert.Contains(t, err.Error(), testKey)
		})
	}
}

func TestDecodeHostStatus(t *testing.T) {
	_, err := DecodeHostStatus("k", []byte(`{"instance_id":"i","gpus":[{"uuid":"g","health":"healthy"}]}`))
	require.NoError(t, err)

	_, err = DecodeHostStatus("k", []byte(`{"gpus":[{"uuid":"g","health":"sick"}]}`))
	require.Error(t, err)
	assert.Contains(t, err.Error(), `"sick"`)

	_, err = DecodeHostStatus("k", []byte(`{"used_memory":-1}`))
	require.Error(t, err)
}

func TestLedgerTotalsAndValidation(t *testing.T) {
	l, err := DecodeLedger("k", nil)
	require.NoError(t, err)
	assert.Empty(t, l.Allocations)

	l.Allocations["a1"] = LedgerEntry{CPU: 4, Memory: 1 << 30, GPUs: []string{"g0", "g1"}}
	l.Allocations["a2"] = LedgerEntry{CPU: 2, Memory: 2 << 30, GPUs: []string{"g2"}}
	cpu, mem, gpus := l.Totals()
	assert.Equal(t, 6, cpu)
	assert.Equal(t, int64(3<<30), mem)
	assert.Equal(t, 3, gpus)
	assert.Equal(t, "a2", l.GPUsInUse()["g2"])
	require.NoError(t, l.Validate())

	l.Allocations["a3"] = LedgerEntry{GPUs: []string{"g1"}}
	err = l.Validate()
	require.Error(t, err)
	assert.Contains(t, err.Error(), `"g1"`)
}

func TestDecodeLedgerRejectsTooManyEntries(t *testing.T) {
	l := &Ledger{Allocations: map[string]LedgerEntry{}}
	for i := 0; i <= MaxLedgerEntries; i++ {
		l.Allocations["a"+time.Duration(i).String()] = LedgerEntry{CPU: 1}
	}
	data, err := Encode(l)
	require.NoError(t, err)
	_, err = DecodeLedger("k", []byte(data))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "maximum")
}

func TestDecodeAllocation(t *testing.T) {
	a := &Allocation{
		ID: "alloc-1", HostID: "h1", CPU: 4, Memory: 1 << 30,
		GPUs:  []AllocatedGPU{{Index: 3, UUID: "GPU-3"}},
		State: StateActive,
	}
	data, err := Encode(a)
	require.NoError(t, err)
	got, err := DecodeAllocation("k", []byte(data))
	require.NoError(t, err)
	assert.Equal(t, []string{"GPU-3"}, got.GPUUUIDs())
	assert.Equal(t, LedgerEntry{CPU: 4, Memory: 1 << 30, GPUs: []string{"GPU-3"}}, got.LedgerEntry())

	for name, doc := range map[string]string{
		"bad state":    `{"id":"a","host_id":"h","state":"weird"}`,
		"negative cpu": `{"id":"a","host_id":"h","state":"active","cpu":-1}`,
		"missing host": `{"id":"a","state":"active"}`,
	} {
		t.Run(name, func(t *testing.T) {
			_, err := DecodeAllocation("k", []byte(doc))
			require.Error(t, err)
			assert.True(t, errors.Is(err, ErrInvalidDocument))
		})
	}
}
