package cli

import (
	"testing"

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
