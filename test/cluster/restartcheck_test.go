package cluster

import (
	"net/netip"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func runningPod(name string, hostNet bool, ips ...string) corev1.Pod {
	p := corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name}}
	p.Spec.HostNetwork = hostNet
	p.Status.Phase = corev1.PodRunning
	for _, ip := range ips {
		p.Status.PodIPs = append(p.Status.PodIPs, corev1.PodIP{IP: ip})
	}
	return p
}

func rec(id string, ips ...string) ipamRecord {
	r := ipamRecord{ContainerID: id, IfName: "eth0"}
	for _, ip := range ips {
		r.IPs = append(r.IPs, netip.MustParseAddr(ip))
	}
	return r
}

// The address check of the node-restart scenario finds each kind of
// mismatch, and none when pods, sandboxes and records agree.
func TestAddressProblems(t *testing.T) {
	pods := []corev1.Pod{runningPod("a", false, "10.244.2.2", "fd00:10:244:2::2"), runningPod("b", false, "10.244.2.3"),
		runningPod("host", true, "192.168.100.12")}
	recs := []ipamRecord{rec("sa", "10.244.2.2", "fd00:10:244:2::2"), rec("sb", "10.244.2.3")}
	sandboxes := map[string]bool{"sa": true, "sb": true}
	if got, n := addressProblems(recs, sandboxes, pods); len(got) != 0 || n != 3 {
		t.Fatalf("consistent state: got %v, %d addresses; want none, 3", got, n)
	}
	for _, tc := range []struct {
		name      string
		recs      []ipamRecord
		sandboxes map[string]bool
		pods      []corev1.Pod
		want      string
	}{
		{"stale record", append(recs, rec("dead", "10.244.2.9")), sandboxes, pods, "stale IPAM record dead/eth0"},
		{"sandbox without record", recs, map[string]bool{"sa": true, "sb": true, "sc": true}, pods, "running sandbox sc has no IPAM record"},
		{"address recorded twice", append(recs[:1:1], rec("sb", "10.244.2.2")), sandboxes, pods[:1], "10.244.2.2 recorded for sa and sb"},
		{"address held by two pods", recs, sandboxes, append(pods, runningPod("c", false, "10.244.2.3")), "10.244.2.3 held by pods"},
		{"pod address not recorded", recs[:1], map[string]bool{"sa": true}, pods, "pod ns/b's 10.244.2.3 not in the IPAM store"},
	} {
		got, _ := addressProblems(tc.recs, tc.sandboxes, tc.pods)
		if !strings.Contains(strings.Join(got, "; "), tc.want) {
			t.Errorf("%s: got %v, want a problem containing %q", tc.name, got, tc.want)
		}
	}
}

func TestUnescapeMountinfo(t *testing.T) {
	for in, want := range map[string]string{`/run/a\040b`: "/run/a b", "/run/plain": "/run/plain", `/x\134y`: `/x\y`, `/end\04`: `/end\04`} {
		if got := unescapeMountinfo(in); got != want {
			t.Errorf("unescapeMountinfo(%q) = %q, want %q", in, got, want)
		}
	}
}
