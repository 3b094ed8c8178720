package cni

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
)

const goodConf = `{"cniVersion":"1.0.0","name":"kindnet","type":"kindnet","mode":"ptp","mtu":1400,
 "ranges":["fd00:10:244:1::/64","10.244.1.0/24"],"ipamDir":"/run/kindnet/ipam"}`

func TestParseAcceptsTheAgentsConfigAndFillsDefaults(t *testing.T) {
	c, err := Parse([]byte(goodConf))
	if err != nil {
		t.Fatal(err)
	}
	if c.Mode != ModePTP || c.MTU != 1400 || c.IPAMDir != "/run/kindnet/ipam" || c.Bridge != DefaultBridge || c.HostPortTable != "kindnet_hostport" {
		t.Errorf("parsed %+v", c)
	}
	if len(c.Ranges) != 2 || !c.Ranges[0].Addr().Is4() || !c.Ranges[1].Addr().Is6() {
		t.Errorf("ranges %v, want IPv4 first", c.Ranges)
	}
	min, err := Parse([]byte(`{"cniVersion":"0.3.0","name":"n","ranges":["10.0.0.0/24"]}`))
	if err != nil || min.Mode != ModePTP || min.IPAMDir != DefaultIPAMDir || min.MTU != 0 {
		t.Errorf("minimal config: %+v %v", min, err)
	}
}

func TestParseRejectsBadInputWithTheSpecsCode(t *testing.T) {
	cases := []struct {
		name, conf string
		code       uint
		mention    string // the message names what is wrong
	}{
		{"malformed JSON", `{"cniVersion":"1.0.0","name":`, types.ErrDecodingFailure, "decode"},
		{"not an object", `[1,2]`, types.ErrDecodingFailure, "decode"},
		{"unsupported version", `{"cniVersion":"0.2.0","name":"n","ranges":["10.0.0.0/24"]}`, types.ErrIncompatibleCNIVersion, "0.2.0"},
		{"unknown mode", `{"cniVersion":"1.0.0","name":"n","mode":"vxlan","ranges":["10.0.0.0/24"]}`, types.ErrInvalidNetworkConfig, `mode "vxlan"`},
		{"no ranges", `{"cniVersion":"1.0.0","name":"n"}`, types.ErrInvalidNetworkConfig, "ranges"},
		{"range not a CIDR", `{"cniVersion":"1.0.0","name":"n","ranges":["10.0.0.300/24"]}`, types.ErrInvalidNetworkConfig, "10.0.0.300/24"},
		{"range with host bits", `{"cniVersion":"1.0.0","name":"n","ranges":["10.0.0.1/24"]}`, types.ErrInvalidNetworkConfig, "10.0.0.0/24"},
		{"two IPv4 ranges", `{"cniVersion":"1.0.0","name":"n","ranges":["10.0.0.0/24","10.1.0.0/24"]}`, types.ErrInvalidNetworkConfig, "one range per IP family"},
		{"range too small", `{"cniVersion":"1.0.0","name":"n","ranges":["10.0.0.0/31"]}`, types.ErrInvalidNetworkConfig, "room for pods"},
		{"mapped IPv4", `{"cniVersion":"1.0.0","name":"n","ranges":["::ffff:10.0.0.0/120"]}`, types.ErrInvalidNetworkConfig, "IPv4-mapped"},
		{"MTU too small for IPv6", `{"cniVersion":"1.0.0","name":"n","mtu":1000,"ranges":["fd00::/64"]}`, types.ErrInvalidNetworkConfig, "1280"},
		{"MTU out of range", `{"cniVersion":"1.0.0","name":"n","mtu":70000,"ranges":["10.0.0.0/24"]}`, types.ErrInvalidNetworkConfig, "mtu 70000"},
		{"relative IPAM dir", `{"cniVersion":"1.0.0","name":"n","ipamDir":"run/ipam","ranges":["10.0.0.0/24"]}`, types.ErrInvalidNetworkConfig, "ipamDir"},
		{"bridge name too long", `{"cniVersion":"1.0.0","name":"n","bridge":"averyveryverylongname","ranges":["10.0.0.0/24"]}`, types.ErrInvalidNetworkConfig, "15 characters"},
		{"bad table name", `{"cniVersion":"1.0.0","name":"n","hostPortTable":"a b","ranges":["10.0.0.0/24"]}`, types.ErrInvalidNetworkConfig, "hostPortTable"},
		{"name with slash", `{"cniVersion":"1.0.0","name":"a/b","ranges":["10.0.0.0/24"]}`, types.ErrInvalidNetworkConfig, "name"},
		{"hostPort 0", `{"cniVersion":"1.0.0","name":"n","ranges":["10.0.0.0/24"],"runtimeConfig":{"portMappings":[{"hostPort":0,"containerPort":80}]}}`, types.ErrInvalidNetworkConfig, "hostPort"},
		{"bad protocol", `{"cniVersion":"1.0.0","name":"n","ranges":["10.0.0.0/24"],"runtimeConfig":{"portMappings":[{"hostPort":80,"containerPort":80,"protocol":"icmp"}]}}`, types.ErrInvalidNetworkConfig, "icmp"},
		{"bad hostIP", `{"cniVersion":"1.0.0","name":"n","ranges":["10.0.0.0/24"],"runtimeConfig":{"portMappings":[{"hostPort":80,"containerPort":80,"hostIP":"x"}]}}`, types.ErrInvalidNetworkConfig, "hostIP"},
		{"IPv6 loopback hostIP", `{"cniVersion":"1.0.0","name":"n","ranges":["fd00::/64"],"runtimeConfig":{"portMappings":[{"hostPort":80,"containerPort":80,"hostIP":"::1"}]}}`, types.ErrInvalidNetworkConfig, "IPv6 has no route_localnet"},
		{"bad prevResult", `{"cniVersion":"1.0.0","name":"n","ranges":["10.0.0.0/24"],"prevResult":{"ips":[{"address":"nonsense"}]}}`, types.ErrDecodingFailure, "prevResult"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			conf, err := Parse([]byte(c.conf))
			if err == nil {
				err = conf.ParseRuntimeConfig() // what ADD and CHECK do next
			}
			if err == nil {
				t.Fatal("accepted")
			}
			if err.Code != c.code || !strings.Contains(err.Error(), c.mention) {
				t.Errorf("got code %d %q, want code %d mentioning %q", err.Code, err.Error(), c.code, c.mention)
			}
		})
	}
}

// Parse alone (all DEL does) accepts a runtime config whatever it holds,
// and says whether it names port mappings at all.
func TestParseLeavesTheRuntimeConfigToAddAndCheck(t *testing.T) {
	cases := []struct {
		name, rc string
		mentions bool
	}{
		{"refused hostIP", `{"portMappings":[{"hostPort":80,"containerPort":80,"hostIP":"::1"}]}`, true},
		{"hostPort 0", `{"portMappings":[{"hostPort":0,"containerPort":80}]}`, true},
		{"hostPort of the wrong type", `{"portMappings":[{"hostPort":"eighty","containerPort":80}]}`, true},
		{"portMappings not a list", `{"portMappings":{"hostPort":80}}`, true},
		{"not an object", `[1]`, true},
		{"empty list", `{"portMappings":[]}`, false},
		{"null", `null`, false},
		{"other capability only", `{"bandwidth":{"ingressRate":1}}`, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			conf, err := Parse([]byte(`{"cniVersion":"1.0.0","name":"n","ranges":["10.0.0.0/24"],"runtimeConfig":` + c.rc + `}`))
			if err != nil {
				t.Fatalf("Parse refused a runtime config only ADD reads: %v", err)
			}
			if conf.MentionsPortMappings != c.mentions {
				t.Errorf("MentionsPortMappings = %v, want %v", conf.MentionsPortMappings, c.mentions)
			}
			if len(conf.PortMappings) != 0 {
				t.Errorf("Parse alone filled PortMappings: %+v", conf.PortMappings)
			}
		})
	}
}

func TestParsePortMappingsAndGCList(t *testing.T) {
	c, err := Parse([]byte(`{"cniVersion":"1.1.0","name":"n","ranges":["10.0.0.0/24"],
	  "runtimeConfig":{"portMappings":[{"hostPort":8080,"containerPort":80,"protocol":"TCP"},
	                                   {"hostPort":53,"containerPort":5353,"protocol":"udp","hostIP":"0.0.0.0"},
	                                   {"hostPort":9,"containerPort":9,"protocol":"sctp","hostIP":"192.168.1.1"},
	                                   {"hostPort":54323,"containerPort":80,"hostIP":"::ffff:127.0.0.1"}]},
	  "cni.dev/valid-attachments":[]}`))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.ParseRuntimeConfig(); err != nil {
		t.Fatal(err)
	}
	if len(c.PortMappings) != 4 || c.PortMappings[0].Protocol != "tcp" || c.PortMappings[1].HostIP.IsValid() ||
		c.PortMappings[2].HostIP != netip.MustParseAddr("192.168.1.1") || c.PortMappings[3].HostIP != netip.MustParseAddr("127.0.0.1") {
		t.Errorf("mappings %+v", c.PortMappings)
	}
	if !c.HasValidAttachment || len(c.ValidAttachments) != 0 {
		t.Errorf("an empty valid-attachments list must read as given and empty: %v %v", c.HasValidAttachment, c.ValidAttachments)
	}
	legacy, _ := Parse([]byte(`{"cniVersion":"1.1.0","name":"n","ranges":["10.0.0.0/24"],"cni.dev/attachments":[{"containerID":"a","ifname":"eth0"}]}`))
	if !legacy.HasValidAttachment || len(legacy.ValidAttachments) != 1 {
		t.Errorf("cni.dev/attachments not read: %+v", legacy)
	}
	null, _ := Parse([]byte(`{"cniVersion":"1.1.0","name":"n","ranges":["10.0.0.0/24"],"cni.dev/valid-attachments":null}`))
	if !null.HasValidAttachment || len(null.ValidAttachments) != 0 {
		t.Errorf("a null list (libcni with no attachment) must read as given and empty: %+v", null)
	}
	none, _ := Parse([]byte(`{"cniVersion":"1.1.0","name":"n","ranges":["10.0.0.0/24"]}`))
	if none.HasValidAttachment {
		t.Error("no list must read as absent")
	}
}

// FuzzParse feeds arbitrary bytes to the parser: it must never panic, and
// whatever it accepts must hold up the invariants the plugin relies on.
// Seeds are in testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	f.Add([]byte(goodConf))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data)
		if err != nil {
			if err.Code == 0 || err.Msg == "" {
				t.Fatalf("error without code or message: %+v", err)
			}
			return
		}
		if c.Mode != ModePTP && c.Mode != ModeBridge {
			t.Fatalf("accepted mode %q", c.Mode)
		}
		if len(c.Ranges) == 0 || len(c.Ranges) > 2 {
			t.Fatalf("accepted %d ranges", len(c.Ranges))
		}
		if len(c.Ranges) == 2 && c.Ranges[0].Addr().Is4() == c.Ranges[1].Addr().Is4() {
			t.Fatalf("accepted two ranges of one family: %v", c.Ranges)
		}
		for _, r := range c.Ranges {
			if r.Masked() != r || (r.Addr().Is4() && r.Bits() > 30) || (r.Addr().Is6() && r.Bits() > 126) {
				t.Fatalf("accepted range %s", r)
			}
		}
		if c.Network == "" || strings.Contains(c.Network, "/") || !strings.HasPrefix(c.IPAMDir, "/") {
			t.Fatalf("accepted name %q, ipamDir %q", c.Network, c.IPAMDir)
		}
		if validIfName(c.Bridge) != "" || !nftName.MatchString(c.HostPortTable) {
			t.Fatalf("accepted bridge %q, table %q", c.Bridge, c.HostPortTable)
		}
		if err := c.ParseRuntimeConfig(); err != nil {
			if err.Code == 0 || err.Msg == "" {
				t.Fatalf("runtime config error without code or message: %+v", err)
			}
			if !c.MentionsPortMappings {
				t.Fatalf("a runtime config ADD refuses must count as naming port mappings, or DEL could skip their rules: %s", data)
			}
			return
		}
		if len(c.PortMappings) > 0 && !c.MentionsPortMappings {
			t.Fatalf("mappings %+v parsed but not mentioned", c.PortMappings)
		}
		for _, m := range c.PortMappings {
			if m.HostPort == 0 || m.ContainerPort == 0 || (m.HostIP.Is6() && m.HostIP.IsLoopback()) || m.HostIP.Is4In6() {
				t.Fatalf("accepted mapping %+v", m)
			}
		}
	})
}
