package bench

import (
	"encoding/json"
	"math"
	"testing"
)

func TestSummarizeGivesMedianMinMaxAndDropsFailedRuns(t *testing.T) {
	nan := math.NaN()
	for _, c := range []struct {
		name          string
		in            []float64
		n             int
		med, min, max float64
	}{
		{"odd count", []float64{3, 1, 2}, 3, 2, 1, 3},
		{"even count interpolates", []float64{4, 1, 3, 2}, 4, 2.5, 1, 4},
		{"one value", []float64{7}, 1, 7, 7, 7},
		{"failed runs dropped", []float64{nan, 5, nan, 1}, 2, 3, 1, 5},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := Summarize("x", c.in)
			if s.N != c.n || s.Median != c.med || s.Min != c.min || s.Max != c.max || !s.Valid() {
				t.Fatalf("Summarize(%v) = %+v, want n=%d median=%v min=%v max=%v", c.in, s, c.n, c.med, c.min, c.max)
			}
		})
	}
	if s := Summarize("x", []float64{nan}); s.Valid() || !math.IsNaN(s.Median) {
		t.Fatalf("all runs failed: got %+v, want an invalid Stat", s)
	}
}

func TestPercentileInterpolatesBetweenRanks(t *testing.T) {
	v := []float64{10, 20, 30, 40, 50, 60, 70, 80, 90, 100}
	for _, c := range []struct{ p, want float64 }{{0, 10}, {50, 55}, {100, 100}, {99, 99.1}} {
		if got := Percentile(v, c.p); math.Abs(got-c.want) > 1e-9 {
			t.Errorf("p%v = %v, want %v", c.p, got, c.want)
		}
	}
}

func TestPairwiseComparesOnlyRoundsWhereBothRan(t *testing.T) {
	nan := math.NaN()
	a := []float64{9, nan, 8, 6}
	b := []float64{10, 10, nan, 6}
	got := Pairwise(a, b, Ratio)
	if len(got) != 2 || got[0] != 0.9 || got[1] != 1 {
		t.Fatalf("Pairwise ratio = %v, want [0.9 1]", got)
	}
	if d := Pairwise([]float64{12}, []float64{10}, Diff); d[0] != 2 {
		t.Fatalf("Pairwise diff = %v", d)
	}
}

func TestStatAndRoundsKeepFailedRunsAsNullInJSON(t *testing.T) {
	in := Series{Stat: Summarize("ms", []float64{1, 2}), Rounds: Floats{1, math.NaN(), 2}}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	var out Series
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
	if out.Stat.Median != 1.5 || len(out.Rounds) != 3 || !math.IsNaN(out.Rounds[1]) || out.Rounds[2] != 2 {
		t.Fatalf("round trip gave %+v from %s", out, b)
	}
	b, err = json.Marshal(Summarize("ms", nil))
	if err != nil {
		t.Fatal(err)
	}
	var empty Stat
	if err := json.Unmarshal(b, &empty); err != nil || empty.Valid() || !math.IsNaN(empty.Median) {
		t.Fatalf("an empty Stat came back as %+v (%v) from %s", empty, err, b)
	}
}
