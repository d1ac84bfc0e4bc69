package bench

import (
	"fmt"
	"math"
	"slices"
	"time"
)

// Summary is the median and range of one figure over several runs.
type Summary struct {
	N      int
	Median float64
	Min    float64
	Max    float64
}

// Summarize returns the summary of values; the zero Summary when values
// is empty. values is not modified.
func Summarize(values []float64) Summary {
	if len(values) == 0 {
		return Summary{}
	}
	s := slices.Clone(values)
	slices.Sort(s)
	return Summary{N: len(s), Median: quantileSorted(s, 0.5), Min: s[0], Max: s[len(s)-1]}
}

// Quantile returns the q-quantile (0 ≤ q ≤ 1) of values by linear
// interpolation between the closest ranks; NaN when values is empty.
func Quantile(values []float64, q float64) float64 {
	if len(values) == 0 {
		return math.NaN()
	}
	s := slices.Clone(values)
	slices.Sort(s)
	return quantileSorted(s, q)
}

func quantileSorted(s []float64, q float64) float64 {
	pos := q * float64(len(s)-1)
	lo := int(math.Floor(pos))
	hi := int(math.Ceil(pos))
	return s[lo] + (s[hi]-s[lo])*(pos-float64(lo))
}

// DurationQuantile returns the q-quantile of ds; 0 when ds is empty.
func DurationQuantile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	f := make([]float64, len(ds))
	for i, d := range ds {
		f[i] = float64(d)
	}
	return time.Duration(Quantile(f, q))
}

// Format prints the summary with unit after each number, as
// "median (min–max)", using format for the numbers.
func (s Summary) Format(format, unit string) string {
	if s.N == 0 {
		return "n/a"
	}
	m := fmt.Sprintf(format, s.Median) + unit
	if s.N == 1 {
		return m
	}
	return fmt.Sprintf("%s (%s–%s)", m,
		fmt.Sprintf(format, s.Min), fmt.Sprintf(format, s.Max))
}
