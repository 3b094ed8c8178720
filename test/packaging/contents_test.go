package packaging

import (
	"io"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/kindnet-dev/kindnet/pkg/cli"
)

// entry is a file the packages must install.
type entry struct {
	path   string
	mode   string // ls-style type and permissions, e.g. "-rwxr-xr-x"
	target string // for symlinks
}

// manPages lists the man page of every command of the CLI, named as
// cobra/doc names them: one per command, "kindnet-config-show.1.gz".
func manPages() []string {
	var pages []string
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if !c.IsAvailableCommand() && c.HasParent() || c.IsAdditionalHelpTopicCommand() {
			return
		}
		pages = append(pages, strings.ReplaceAll(c.CommandPath(), " ", "-")+".1.gz")
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(cli.NewRoot(io.Discard, io.Discard, nil))
	sort.Strings(pages)
	return pages
}

// common lists what both packages hold at the same place.
func common() []entry {
	es := []entry{
		{path: "/usr/bin/kindnet", mode: "-rwxr-xr-x"},
		{path: "/etc/kindnet/config.yaml", mode: "-rw-r--r--"},
		{path: "/etc/iproute2/rt_protos.d/kindnet.conf", mode: "-rw-r--r--"},
		{path: "/etc/cni/net.d", mode: "drwxr-xr-x"},
		{path: "/usr/share/bash-completion/completions/kindnet", mode: "-rw-r--r--"},
		{path: "/usr/share/fish/vendor_completions.d/kindnet.fish", mode: "-rw-r--r--"},
	}
	for _, m := range manPages() {
		es = append(es, entry{path: "/usr/share/man/man1/" + m, mode: "-rw-r--r--"})
	}
	return es
}

func debEntries() []entry {
	return append(common(),
		// The lean CNI plugin (cmd/kindnet-cni), a regular file.
		entry{path: "/opt/cni/bin/kindnet", mode: "-rwxr-xr-x"},
		entry{path: "/lib/systemd/system/kindnet.service", mode: "-rw-r--r--"},
		entry{path: "/lib/systemd/system/kubelet.service.d/10-kindnet.conf", mode: "-rw-r--r--"},
		entry{path: "/etc/default/kindnet", mode: "-rw-r--r--"},
		entry{path: "/usr/share/zsh/vendor-completions/_kindnet", mode: "-rw-r--r--"},
		entry{path: "/usr/share/doc/kindnet/copyright", mode: "-rw-r--r--"},
		entry{path: "/usr/share/doc/kindnet/changelog.Debian.gz", mode: "-rw-r--r--"},
		entry{path: "/usr/share/lintian/overrides/kindnet", mode: "-rw-r--r--"},
	)
}

func rpmEntries() []entry {
	es := append(common(),
		// The lean CNI plugin (cmd/kindnet-cni), regular files in
		// containerd's and CRI-O's plugin directories.
		entry{path: "/opt/cni/bin/kindnet", mode: "-rwxr-xr-x"},
		entry{path: "/usr/libexec/cni/kindnet", mode: "-rwxr-xr-x"},
		entry{path: "/usr/lib/systemd/system/kindnet.service", mode: "-rw-r--r--"},
		entry{path: "/usr/lib/systemd/system/kubelet.service.d/10-kindnet.conf", mode: "-rw-r--r--"},
		entry{path: "/etc/sysconfig/kindnet", mode: "-rw-r--r--"},
		entry{path: "/usr/share/zsh/site-functions/_kindnet", mode: "-rw-r--r--"},
		entry{path: "/usr/share/licenses/kindnet/LICENSE", mode: "-rw-r--r--"},
	)
	// rpm removes only the directories a package owns.
	for _, d := range []string{"/etc/cni", "/etc/kindnet", "/etc/sysconfig", "/opt/cni", "/opt/cni/bin",
		"/usr/libexec/cni", "/usr/lib/systemd/system/kubelet.service.d", "/usr/share/licenses", "/usr/share/licenses/kindnet",
		"/usr/share/zsh/site-functions", "/usr/share/fish", "/usr/share/fish/vendor_completions.d"} {
		es = append(es, entry{path: d, mode: "drwxr-xr-x"})
	}
	return es
}

func paths(es []entry) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.path)
	}
	sort.Strings(out)
	return out
}
