package host

import (
	"fmt"
	"strconv"
	"strings"
)

// resource names one of the three resources a host offers, so checks and
// messages can loop over them instead of repeating each rule three times.
type resource int

const (
	resourceCPU resource = iota
	resourceMemory
	resourceGPU
)

// allResources lists every resource in the order messages report them.
var allResources = [...]resource{resourceCPU, resourceMemory, resourceGPU}

// field returns the JSON name of the resource, as used in error messages.
func (r resource) field() string {
	switch r {
	case resourceCPU:
		return "cpu"
	case resourceMemory:
		return "memory"
	default:
		return "gpu"
	}
}

// noun returns the word that follows a quantity: "4 CPU", "16 GiB memory".
func (r resource) noun() string {
	switch r {
	case resourceCPU:
		return "CPU"
	case resourceMemory:
		return "memory"
	default:
		return "GPU"
	}
}

// quantity formats an amount of the resource: cores and GPUs as integers,
// memory in binary units.
func (r resource) quantity(v int64) string {
	if r == resourceMemory {
		return formatBytes(v)
	}
	return strconv.FormatInt(v, 10)
}

// describe formats an amount with its noun, for example "16 GiB memory".
func (r resource) describe(v int64) string {
	return r.quantity(v) + " " + r.noun()
}

// byteUnits are the binary prefixes formatBytes steps through.
var byteUnits = [...]string{"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}

// formatBytes formats n bytes with the largest binary unit that keeps the
// value at 1 or more, with up to two decimals: 17179869184 is "16 GiB".
func formatBytes(n int64) string {
	v := float64(n)
	unit := 0
	for (v >= 1024 || v <= -1024) && unit < len(byteUnits)-1 {
		v /= 1024
		unit++
	}
	s := strconv.FormatFloat(v, 'f', 2, 64)
	s = strings.TrimRight(s, "0")
	s = strings.TrimSuffix(s, ".")
	return s + " " + byteUnits[unit]
}

// amount returns the requirement's value for res.
func (r ResourceRequirement) amount(res resource) int64 {
	switch res {
	case resourceCPU:
		return int64(r.CPU)
	case resourceMemory:
		return r.Memory
	default:
		return int64(r.GPU)
	}
}

// String formats the requirement as "4 CPU, 16 GiB memory, 1 GPU".
func (r ResourceRequirement) String() string {
	parts := make([]string, 0, len(allResources))
	for _, res := range allResources {
		parts = append(parts, res.describe(r.amount(res)))
	}
	return strings.Join(parts, ", ")
}

// Validate returns an error wrapping ErrInvalidRequirement that names the
// first negative field and its value, or nil when every field is zero or
// more. A zero requirement is valid and fits any active host.
func (r ResourceRequirement) Validate() error {
	for _, res := range allResources {
		if v := r.amount(res); v < 0 {
			return fmt.Errorf("%w: %s is %d, must not be negative",
				ErrInvalidRequirement, res.field(), v)
		}
	}
	return nil
}
