package cniconf

import (
	"encoding/json"
	"net/netip"
	"slices"
	"testing"

	"github.com/containernetworking/cni/libcni"

	"github.com/kindnet-dev/kindnet/pkg/cni"
	"github.com/kindnet-dev/kindnet/pkg/config"
)

func params(version, mode string) Params {
	return Params{
		Mode:          mode,
		PodCIDRs:      []netip.Prefix{netip.MustParsePrefix("10.244.1.0/24"), netip.MustParsePrefix("fd00:10:244:1::/64")},
		MTU:           1450,
		CNIVersion:    version,
		IPAMDir:       "/run/kindnet/ipam",
		HostPortTable: "kindnet_hostport",
	}
}

func TestRenderNamesKindnetsOwnPluginWithTheNodesSettings(t *testing.T) {
	b, err := Render(params("1.0.0", "bridge"))
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		CNIVersion string `json:"cniVersion"`
		Name       string `json:"name"`
		Plugins    []struct {
			Type          string          `json:"type"`
			Mode          string          `json:"mode"`
			MTU           int             `json:"mtu"`
			Ranges        []string        `json:"ranges"`
			IPAMDir       string          `json:"ipamDir"`
			HostPortTable string          `json:"hostPortTable"`
			Capabilities  map[string]bool `json:"capabilities"`
		} `json:"plugins"`
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if got.CNIVersion != "1.0.0" || got.Name != NetworkName || len(got.Plugins) != 1 {
		t.Fatalf("conflist %s", b)
	}
	p := got.Plugins[0]
	if p.Type != "kindnet" || p.Mode != "bridge" || p.MTU != 1450 || p.IPAMDir != "/run/kindnet/ipam" ||
		p.HostPortTable != "kindnet_hostport" || !p.Capabilities["portMappings"] ||
		!slices.Equal(p.Ranges, []string{"10.244.1.0/24", "fd00:10:244:1::/64"}) {
		t.Errorf("plugin %+v", p)
	}
	if _, err := Render(Params{CNIVersion: "1.0.0"}); err == nil {
		t.Error("rendered a conflist without pod ranges")
	}
}

// The agent offers exactly the versions the plugin speaks, and the plugin
// accepts what the agent writes, for every version and mode, as libcni
// hands it over.
func TestPluginAcceptsWhatTheAgentWrites(t *testing.T) {
	if !slices.Equal(config.CNISpecVersions, cni.Supported) {
		t.Fatalf("config offers %v, the plugin speaks %v", config.CNISpecVersions, cni.Supported)
	}
	for _, v := range config.CNISpecVersions {
		for _, mode := range []string{"ptp", "bridge"} {
			b, err := Render(params(v, mode))
			if err != nil {
				t.Fatal(err)
			}
			list, err := libcni.ConfListFromBytes(b)
			if err != nil {
				t.Fatalf("%s %s: libcni rejects the conflist: %v", v, mode, err)
			}
			net, err := libcni.InjectConf(list.Plugins[0], map[string]any{"name": list.Name, "cniVersion": list.CNIVersion})
			if err != nil {
				t.Fatal(err)
			}
			c, perr := cni.Parse(net.Bytes)
			if perr != nil {
				t.Fatalf("%s %s: plugin rejects the agent's config: %v", v, mode, perr)
			}
			if string(c.Mode) != mode || c.MTU != 1450 || len(c.Ranges) != 2 || c.HostPortTable != "kindnet_hostport" {
				t.Errorf("%s %s: parsed %+v", v, mode, c)
			}
		}
	}
}
