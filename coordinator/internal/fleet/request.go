package fleet

import (
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/YoungBoyGod/remotegpu/coordinator/internal/service"
	"github.com/YoungBoyGod/remotegpu/pkg/api"
	"github.com/YoungBoyGod/remotegpu/pkg/keyspace"
)

// Limits on the free-text fields of a request.
const (
	maxTextLength = 256
	maxLabels     = 64
	maxTTLSeconds = api.MaxTTLSeconds
)

// maxTTL is maxTTLSeconds as a duration.
const maxTTL = maxTTLSeconds * time.Second

// checkDefaultTTL validates Config.DefaultAllocationTTL against the
// limits of ttl_seconds, so the default is a TTL a request could ask for.
func checkDefaultTTL(ttl time.Duration) error {
	switch {
	case ttl < 0:
		return fmt.Errorf("invalid --default-allocation-ttl %s: it is "+
			"negative; use 0 for allocations that live until released, "+
			"or a positive duration", ttl)
	case ttl > 0 && ttl < time.Second:
		return fmt.Errorf("invalid --default-allocation-ttl %s: TTLs "+
			"are whole seconds, so use at least 1s, or 0 for "+
			"allocations that live until released", ttl)
	case ttl > maxTTL:
		return fmt.Errorf("invalid --default-allocation-ttl %s: more "+
			"than the maximum of %s (one year, %d seconds)", ttl, maxTTL,
			maxTTLSeconds)
	}
	return nil
}

// request is a validated AllocationRequest with its defaults applied.
type request struct {
	api.AllocationRequest
	// model is GPUModel in lower case, for case-insensitive matching.
	model string
}

// parseRequest validates req and applies the defaults for strategy and
// TTL. Every error wraps service.ErrInvalid and names the field.
func (f *Fleet) parseRequest(req api.AllocationRequest) (request, error) {
	if err := checkQuantities(req); err != nil {
		return request{}, invalidRequest(err)
	}
	if err := checkStrategy(req.Strategy); err != nil {
		return request{}, invalidRequest(err)
	}
	if err := checkText(req); err != nil {
		return request{}, invalidRequest(err)
	}

	r := request{AllocationRequest: req, model: strings.ToLower(req.GPUModel)}
	if r.Strategy == "" {
		r.Strategy = api.Strategies[0]
	}
	if r.TTLSeconds == 0 {
		r.TTLSeconds = int64(f.cfg.DefaultAllocationTTL / time.Second)
	}
	return r, nil
}

func invalidRequest(err error) error {
	return fmt.Errorf("%w: %w", service.ErrInvalid, err)
}

// checkQuantities rejects negative or meaningless amounts.
func checkQuantities(req api.AllocationRequest) error {
	switch {
	case req.CPU < 0:
		return fmt.Errorf("cpu is %d; use 0 or more cores", req.CPU)
	case req.Memory < 0:
		return fmt.Errorf("memory is %d; use 0 or more bytes", req.Memory)
	case req.GPU < 0:
		return fmt.Errorf("gpu is %d; use 0 or more GPUs", req.GPU)
	case req.MinGPUMemory < 0:
		return fmt.Errorf("min_gpu_memory is %d; use 0 or more bytes",
			req.MinGPUMemory)
	case req.TTLSeconds < 0:
		return fmt.Errorf("ttl_seconds is %d; use 0 for the default or "+
			"a positive number of seconds", req.TTLSeconds)
	case req.TTLSeconds > maxTTLSeconds:
		return fmt.Errorf("ttl_seconds is %d, more than the maximum of "+
			"%d (one year)", req.TTLSeconds, maxTTLSeconds)
	case req.CPU == 0 && req.Memory == 0 && req.GPU == 0:
		return fmt.Errorf("cpu, memory and gpu are all 0; " +
			"request at least one resource")
	case req.GPU == 0 && req.GPUModel != "":
		return fmt.Errorf("gpu_model is %q but gpu is 0; request at "+
			"least one GPU or leave gpu_model empty", req.GPUModel)
	case req.GPU == 0 && req.MinGPUMemory > 0:
		return fmt.Errorf("min_gpu_memory is %d but gpu is 0; request "+
			"at least one GPU or leave min_gpu_memory at 0",
			req.MinGPUMemory)
	}
	return nil
}

func checkStrategy(strategy string) error {
	if strategy == "" || slices.Contains(api.Strategies, strategy) {
		return nil
	}
	return fmt.Errorf("strategy %q is unknown; use one of %s",
		strategy, strings.Join(api.Strategies, ", "))
}

// checkText checks the free-text fields: length, control characters and
// the idempotency key's ID syntax.
func checkText(req api.AllocationRequest) error {
	if err := checkField("gpu_model", req.GPUModel); err != nil {
		return err
	}
	if err := checkField("owner", req.Owner); err != nil {
		return err
	}
	if req.IdempotencyKey != "" {
		if err := keyspace.ValidID(req.IdempotencyKey); err != nil {
			return fmt.Errorf("idempotency_key: %w", err)
		}
	}

	if len(req.Labels) > maxLabels {
		return fmt.Errorf("labels has %d entries, more than the "+
			"maximum of %d", len(req.Labels), maxLabels)
	}
	for k, v := range req.Labels {
		if k == "" {
			return fmt.Errorf("labels has an empty key (value %q)", v)
		}
		if err := checkField("label key", k); err != nil {
			return err
		}
		if err := checkField(fmt.Sprintf("labels[%q]", k), v); err != nil {
			return err
		}
	}
	return nil
}

// checkField rejects text that is too long or holds control characters.
func checkField(name, value string) error {
	if len(value) > maxTextLength {
		return fmt.Errorf("%s is %d bytes long, more than the maximum "+
			"of %d", name, len(value), maxTextLength)
	}
	if i := strings.IndexFunc(value, unicode.IsControl); i >= 0 {
		return fmt.Errorf("%s %q contains a control character at byte "+
			"%d", name, value, i)
	}
	return nil
}
