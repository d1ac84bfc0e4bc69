package cli

import (
	"fmt"
	"math"
	"math/big"
	"strings"
)

// byteUnits maps a unit suffix, in lower case, to its size in bytes. SI
// units are powers of 1000 and IEC units powers of 1024, as in "16GiB".
var byteUnits = map[string]int64{
	"":    1,
	"b":   1,
	"kb":  1000,
	"mb":  1000 * 1000,
	"gb":  1000 * 1000 * 1000,
	"tb":  1000 * 1000 * 1000 * 1000,
	"kib": 1 << 10,
	"mib": 1 << 20,
	"gib": 1 << 30,
	"tib": 1 << 40,
}

// parseBytes reads a size such as "17179869184", "16GiB", "1.5 GiB" or
// "512MB". Units are case-insensitive; a fraction of a byte is rounded
// down. Negative sizes and sizes above 2^63-1 bytes are errors.
func parseBytes(s string) (int64, error) {
	trimmed := strings.TrimSpace(s)
	split := strings.IndexFunc(trimmed, func(r rune) bool {
		return (r < '0' || r > '9') && r != '.'
	})
	number, unit := trimmed, ""
	if split >= 0 {
		number, unit = trimmed[:split], strings.TrimSpace(trimmed[split:])
	}

	scale, ok := byteUnits[strings.ToLower(unit)]
	if !ok || number == "" {
		return 0, fmt.Errorf("invalid size %q: use bytes or a number with a unit "+
			"such as 512MiB, 16GiB or 1TB", s)
	}
	value, ok := new(big.Rat).SetString(number)
	if !ok {
		return 0, fmt.Errorf("invalid size %q: %q is not a number", s, number)
	}
	value.Mul(value, new(big.Rat).SetInt64(scale))

	whole := new(big.Int).Quo(value.Num(), value.Denom())
	if !whole.IsInt64() {
		return 0, fmt.Errorf("invalid size %q: more than the maximum of %d bytes",
			s, int64(math.MaxInt64))
	}
	return whole.Int64(), nil
}

// byteSize is a pflag.Value holding bytes that accepts unit suffixes.
type byteSize int64

func (b *byteSize) Set(s string) error {
	v, err := parseBytes(s)
	if err != nil {
		return err
	}
	*b = byteSize(v)
	return nil
}

func (b *byteSize) String() string { return formatBytes(int64(*b)) }
func (b *byteSize) Type() string   { return "bytes" }

// formatBytes writes n in the largest IEC unit that divides it exactly,
// so that the value reads back unchanged through parseBytes.
func formatBytes(n int64) string {
	for _, u := range []struct {
		name string
		size int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n != 0 && n%u.size == 0 {
			return fmt.Sprintf("%d%s", n/u.size, u.name)
		}
	}
	return fmt.Sprintf("%d", n)
}

// gib writes n bytes in GiB with one decimal, for tables.
func gib(n int64) string {
	return fmt.Sprintf("%.1f", float64(n)/(1<<30))
}
