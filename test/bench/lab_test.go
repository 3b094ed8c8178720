package bench

import (
	"context"
	"strings"
	"testing"
	"time"
)

func TestDatapathMeasuresEveryPathInBothFamiliesAndRemovesItsLab(t *testing.T) {
	env := testEnv(t)
	o := DatapathOptions{Rounds: 1, Seconds: 1, PingCount: 20, PingInterval: 10 * time.Millisecond}
	d, err := RunDatapath(context.Background(), env, o)
	if err != nil {
		t.Fatal(err)
	}
	requireGone(t, d.Lab)
	if len(d.Errors) > 0 {
		t.Fatalf("failed runs: %v", d.Errors)
	}
	paths := map[string]bool{PathNode: true, PathKindnet: true, PathSameNode: true, PathVXLAN: d.VXLAN.Available}
	if !d.VXLAN.Available && d.VXLAN.Note == "" {
		t.Fatal("no overlay and no note saying why")
	}
	for _, s := range d.Series {
		if !paths[s.Path] {
			t.Errorf("series of an unexpected path %s", s.Path)
		}
		if s.Stat.N != 1 || !(s.Stat.Median > 0) {
			t.Errorf("%s %s %s: %+v, want one positive measurement", s.Path, s.Family, s.Metric, s.Stat)
		}
	}
	if want := 4 * 2 * countTrue(paths); len(d.Series) != want {
		t.Errorf("%d series, want %d", len(d.Series), want)
	}
	for _, fam := range Families {
		if c, ok := d.Compare(PathKindnet, PathNode, fam, MetricTCP1); !ok || !c.Stat.Valid() {
			t.Errorf("no kindnet/node throughput ratio for %s", fam)
		}
	}
}

func countTrue(m map[string]bool) int {
	n := 0
	for _, v := range m {
		if v {
			n++
		}
	}
	return n
}

func TestBootFromCacheIsReadyWithEveryRouteAndTheCNIConfig(t *testing.T) {
	env := testEnv(t)
	o := ControlOptions{Sizes: []int{0, 50}, Repeats: 2, Settle: Dur(100 * time.Millisecond), PluginRuns: 2}
	c, err := RunControlPlane(context.Background(), env, o)
	if err != nil {
		t.Fatal(err)
	}
	requireGone(t, c.Lab)
	if len(c.Errors) > 0 || len(c.Boot) != 2 {
		t.Fatalf("boots %+v, errors %v", c.Boot, c.Errors)
	}
	for _, b := range c.Boot {
		if b.ReadyMs.N != 2 || !b.AllInPlace || !(b.RSSMiB.Median > 1) {
			t.Errorf("%d peers: %+v", b.Peers, b)
		}
		if wantFloor := b.Peers > 0; b.FloorMs.Valid() != wantFloor || b.OverFloor.Valid() != wantFloor {
			t.Errorf("%d peers: route-install floor %+v, ratio %+v", b.Peers, b.FloorMs, b.OverFloor)
		}
		for _, n := range b.RoutesAtReady {
			if n != 2*b.Peers {
				t.Errorf("%d peers: %d routes at READY, want %d", b.Peers, n, 2*b.Peers)
			}
		}
	}
	if !c.WrapperMs.Valid() {
		t.Error("the cost of ip netns exec was not measured")
	}
	if s := c.PluginPeakMiB; s.N != 2 || !(s.Min > 1) {
		t.Errorf("CNI plugin ADD peak RSS: %+v", s)
	}
}

func TestOnePeerChangedShowsAsItsTwoRoutesOnlyAndEventsCostCPU(t *testing.T) {
	env := testEnv(t)
	o := ControlOptions{ChangePeers: 40, ChangeRepeats: 2, EventRewrites: 2, EventsPerRewrite: 5, IdleWindow: Dur(500 * time.Millisecond)}
	c, err := RunControlPlane(context.Background(), env, o)
	if err != nil {
		t.Fatal(err)
	}
	requireGone(t, c.Lab)
	ch := c.Change
	if len(c.Errors) > 0 || ch == nil || len(ch.Runs) != 2 {
		t.Fatalf("change %+v, errors %v", ch, c.Errors)
	}
	for _, r := range ch.Runs {
		if r.RouteEvents != 2 || r.LoggedChanges != 2 {
			t.Errorf("%s: %d route events and %d logged changes, want 2 each (one route per family)", r.Kind, r.RouteEvents, r.LoggedChanges)
		}
		if !(r.ProcessMs > 0 && r.ProcessMs <= r.ConvergeMs) {
			t.Errorf("%s: %.1f ms after the agent read the file, %.1f ms after the change", r.Kind, r.ProcessMs, r.ConvergeMs)
		}
	}
	if ch.Runs[0].Kind != "add" || ch.Runs[1].Kind != "remove" {
		t.Errorf("runs %+v, want an add then a remove", ch.Runs)
	}
	ev := c.Events
	if ev == nil || ev.Events != 10 || ev.RewriteMs.N != 2 || ev.CPUSec < 0 {
		t.Fatalf("events: %+v", ev)
	}
}

func TestInterruptedRunRemovesItsLab(t *testing.T) {
	env := testEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	log := env.Log
	env.Log = func(f string, a ...any) {
		log(f, a...)
		if strings.Contains(f, "datapath round") { // the lab is up, the servers run
			cancel()
		}
	}
	d, err := RunDatapath(ctx, env, DatapathOptions{Rounds: 5, Seconds: 5, PingCount: 100, PingInterval: 10 * time.Millisecond})
	if err == nil {
		t.Fatal("an interrupted run must say so")
	}
	requireGone(t, d.Lab)
}
