package bench

import (
	"fmt"
	"image/color"
	"math"
	"path/filepath"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// Chart files, next to the Markdown report.
const (
	chartThroughput = "latest-throughput.png"
	chartRTT        = "latest-rtt.png"
	chartBoot       = "latest-boot.png"
	chartRSS        = "latest-rss.png"
)

// barSeries is one colour of bars: one Stat per group.
type barSeries struct {
	name  string
	stats []Stat
}

// refLine is a dashed horizontal line (a goal).
type refLine struct {
	name string
	y    float64
}

// bars draws the median of each Stat as a bar spanning [x-w/2, x+w/2] in
// data units, so error bars placed at x line up whatever the canvas size.
type bars struct {
	xs, ys []float64
	w      float64
	color  color.Color
}

func (b *bars) Plot(c draw.Canvas, plt *plot.Plot) {
	trX, trY := plt.Transforms(&c)
	for i := range b.xs {
		if math.IsNaN(b.ys[i]) {
			continue
		}
		x0, x1 := trX(b.xs[i]-b.w/2), trX(b.xs[i]+b.w/2)
		y0, y1 := trY(0), trY(b.ys[i])
		pts := []vg.Point{{X: x0, Y: y0}, {X: x0, Y: y1}, {X: x1, Y: y1}, {X: x1, Y: y0}}
		c.FillPolygon(b.color, c.ClipPolygonXY(pts))
	}
}

func (b *bars) DataRange() (xmin, xmax, ymin, ymax float64) {
	xmin, xmax, ymin, ymax = math.Inf(1), math.Inf(-1), 0, 0
	for i := range b.xs {
		xmin, xmax = math.Min(xmin, b.xs[i]-b.w/2), math.Max(xmax, b.xs[i]+b.w/2)
		if !math.IsNaN(b.ys[i]) {
			ymax = math.Max(ymax, b.ys[i])
		}
	}
	return
}

// Thumbnail draws the legend swatch.
func (b *bars) Thumbnail(c *draw.Canvas) {
	pts := []vg.Point{{X: c.Min.X, Y: c.Min.Y}, {X: c.Min.X, Y: c.Max.Y}, {X: c.Max.X, Y: c.Max.Y}, {X: c.Max.X, Y: c.Min.Y}}
	c.FillPolygon(b.color, c.ClipPolygonY(pts))
}

// errRange draws min–max whiskers around each median.
type errRange struct {
	xs    []float64
	stats []Stat
}

func (e errRange) Len() int { return len(e.xs) }
func (e errRange) XY(i int) (float64, float64) {
	return e.xs[i], e.stats[i].Median
}
func (e errRange) YError(i int) (float64, float64) {
	s := e.stats[i]
	return s.Median - s.Min, s.Max - s.Median
}

// groupedBars draws groups of bars (one bar per series in each group)
// with min–max whiskers and optional goal lines, into a small PNG.
func groupedBars(path, title, ylabel string, groups []string, series []barSeries, refs []refLine) error {
	p := plot.New()
	p.Title.Text = title
	p.Y.Label.Text = ylabel
	p.Y.Min = 0
	p.Legend.Top = true
	p.Legend.Left = true
	width := 0.8 / float64(len(series))
	var ticks []plot.Tick
	for g, name := range groups {
		ticks = append(ticks, plot.Tick{Value: float64(g), Label: name})
	}
	p.X.Tick.Marker = plot.ConstantTicks(ticks)
	ymax := 0.0
	for s, ser := range series {
		b := &bars{w: width * 0.9, color: plotutil.Color(s)}
		var ex []float64
		var es []Stat
		for g := range groups {
			x := float64(g) + (float64(s)-float64(len(series)-1)/2)*width
			st := Stat{Median: math.NaN()}
			if g < len(ser.stats) {
				st = ser.stats[g]
			}
			b.xs, b.ys = append(b.xs, x), append(b.ys, st.Median)
			if st.Valid() {
				ex, es = append(ex, x), append(es, st)
				ymax = math.Max(ymax, st.Max)
			}
		}
		p.Add(b)
		p.Legend.Add(ser.name, b)
		if len(ex) > 0 {
			eb, err := plotter.NewYErrorBars(errRange{ex, es})
			if err != nil {
				return err
			}
			eb.CapWidth = vg.Points(3)
			p.Add(eb)
		}
	}
	for i, r := range refs {
		y := r.y
		ln, err := plotter.NewLine(plotter.XYs{{X: -0.5, Y: y}, {X: float64(len(groups)) - 0.5, Y: y}})
		if err != nil {
			return err
		}
		ln.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
		ln.Color = color.RGBA{R: 200, A: 255}
		if i%2 == 1 {
			ln.Color = color.RGBA{R: 120, G: 60, A: 255}
		}
		p.Add(ln)
		p.Legend.Add(r.name, ln)
		ymax = math.Max(ymax, y)
	}
	p.X.Min, p.X.Max = -0.5, float64(len(groups))-0.5
	p.Y.Max = ymax * 1.35 // room for the legend
	return p.Save(6.4*vg.Inch, 3.4*vg.Inch, path)
}

// WriteCharts draws the report's charts into dir and records their names.
func (r *Report) WriteCharts(dir string) error {
	r.Charts = nil
	if d := r.Datapath; d != nil && len(d.Series) > 0 {
		var groups []string
		for _, p := range d.Paths {
			groups = append(groups, shortPath(p.Key))
		}
		var tput, rtt []barSeries
		for _, m := range []string{MetricTCP1, MetricTCP4} {
			for _, fam := range Families {
				ser := barSeries{name: fam + ", " + metricName(m)}
				for _, p := range d.Paths {
					s, _ := d.Find(p.Key, fam, m)
					ser.stats = append(ser.stats, s.Stat)
				}
				tput = append(tput, ser)
			}
		}
		for _, fam := range Families {
			ser := barSeries{name: fam}
			for _, p := range d.Paths {
				s, _ := d.Find(p.Key, fam, MetricRTT)
				ser.stats = append(ser.stats, s.Stat)
			}
			rtt = append(rtt, ser)
		}
		if err := groupedBars(filepath.Join(dir, chartThroughput), "TCP throughput (iperf3), median with min–max", "Gbit/s", groups, tput, nil); err != nil {
			return fmt.Errorf("chart %s: %w", chartThroughput, err)
		}
		if err := groupedBars(filepath.Join(dir, chartRTT), "Round-trip time (ping every 10 ms), median with min–max", "µs", groups, rtt, nil); err != nil {
			return fmt.Errorf("chart %s: %w", chartRTT, err)
		}
		r.Charts = append(r.Charts, chartThroughput, chartRTT)
	}
	if c := r.Control; c != nil && len(c.Boot) > 0 {
		var groups []string
		boot := barSeries{name: "boot to READY from the cache"}
		floor := barSeries{name: "kernel floor: ip -batch of the same routes"}
		rss := barSeries{name: "RSS after sync"}
		later := barSeries{name: fmt.Sprintf("RSS %s later", time.Duration(c.Options.RSSAfter))}
		hasLater := false
		for _, b := range c.Boot {
			groups = append(groups, fmt.Sprintf("%d peers", b.Peers))
			boot.stats = append(boot.stats, b.ReadyMs)
			floor.stats = append(floor.stats, b.FloorMs)
			rss.stats = append(rss.stats, b.RSSMiB)
			ls := Stat{Median: math.NaN()}
			if b.RSSLaterMiB != nil {
				ls, hasLater = Summarize("MiB", []float64{*b.RSSLaterMiB}), true
			}
			later.stats = append(later.stats, ls)
		}
		if err := groupedBars(filepath.Join(dir, chartBoot), "Agent boot to READY from the cache", "ms", groups, []barSeries{boot, floor},
			[]refLine{{fmt.Sprintf("goal at %d peers: %.0f ms", goalBootPeers, goalBootMs), goalBootMs}}); err != nil {
			return fmt.Errorf("chart %s: %w", chartBoot, err)
		}
		mem := []barSeries{rss}
		if hasLater {
			mem = append(mem, later)
		}
		if err := groupedBars(filepath.Join(dir, chartRSS), "Agent resident memory (VmRSS)", "MiB", groups, mem,
			[]refLine{{fmt.Sprintf("goal idle: %.0f MiB", goalRSSIdleMiB), goalRSSIdleMiB}, {fmt.Sprintf("goal at %d peers: %.0f MiB", goalRSSPeers, goalRSSPeersMiB), goalRSSPeersMiB}}); err != nil {
			return fmt.Errorf("chart %s: %w", chartRSS, err)
		}
		r.Charts = append(r.Charts, chartBoot, chartRSS)
	}
	return nil
}

func shortPath(key string) string {
	switch key {
	case PathNode:
		return "node ↔ node"
	case PathKindnet:
		return "pod ↔ pod (kindnet)"
	case PathSameNode:
		return "pod ↔ pod, same node"
	case PathVXLAN:
		return "pod ↔ pod (VXLAN)"
	}
	return key
}
