package cli

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseBytes(t *testing.T) {
	t.Parallel()
	cases := map[string]int64{
		"0":                   0,
		"17179869184":         17179869184,
		"16GiB":               16 << 30,
		"16gib":               16 << 30,
		"16 GiB":              16 << 30,
		" 512MiB ":            512 << 20,
		"1.5GiB":              3 << 29,
		".5KiB":               512,
		"1TiB":                1 << 40,
		"1TB":                 1e12,
		"2GB":                 2e9,
		"3kB":                 3000,
		"10B":                 10,
		"1.0000000001B":       1,
		"9223372036854775807": 9223372036854775807,
		"7TiB":                7 << 40,
	}
	for in, want := range cases {
		got, err := parseBytes(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, got, in)
	}
}

func TestParseBytesErrors(t *testing.T) {
	t.Parallel()
	cases := map[string]string{
		"":                    "use bytes or a number with a unit",
		"GiB":                 "use bytes or a number with a unit",
		"-1":                  "use bytes or a number with a unit",
		"-1GiB":               "use bytes or a number with a unit",
		"16G":                 "such as 512MiB, 16GiB or 1TB",
		"16 gigabytes":        "use bytes",
		"1e9":                 "use bytes",
		"1..5GiB":             `"1..5" is not a number`,
		"9223372036854775808": "more than the maximum of 9223372036854775807 bytes",
		"9000000TiB":          "more than the maximum",
	}
	for in, want := range cases {
		_, err := parseBytes(in)
		require.Error(t, err, in)
		assert.Contains(t, err.Error(), want, in)
		assert.Contains(t, err.Error(), `"`+in+`"`, "the message names the value")
	}
}

func TestFormatBytesRoundTrips(t *testing.T) {
	t.Parallel()
	for _, n := range []int64{0, 1, 1023, 1024, 1 << 30, 3 << 29, 80 << 30, 1 << 40, 1e12} {
		s := formatBytes(n)
		back, err := parseBytes(s)
		require.NoError(t, err, s)
		assert.Equal(t, n, back, s)
	}
	assert.Equal(t, "16GiB", formatBytes(16<<30))
	assert.Equal(t, "1536MiB", formatBytes(3<<29))
}

func TestTTLFlag(t *testing.T) {
	t.Parallel()
	valid := map[string]time.Duration{
		"0":     0,
		"0s":    0,
		"90s":   90 * time.Second,
		"30m":   30 * time.Minute,
		"8760h": 8760 * time.Hour,
	}
	for in, want := range valid {
		var f ttlFlag
		require.NoError(t, f.Set(in), in)
		assert.Equal(t, want, time.Duration(f), in)
	}

	invalid := map[string]string{
		"-1s":           "it is negative; use 0 for the coordinator's default, or a duration from 1s to 8760h",
		"-99999999999h": "it is negative",
		"8760h0m1s":     "it is more than the maximum of 8760h (one year)",
		"99999999999h":  "it is more than the maximum of 8760h (one year)",
		"1.5s":          "use whole seconds, such as 90s or 30m",
		"500ms":         "use whole seconds",
		"10y":           "not a duration; use a number with a unit, such as 90s, 30m or 24h",
		"":              "not a duration",
		"60":            "not a duration",
	}
	for in, want := range invalid {
		var f ttlFlag
		err := f.Set(in)
		require.Error(t, err, in)
		assert.Contains(t, err.Error(), want, in)
		assert.Zero(t, f, "a rejected value leaves the flag unchanged")
	}

	var f ttlFlag
	assert.Equal(t, "0", f.String(), "a zero default is not shown in --help")
	require.NoError(t, f.Set("10m"))
	assert.Equal(t, "10m0s", f.String())
	assert.Equal(t, "duration", f.Type())
}
