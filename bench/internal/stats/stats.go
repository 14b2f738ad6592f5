// Package stats formats benchmark figures: medians with their spread.
package stats

import (
	"fmt"
	"math"
	"sort"
)

// Median of v (NaN when empty).
func Median(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return s[len(s)/2]
}

// Mean of v (NaN when empty).
func Mean(v []float64) float64 {
	sum := 0.0
	for _, x := range v {
		sum += x
	}
	return sum / float64(len(v))
}

// Spread formats the median of v with its min–max, or "-" when empty.
func Spread(v []float64) string { return spread(v, Num) }

// SpreadFixed is Spread with a fixed number of decimals, for figures
// whose differences are much smaller than their size (RTTs near 200 ms
// that differ by tenths of a millisecond).
func SpreadFixed(v []float64, decimals int) string {
	return spread(v, func(f float64) string { return fmt.Sprintf("%.*f", decimals, f) })
}

func spread(v []float64, num func(float64) string) string {
	if len(v) == 0 {
		return "-"
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return fmt.Sprintf("%s (%s–%s)", num(s[len(s)/2]), num(s[0]), num(s[len(s)-1]))
}

// Num prints a figure with precision suited to its size.
func Num(f float64) string {
	switch {
	case math.Abs(f) >= 100:
		return fmt.Sprintf("%.0f", f)
	case math.Abs(f) >= 10:
		return fmt.Sprintf("%.1f", f)
	}
	return fmt.Sprintf("%.2f", f)
}
