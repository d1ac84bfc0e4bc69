package keyspace

import (
	"testing"
)

// The decoders read whatever an operator or a broken client wrote with
// etcdctl, so they must return an error, never panic, on any input. A
// document that decodes must survive a second round trip unchanged.

func FuzzDecodeHostInfo(f *testing.F) {
	f.Add([]byte(`{"id":"h1","total_cpu":4,"gpus":[{"uuid":"g","index":0}]}`))
	f.Add([]byte(`{"id":"h1","total_cpu":-4}`))
	f.Add([]byte(`{"id":"h1","total_memory":9223372036854775808}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		info, err := DecodeHostInfo("k", data)
		if err != nil {
			return
		}
		enc, err := Encode(info)
		if err != nil {
			t.Fatalf("encode decoded info: %v", err)
		}
		if _, err := DecodeHostInfo("k", []byte(enc)); err != nil {
			t.Fatalf("decoded info does not decode again: %v", err)
		}
	})
}

func FuzzDecodeLedger(f *testing.F) {
	f.Add([]byte(`{"allocations":{"a":{"cpu":1,"memory":2,"gpus":["g"]}}}`))
	f.Add([]byte(`{"allocations":{"a":{"gpus":["g"]},"b":{"gpus":["g"]}}}`))
	f.Add([]byte(`{"draining":true}`))
	f.Add([]byte(`{"allocations":{"a":{"memory":9223372036854775807},"b":{"memory":1}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		l, err := DecodeLedger("k", data)
		if err != nil {
			return
		}
		cpu, mem, _ := l.Totals()
		if cpu < 0 || mem < 0 {
			t.Fatalf("accepted ledger has negative totals: cpu %d, memory %d", cpu, mem)
		}
	})
}

func FuzzDecodeStatusAndAllocation(f *testing.F) {
	f.Add([]byte(`{"instance_id":"i","gpus":[{"uuid":"g","health":"healthy"}]}`))
	f.Add([]byte(`{"id":"a","host_id":"h","state":"active"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = DecodeHostStatus("k", data)
		_, _ = DecodeAllocation("k", data)
	})
}
