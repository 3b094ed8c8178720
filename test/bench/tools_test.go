package bench

import (
	"math"
	"strings"
	"testing"
)

func TestParseIperfReadsReceivedThroughputOrTheError(t *testing.T) {
	for _, c := range []struct {
		name, json string
		gbit       float64
		err        string
	}{
		{"four streams summed", `{"start":{},"end":{"sum_sent":{"bits_per_second":9.1e9},"sum_received":{"bits_per_second":8.5e9}}}`, 8.5, ""},
		{"server unreachable", `{"start":{},"end":{},"error":"unable to connect to server: Connection refused"}`, 0, "Connection refused"},
		{"no data", `{"end":{"sum_received":{"bits_per_second":0}}}`, 0, "no received data"},
		{"not JSON", `iperf3: error`, 0, "iperf3 JSON"},
	} {
		t.Run(c.name, func(t *testing.T) {
			g, err := parseIperf([]byte(c.json))
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("err = %v, want one containing %q", err, c.err)
				}
				return
			}
			if err != nil || math.Abs(g-c.gbit) > 1e-9 {
				t.Fatalf("got %v, %v; want %v Gbit/s", g, err, c.gbit)
			}
		})
	}
}

const pingOutput = `PING 10.244.2.2 (10.244.2.2) 56(84) bytes of data.
64 bytes from 10.244.2.2: icmp_seq=1 ttl=62 time=0.101 ms
64 bytes from 10.244.2.2: icmp_seq=2 ttl=62 time=0.050 ms
64 bytes from 10.244.2.2: icmp_seq=3 ttl=62 time=0.060 ms
64 bytes from 10.244.2.2: icmp_seq=4 ttl=62 time=1.20 ms

--- 10.244.2.2 ping statistics ---
5 packets transmitted, 4 received, 20% packet loss, time 41ms
rtt min/avg/max/mdev = 0.050/0.352/1.200/0.490 ms
`

func TestParsePingTakesEveryReplyInMicroseconds(t *testing.T) {
	r, err := parsePing([]byte(pingOutput), 5)
	if err != nil {
		t.Fatal(err)
	}
	// replies 50, 60, 101, 1200 µs: median 80.5
	if r.Got != 4 || math.Abs(r.Median-80.5) > 1e-9 || r.P99 < 1100 {
		t.Fatalf("got %+v, want 4 replies, median 80.5 µs, p99 near 1200 µs", r)
	}
	if _, err := parsePing([]byte(pingOutput), 10); err == nil {
		t.Fatal("4 replies of 10 sent must be a failed run")
	}
}

func TestParseProcReadsMemoryAndCPU(t *testing.T) {
	m, err := parseProcStatus("Name:\tkindnet\nVmHWM:\t   30000 kB\nVmRSS:\t   20480 kB\nThreads:\t7\n")
	if err != nil || m.RSSKiB != 20480 || m.HWMKiB != 30000 {
		t.Fatalf("got %+v, %v", m, err)
	}
	if _, err := parseProcStatus("Name:\tgone\n"); err == nil {
		t.Fatal("a status without VmRSS must be an error")
	}
	// The command name may hold spaces and parentheses.
	stat := "4242 (kind (net) x) S 1 4242 4242 0 -1 4194560 900 0 0 0 250 75 0 0 20 0 7 0 100 0 0"
	cpu, err := parseProcStatCPU(stat)
	if err != nil || math.Abs(cpu-3.25) > 1e-9 {
		t.Fatalf("cpu = %v, %v; want 3.25 s (250+75 ticks)", cpu, err)
	}
}

func TestRotateStartsEachRoundWithAnotherPath(t *testing.T) {
	s := []string{"a", "b", "c"}
	for by, want := range []string{"abc", "bca", "cab", "abc"} {
		if got := strings.Join(rotate(s, by), ""); got != want {
			t.Errorf("rotate by %d = %s, want %s", by, got, want)
		}
	}
	if strings.Join(s, "") != "abc" {
		t.Fatal("rotate changed its input")
	}
}

func TestAgentLogLinesAreRecognized(t *testing.T) {
	for _, c := range []struct {
		line              string
		change, reconcile bool
	}{
		{`time=2026-11-27T05:29:33.607Z level=DEBUG msg="add 10.19.137.0/24 via 172.16.19.138 (node node-05001)" reconciler=routes cidr=10.19.137.0/24 peer=node-05001`, true, false},
		{`time=2026-11-27T05:29:33.607Z level=DEBUG msg="delete 10.19.137.0/24 via 172.16.19.138" reconciler=routes cidr=10.19.137.0/24`, true, false},
		{`time=2026-11-27T05:29:33.607Z level=DEBUG msg="replace fd00:10:0:5::/64 via fd00:172:16::6 (node node-00005)" reconciler=routes cidr=fd00:10:0:5::/64 peer=node-00005`, true, false},
		{`time=2026-11-27T05:29:33.607Z level=DEBUG msg="peer routed" peer=node-05001 cidr=10.19.137.0/24 reconciler=routes via=172.16.19.138`, false, false},
		{`time=2026-11-27T05:29:33.607Z level=INFO msg="masquerade table written" reconciler=masquerade table=kindnet`, false, false},
		{`time=2026-11-27T05:29:33.610Z level=DEBUG msg=reconciled why="source update" summary="routed 5001/5001"`, false, true},
		{`time=2026-11-27T05:29:33.610Z level=INFO msg=reconciled why="source update" summary="5001 peers routed, CNI config ready, nodes file" duration=1.2ms failed=false routes.added=2 routes.replaced=0 routes.removed=0 routes.unchanged=10000 routes.installed=10002 masquerade.changed=true cni.written=false`, false, true},
		{`time=2026-11-27T05:29:33.610Z level=INFO msg="route repaired: it was removed outside kindnet" reconciler=routes cidr=10.19.137.0/24 via=172.16.19.138 peer=node-05001`, false, false},
	} {
		if got := isRouteChange(c.line); got != c.change {
			t.Errorf("isRouteChange(%q) = %t", c.line, got)
		}
		if got := isReconcile(c.line); got != c.reconcile {
			t.Errorf("isReconcile(%q) = %t", c.line, got)
		}
	}
}
