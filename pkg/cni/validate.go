package cni

import (
	"fmt"
	"regexp"
	"strconv"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/utils"
)

// What CNI_CONTAINERID and CNI_IFNAME may be. Both end up in names the
// kernel and nftables keep: the interface in the pod, its
// /proc/sys/net/*/conf/<ifname> directory (ADD writes accept_dad there),
// the host veth's alias "kindnet:<network>/<container ID>/<ifname>" and
// the hostPort rules' comments (both start with that attachment tag).
//
// ADD and CHECK (strict) refuse, before anything is changed:
//   - what the kernel refuses as an interface name (empty, 16 bytes or
//     more, "." or "..", '/', ':' or white space), checked by the CNI
//     library's own utils.ValidateInterfaceName;
//   - "all" and "default": the kernel creates such a link, but its sysctl
//     directory is the one that applies to every interface, so writing
//     the pod's accept_dad would change the whole pod namespace;
//   - any character outside the CNI spec's name rule (an ASCII letter or
//     digit, then letters, digits, '_', '.', '-'), the rule the spec gives
//     for container IDs and network names: no '%' (the kernel's name
//     template: "eth%d" becomes eth0), no leading '-' (ip, sysctl and
//     ethtool read it as an option), no '*', '?', '@' or control and
//     non-ASCII bytes, which tools read as wildcards or print misleadingly;
//   - a container ID outside that rule (utils.ValidateContainerID);
//   - an attachment tag longer than maxTag bytes.
//
// DEL (lenient) must clean up whatever an earlier ADD left, even one an
// older kindnet accepted, so it refuses only what could not have come
// from an ADD at all, i.e. what the CNI library refuses: DEL uses the
// names only as exact keys of what kindnet itself recorded (the IPAM
// record, the veth whose name is a hash of the tag and whose alias is the
// tag, the hostPort rules whose comment starts with it), so no name can
// make it touch anything else.

// maxTag bounds "<network>/<container ID>/<ifname>": the veth alias must
// fit IFALIASZ (256) and a hostPort rule comment, the tag plus at most 120
// bytes of rule description, nftables' 255-byte comment. Runtimes use
// 64-character container IDs, which leave room for network names of 40+.
const maxTag = 128

// cniName is the CNI spec's rule for container IDs and network names,
// applied here to interface names too.
var cniName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$`)

// strictFor says which commands get the strict rules.
func strictFor(command string) bool { return command == "ADD" || command == "CHECK" }

// validateArgs checks CNI_CONTAINERID and CNI_IFNAME for a command: the
// strict rules for ADD and CHECK, the lenient ones otherwise. The error is
// the spec's code 4 (invalid environment variables) and its message names
// the variable, the value and the rule. network is the config's name; ""
// skips the tag's length (Main checks before the config is read).
func validateArgs(command, network, containerID, ifName string) *types.Error {
	strict := strictFor(command)
	if e := validateContainerID(containerID); e != nil {
		return e
	}
	if e := validateIfName(ifName, strict); e != nil {
		return e
	}
	if tag := network + "/" + containerID + "/" + ifName; strict && network != "" && len(tag) > maxTag {
		return types.NewError(types.ErrInvalidEnvironmentVariables,
			fmt.Sprintf("CNI_CONTAINERID is %d bytes: with network %q and CNI_IFNAME=%q the attachment tag %q is %d bytes, at most %d fit kindnet's link alias and nftables comments",
				len(containerID), network, ifName, shorten(tag), len(tag), maxTag),
			"container runtimes use 64-character IDs")
	}
	return nil
}

// preValidateEnv runs validateArgs on the environment before skel does,
// for ADD, CHECK and DEL: skel refuses what the CNI library refuses with
// messages that do not name the variable, which the spec asks for. Empty
// variables are left to skel, which lists every missing one.
func preValidateEnv(getenv func(string) string) *types.Error {
	command := getenv("CNI_COMMAND")
	if command != "ADD" && command != "CHECK" && command != "DEL" {
		return nil
	}
	id, ifName := getenv("CNI_CONTAINERID"), getenv("CNI_IFNAME")
	if id == "" || ifName == "" {
		return nil
	}
	return validateArgs(command, "", id, ifName)
}

func validateContainerID(id string) *types.Error {
	if id == "" {
		return badEnv("CNI_CONTAINERID", id, "must not be empty")
	}
	if e := utils.ValidateContainerID(id); e != nil {
		return badEnv("CNI_CONTAINERID", id, "must start with an ASCII letter or digit, followed by letters, digits, '_', '.' or '-' (CNI spec)")
	}
	return nil
}

func validateIfName(name string, strict bool) *types.Error {
	if e := utils.ValidateInterfaceName(name); e != nil {
		return badEnv("CNI_IFNAME", name, "the kernel refuses it as an interface name: 1 to 15 bytes, not \".\" or \"..\", no '/', ':' or white space")
	}
	if !strict {
		return nil
	}
	if name == "all" || name == "default" {
		return badEnv("CNI_IFNAME", name, "names the kernel's settings for every interface (/proc/sys/net/*/conf/"+name+"), not one interface")
	}
	if !cniName.MatchString(name) {
		return badEnv("CNI_IFNAME", name, "must start with an ASCII letter or digit, followed by letters, digits, '_', '.' or '-' (no '%' name template, leading '-', wildcard or control character)")
	}
	return nil
}

// badEnv is error 4 naming the variable, its value (quoted: it may hold
// anything) and the rule it breaks.
func badEnv(variable, value, rule string) *types.Error {
	return types.NewError(types.ErrInvalidEnvironmentVariables, fmt.Sprintf("%s=%s is refused: %s", variable, shorten(value), rule), "")
}

// shorten quotes a value for a message, cut at 80 bytes.
func shorten(v string) string {
	if len(v) <= 80 {
		return strconv.Quote(v)
	}
	return fmt.Sprintf("%s… (%d bytes)", strconv.Quote(v[:80]), len(v))
}
