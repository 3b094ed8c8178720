package cni

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/utils"

	"github.com/kindnet-dev/kindnet/internal/netnstest"
)

const goodID = "3f2a9c0d1e4b5a6978c0d1e2f3a4b5c6d7e8f90112233445566778899aabbccd" // 64 hex, as runtimes make them

func TestValidateArgsRefusesWhatTheKernelOrTheSpecWouldWithCode4(t *testing.T) {
	long := strings.Repeat("a", 300)
	cases := []struct {
		name, id, ifname string
		addOK, delOK     bool
		mention          string // the variable the message must name
	}{
		{"runtime's usual", goodID, "eth0", true, true, ""},
		{"multus style", goodID, "net1", true, true, ""},
		{"vlan style", goodID, "eth0.100", true, true, ""},
		{"15 bytes", goodID, "abcdefghijklmno", true, true, ""},
		{"16 bytes", goodID, "abcdefghijklmnop", false, false, "CNI_IFNAME"},
		{"all", goodID, "all", false, true, "CNI_IFNAME"},
		{"default", goodID, "default", false, true, "CNI_IFNAME"},
		{"wildcard", goodID, "*", false, true, "CNI_IFNAME"},
		{"option-like", goodID, "-x", false, true, "CNI_IFNAME"},
		{"name template", goodID, "eth%d", false, true, "CNI_IFNAME"},
		{"at sign", goodID, "eth0@if3", false, true, "CNI_IFNAME"},
		{"non-ASCII", goodID, "éth0", false, true, "CNI_IFNAME"},
		{"control character", goodID, "eth\x1b0", false, true, "CNI_IFNAME"},
		{"NBSP byte the kernel calls space", goodID, "eth\xa00", false, true, "CNI_IFNAME"},
		{"slash", goodID, "a/b", false, false, "CNI_IFNAME"},
		{"dot-dot path", goodID, "../all", false, false, "CNI_IFNAME"},
		{"colon", goodID, "eth0:1", false, false, "CNI_IFNAME"},
		{"space", goodID, "eth 0", false, false, "CNI_IFNAME"},
		{"tab", goodID, "eth\t0", false, false, "CNI_IFNAME"},
		{"newline", goodID, "eth0\n", false, false, "CNI_IFNAME"},
		{"dot", goodID, ".", false, false, "CNI_IFNAME"},
		{"dot dot", goodID, "..", false, false, "CNI_IFNAME"},
		{"empty ifname", goodID, "", false, false, "CNI_IFNAME"},
		{"300-byte container ID", long, "eth0", false, true, "CNI_CONTAINERID"},
		{"container ID with slash", "abc/../x", "eth0", false, false, "CNI_CONTAINERID"},
		{"container ID with space", "abc def", "eth0", false, false, "CNI_CONTAINERID"},
		{"container ID starting with -", "-abc", "eth0", false, false, "CNI_CONTAINERID"},
		{"container ID with a colon", "abc:1", "eth0", false, false, "CNI_CONTAINERID"},
		{"empty container ID", "", "eth0", false, false, "CNI_CONTAINERID"},
		{"longest container ID that fits", strings.Repeat("b", maxTag-len("kindnet//eth0")), "eth0", true, true, ""},
		{"one byte more", strings.Repeat("b", maxTag-len("kindnet//eth0")+1), "eth0", false, true, "CNI_CONTAINERID"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, cmd := range []string{"ADD", "CHECK", "DEL"} {
				want := c.addOK
				if cmd == "DEL" {
					want = c.delOK
				}
				e := validateArgs(cmd, "kindnet", c.id, c.ifname)
				if want {
					if e != nil {
						t.Errorf("%s: refused: %v", cmd, e)
					}
					continue
				}
				if e == nil {
					t.Errorf("%s CNI_CONTAINERID=%q CNI_IFNAME=%q accepted", cmd, c.id, c.ifname)
					continue
				}
				if e.Code != types.ErrInvalidEnvironmentVariables || !strings.Contains(e.Msg, c.mention) {
					t.Errorf("%s: error %d %q; want code 4 naming %s", cmd, e.Code, e.Msg, c.mention)
				}
			}
		})
	}
}

// The pre-check in Main sees the same rules, and leaves missing variables
// and other commands to skel.
func TestPreValidateEnvNamesTheVariableBeforeSkel(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	if e := preValidateEnv(env(map[string]string{"CNI_COMMAND": "ADD", "CNI_CONTAINERID": goodID, "CNI_IFNAME": "abcdefghijklmnop"})); e == nil || !strings.Contains(e.Msg, "CNI_IFNAME") {
		t.Errorf("16-byte ifname: %v", e)
	}
	if e := preValidateEnv(env(map[string]string{"CNI_COMMAND": "DEL", "CNI_CONTAINERID": goodID, "CNI_IFNAME": "all"})); e != nil {
		t.Errorf("DEL of ifname all: %v", e)
	}
	if e := preValidateEnv(env(map[string]string{"CNI_COMMAND": "ADD", "CNI_CONTAINERID": goodID})); e != nil {
		t.Errorf("missing CNI_IFNAME must be skel's to report: %v", e)
	}
	if e := preValidateEnv(env(map[string]string{"CNI_COMMAND": "GC", "CNI_CONTAINERID": "a b", "CNI_IFNAME": "*"})); e != nil {
		t.Errorf("GC does not use the variables: %v", e)
	}
}

// kernelValidName is the kernel's dev_valid_name (net/core/dev.c), with
// the kernel's isspace (lib/ctype.c: also byte 0xA0).
func kernelValidName(name string) bool {
	if name == "" || len(name) >= 16 || name == "." || name == ".." {
		return false
	}
	for i := 0; i < len(name); i++ {
		switch b := name[i]; b {
		case '/', ':', ' ', '\t', '\n', '\v', '\f', '\r', 0xa0, 0:
			return false
		}
	}
	return true
}

// Whatever ADD accepts, the kernel takes as a name of its own (no
// template, not one of the sysctl directories for every interface, a
// single path element under /proc/sys/net/*/conf), and DEL accepts it
// too; DEL refuses exactly what the CNI library refuses; every refusal is
// code 4 naming the variable.
func FuzzValidateArgs(f *testing.F) {
	for _, s := range [][2]string{{goodID, "eth0"}, {goodID, "all"}, {"a", "-x"}, {strings.Repeat("c", 300), "*"},
		{"x", "eth%d"}, {"x", "a/b"}, {"x", ".."}, {"x", "eth\xa00"}, {"-x", "eth0"}, {"x", "abcdefghijklmnop"}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, id, ifname string) {
		add := validateArgs("ADD", "kindnet", id, ifname)
		del := validateArgs("DEL", "kindnet", id, ifname)
		for _, e := range []*types.Error{add, del} {
			if e != nil && (e.Code != types.ErrInvalidEnvironmentVariables || !strings.Contains(e.Msg, "CNI_")) {
				t.Fatalf("error %d %q: want code 4 naming the variable", e.Code, e.Msg)
			}
		}
		if add == nil {
			if del != nil {
				t.Fatalf("ADD accepts %q/%q, DEL refuses it: %v", id, ifname, del)
			}
			if !kernelValidName(ifname) || ifname == "all" || ifname == "default" || strings.ContainsAny(ifname, "%*?@") ||
				strings.HasPrefix(ifname, "-") || filepath.Base(filepath.Join("/proc/sys/net/ipv4/conf", ifname)) != ifname {
				t.Fatalf("ADD accepts CNI_IFNAME=%q", ifname)
			}
			if len("kindnet/"+id+"/"+ifname) > maxTag {
				t.Fatalf("ADD accepts a %d-byte tag", len("kindnet/"+id+"/"+ifname))
			}
		}
		libOK := id != "" && ifname != "" && utils.ValidateContainerID(id) == nil && utils.ValidateInterfaceName(ifname) == nil
		if (del == nil) != libOK {
			t.Fatalf("DEL %q/%q: refused=%v, the CNI library refuses=%v", id, ifname, del != nil, !libOK)
		}
	})
}

// Refused through the real binary, as a runtime executes it: each bad
// CNI_IFNAME or CNI_CONTAINERID is error 4 naming the variable, and
// neither the node nor the pod keeps anything (no link, address record,
// hostPort rule; the pod's settings for every interface untouched). DEL
// of the same names is best effort: it succeeds for what an older ADD may
// have accepted and refuses only what the CNI library refuses.
func TestRefusedAddLeavesNothingBehind(t *testing.T) {
	netnstest.RequireRoot(t)
	n := newNode(t)
	pod := netnstest.New(t)
	conf := n.conf("1.0.0", ModePTP, map[string]any{"runtimeConfig": map[string]any{
		"portMappings": []map[string]any{{"hostPort": 8080, "containerPort": 80}}}})
	dadAll := readSysctl(t, pod, "ipv6/conf/all/accept_dad")
	dadDefault := readSysctl(t, pod, "ipv6/conf/default/accept_dad")
	cases := []struct {
		id, ifname string
		mention    string
		delOK      bool
	}{
		{goodID, "all", "CNI_IFNAME", true},
		{goodID, "default", "CNI_IFNAME", true},
		{goodID, "*", "CNI_IFNAME", true},
		{goodID, "-x", "CNI_IFNAME", true},
		{goodID, "eth%d", "CNI_IFNAME", true},
		{goodID, "a/b", "CNI_IFNAME", false},
		{goodID, "eth 0", "CNI_IFNAME", false},
		{goodID, "..", "CNI_IFNAME", false},
		{goodID, "abcdefghijklmnop", "CNI_IFNAME", false},
		{strings.Repeat("c", 300), "eth0", "CNI_CONTAINERID", true},
		{"c/../d", "eth0", "CNI_CONTAINERID", false},
	}
	for _, c := range cases {
		_, e := n.run(call{verb: "ADD", id: c.id, netns: pod.Path(), ifname: c.ifname, conf: conf})
		if e == nil {
			t.Errorf("ADD CNI_CONTAINERID=%.20q CNI_IFNAME=%q accepted", c.id, c.ifname)
			n.run(call{verb: "DEL", id: c.id, netns: pod.Path(), ifname: c.ifname, conf: conf})
			continue
		}
		if e.Code != types.ErrInvalidEnvironmentVariables || !strings.Contains(e.Msg, c.mention) {
			t.Errorf("ADD CNI_IFNAME=%q: error %d %q, want 4 naming %s", c.ifname, e.Code, e.Msg, c.mention)
		}
		n.assertNothingLeft("after ADD with CNI_IFNAME=" + c.ifname)
		if links, _ := pod.NL.LinkList(); len(links) != 1 {
			t.Errorf("after ADD with CNI_IFNAME=%q the pod has %d links, want only lo", c.ifname, len(links))
		}
		_, e = n.run(call{verb: "DEL", id: c.id, netns: pod.Path(), ifname: c.ifname, conf: conf})
		if c.delOK && e != nil {
			t.Errorf("DEL CNI_IFNAME=%q (best effort): %v", c.ifname, e)
		}
		if !c.delOK && (e == nil || e.Code != types.ErrInvalidEnvironmentVariables || !strings.Contains(e.Msg, c.mention)) {
			t.Errorf("DEL CNI_IFNAME=%q: %v, want error 4 naming %s", c.ifname, e, c.mention)
		}
	}
	if got := readSysctl(t, pod, "ipv6/conf/all/accept_dad"); got != dadAll {
		t.Errorf("pod's net.ipv6.conf.all.accept_dad changed from %s to %s", dadAll, got)
	}
	if got := readSysctl(t, pod, "ipv6/conf/default/accept_dad"); got != dadDefault {
		t.Errorf("pod's net.ipv6.conf.default.accept_dad changed from %s to %s", dadDefault, got)
	}
	// A good ADD still works after all that.
	n.add("1.0.0", conf, goodID, pod)
	n.must(call{verb: "DEL", id: goodID, netns: pod.Path(), ifname: "eth0", conf: conf})
	n.assertNothingLeft("after the good ADD's DEL")
}
