package cli

import (
	"errors"
	"fmt"
	"math"
	"math/big"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/YoungBoyGod/remotegpu/pkg/api"
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

// sizeUnits are the IEC units of formatBytes and formatSize, largest first.
var sizeUnits = []struct {
	name string
	size int64
}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}}

// formatBytes writes n in the largest IEC unit that divides it exactly,
// so that the value reads back unchanged through parseBytes.
func formatBytes(n int64) string {
	for _, u := range sizeUnits {
		if n != 0 && n%u.size == 0 {
			return fmt.Sprintf("%d%s", n/u.size, u.name)
		}
	}
	return fmt.Sprintf("%d", n)
}

// gib writes n bytes in GiB for table columns whose header names the
// unit. It uses one decimal from 0.1 GiB up, and below that as many as
// show two significant digits (50 MiB is 0.049), so that only zero reads
// as zero.
func gib(n int64) string {
	v := float64(n) / (1 << 30)
	if n <= 0 || v >= 0.1 {
		return strconv.FormatFloat(v, 'f', 1, 64)
	}
	decimals := 1 - int(math.Floor(math.Log10(v)))
	return strconv.FormatFloat(v, 'f', decimals, 64)
}

// formatSize writes n bytes with one decimal in the largest IEC unit that
// n reaches, such as "50.0 MiB" or "16.0 GiB", for text that names the
// unit with the number. Amounts under 1 KiB are whole bytes.
func formatSize(n int64) string {
	for _, u := range sizeUnits {
		if n >= u.size {
			return fmt.Sprintf("%.1f %s", float64(n)/float64(u.size), u.name)
		}
	}
	return fmt.Sprintf("%d B", n)
}

// maxTTL is the longest allocation TTL the coordinator accepts.
const maxTTL = time.Duration(api.MaxTTLSeconds) * time.Second

// durationSyntax matches the syntax of time.ParseDuration, so that a value
// that has it but still fails to parse is known to be out of range.
var durationSyntax = regexp.MustCompile(
	`^[-+]?(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h))+$`)

// checkTTL returns why d is not a valid allocation TTL, or nil. zero names
// what a TTL of 0 means to the caller.
func checkTTL(d time.Duration, zero string) error {
	switch {
	case d < 0:
		return fmt.Errorf("it is negative; use 0 for %s, or a duration from 1s to %s (one year)",
			zero, formatHours(maxTTL))
	case d > maxTTL:
		return fmt.Errorf("it is more than the maximum of %s (one year)", formatHours(maxTTL))
	case d%time.Second != 0:
		return errors.New("use whole seconds, such as 90s or 30m")
	}
	return nil
}

// formatHours writes a whole number of hours as "8760h" rather than
// time.Duration's "8760h0m0s".
func formatHours(d time.Duration) string {
	return fmt.Sprintf("%dh", d/time.Hour)
}

// ttlFlag is the pflag.Value of allocate --ttl: a duration of whole
// seconds from 0 to maxTTL. Set's errors name the rule that the value
// breaks.
type ttlFlag time.Duration

func (t *ttlFlag) Set(s string) error {
	d, err := time.ParseDuration(s)
	if err != nil {
		// time.ParseDuration rejects durations beyond about 292 years
		// with the same error as text that is no duration at all.
		trimmed := strings.TrimSpace(s)
		if !durationSyntax.MatchString(trimmed) {
			return errors.New("not a duration; use a number with a unit, " +
				"such as 90s, 30m or 24h")
		}
		d = maxTTL + time.Second
		if strings.HasPrefix(trimmed, "-") {
			d = -time.Second
		}
	}
	if err := checkTTL(d, "the coordinator's default"); err != nil {
		return err
	}
	*t = ttlFlag(d)
	return nil
}

func (t *ttlFlag) String() string {
	if *t == 0 {
		return "0"
	}
	return time.Duration(*t).String()
}

func (t *ttlFlag) Type() string { return "duration" }
