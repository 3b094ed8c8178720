package bench

import (
	"encoding/json"
	"math"
	"slices"
)

// Stat is one figure: the median of repeated measurements with their
// minimum and maximum, and the measurements themselves.
type Stat struct {
	Median  float64   `json:"median"`
	Min     float64   `json:"min"`
	Max     float64   `json:"max"`
	N       int       `json:"n"`
	Unit    string    `json:"unit"`
	Samples []float64 `json:"samples"`
}

// Summarize turns samples into a Stat. NaN samples (failed runs) are
// dropped; an empty Stat has N == 0.
func Summarize(unit string, samples []float64) Stat {
	var ok []float64
	for _, s := range samples {
		if !math.IsNaN(s) {
			ok = append(ok, s)
		}
	}
	st := Stat{Unit: unit, N: len(ok), Samples: ok}
	if len(ok) == 0 {
		st.Median, st.Min, st.Max = math.NaN(), math.NaN(), math.NaN()
		return st
	}
	sorted := slices.Clone(ok)
	slices.Sort(sorted)
	st.Min, st.Max = sorted[0], sorted[len(sorted)-1]
	st.Median = Percentile(sorted, 50)
	return st
}

// Valid reports whether the Stat holds at least one measurement.
func (s Stat) Valid() bool { return s.N > 0 }

// Percentile returns the p-th percentile (0..100) of sorted values, by
// linear interpolation between the closest ranks; NaN for no values.
func Percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	if len(sorted) == 1 {
		return sorted[0]
	}
	rank := p / 100 * float64(len(sorted)-1)
	lo := int(math.Floor(rank))
	hi := int(math.Ceil(rank))
	frac := rank - float64(lo)
	return sorted[lo] + (sorted[hi]-sorted[lo])*frac
}

// Pairwise applies f to the i-th samples of a and b, the two things
// measured alternately in round i, and keeps rounds where both succeeded.
func Pairwise(a, b []float64, f func(x, y float64) float64) []float64 {
	n := min(len(a), len(b))
	out := make([]float64, 0, n)
	for i := range n {
		if math.IsNaN(a[i]) || math.IsNaN(b[i]) {
			continue
		}
		out = append(out, f(a[i], b[i]))
	}
	return out
}

// Ratio is x/y; Diff is x-y.
func Ratio(x, y float64) float64 {
	if y == 0 {
		return math.NaN()
	}
	return x / y
}

func Diff(x, y float64) float64 { return x - y }

// Floats are per-round values where NaN marks a failed run; JSON shows
// NaN as null.
type Floats []float64

// MarshalJSON writes NaN as null.
func (fs Floats) MarshalJSON() ([]byte, error) {
	out := make([]*float64, len(fs))
	for i := range fs {
		if !math.IsNaN(fs[i]) {
			out[i] = &fs[i]
		}
	}
	return json.Marshal(out)
}

// UnmarshalJSON reads null as NaN.
func (fs *Floats) UnmarshalJSON(b []byte) error {
	var in []*float64
	if err := json.Unmarshal(b, &in); err != nil {
		return err
	}
	*fs = make(Floats, len(in))
	for i, v := range in {
		(*fs)[i] = math.NaN()
		if v != nil {
			(*fs)[i] = *v
		}
	}
	return nil
}

type statJSON struct {
	Median  *float64  `json:"median"`
	Min     *float64  `json:"min"`
	Max     *float64  `json:"max"`
	N       int       `json:"n"`
	Unit    string    `json:"unit"`
	Samples []float64 `json:"samples"`
}

func numPtr(f float64) *float64 {
	if math.IsNaN(f) {
		return nil
	}
	return &f
}

func ptrNum(p *float64) float64 {
	if p == nil {
		return math.NaN()
	}
	return *p
}

// MarshalJSON writes an empty Stat's NaN figures as null.
func (s Stat) MarshalJSON() ([]byte, error) {
	return json.Marshal(statJSON{numPtr(s.Median), numPtr(s.Min), numPtr(s.Max), s.N, s.Unit, s.Samples})
}

// UnmarshalJSON reads null figures as NaN.
func (s *Stat) UnmarshalJSON(b []byte) error {
	var j statJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*s = Stat{Median: ptrNum(j.Median), Min: ptrNum(j.Min), Max: ptrNum(j.Max), N: j.N, Unit: j.Unit, Samples: j.Samples}
	return nil
}
