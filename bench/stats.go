package main

import (
	"fmt"
	"math"
	"slices"
	"time"
)

// samples is a set of measured durations.
type samples []time.Duration

// pct returns the p-th percentile (0 < p <= 100), nearest rank.
func (s samples) pct(p float64) time.Duration {
	if len(s) == 0 {
		return 0
	}
	sorted := slices.Clone(s)
	slices.Sort(sorted)
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	return sorted[max(rank, 1)-1]
}

// mean returns the arithmetic mean.
func (s samples) mean() time.Duration {
	if len(s) == 0 {
		return 0
	}
	var sum time.Duration
	for _, d := range s {
		sum += d
	}
	return sum / time.Duration(len(s))
}

// fmtDur formats d with three significant digits in ns, µs, ms or s.
func fmtDur(d time.Duration) string { return fmtNs(float64(d)) }

// fmtNs formats a duration given in (possibly fractional) nanoseconds.
func fmtNs(ns float64) string {
	switch {
	case ns < 1e3:
		return sig3(ns) + " ns"
	case ns < 1e6:
		return sig3(ns/1e3) + " µs"
	case ns < 1e9:
		return sig3(ns/1e6) + " ms"
	default:
		return sig3(ns/1e9) + " s"
	}
}

// sig3 formats v with three significant digits (at least the integer part).
func sig3(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

// fmtRatio formats a ratio such as 1234.5 as "1,235×".
func fmtRatio(r float64) string {
	if r >= 10 {
		return commas(int64(math.Round(r))) + "×"
	}
	return fmt.Sprintf("%.2f×", r)
}

// commas formats n with thousands separators.
func commas(n int64) string {
	s := fmt.Sprint(n)
	if n < 0 {
		return "-" + commas(-n)
	}
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}
