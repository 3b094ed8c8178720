package cni

import "testing"

func TestIsHostIfNameKnowsExactlyTheNamesHostIfNameGives(t *testing.T) {
	for _, owner := range []string{"kindnet/abc/eth0", "kindnet/0123456789abcdef/net1", ""} {
		if n := HostIfName(owner); !IsHostIfName(n) {
			t.Errorf("IsHostIfName(%q) = false for HostIfName(%q)", n, owner)
		}
	}
	for _, n := range []string{"eth0", "kn", "kn0123456789a", "kn0123456789abc", "kn0123456789xy", "KN0123456789ab", "veth0123456789"} {
		if IsHostIfName(n) {
			t.Errorf("IsHostIfName(%q) = true", n)
		}
	}
}
