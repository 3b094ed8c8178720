# shellcheck shell=bash
# Shared by scripts/kubeadm-init.sh and scripts/kubeadm-join.sh (sourced):
# argument checks, the dry-run wrapper, installing the kindnet package and
# writing /etc/kindnet/config.yaml. Every step checks what is already there
# first, so running a script again changes nothing.

KINDNET_CONFIG_FILE=/etc/kindnet/config.yaml
KUBELET_KUBECONFIG=/etc/kubernetes/kubelet.conf

DRY_RUN=0
PACKAGE=""
POD_SUBNETS=""
NODE_NAME=""

# EX_USAGE, as kindnet's own CLI uses for bad arguments.
usage_error() {
	echo "$PROG: $*" >&2
	echo "See '$PROG --help'." >&2
	exit 64
}

# need_value OPTION ARGC: an option that takes a value got one.
need_value() { [ "$2" -ge 2 ] || usage_error "$1 needs a value"; }

die() {
	echo "$PROG: $*" >&2
	exit 1
}

say() { echo "$PROG: $*"; }

# run executes a command, or in dry-run mode prints it (shell-quoted) and
# does nothing.
run() {
	if [ "$DRY_RUN" = 1 ]; then
		printf 'would run:'
		printf ' %q' "$@"
		printf '\n'
		return 0
	fi
	"$@"
}

# run_sh is run for a pipeline, given as one shell command line.
run_sh() {
	if [ "$DRY_RUN" = 1 ]; then
		echo "would run: $1"
		return 0
	fi
	bash -c "set -o pipefail; $1"
}

# valid_cidr: an IPv4 (a.b.c.d/0-32) or IPv6 (hex groups with '::', /0-128)
# prefix. A first filter for clear errors here; kindnet config validate
# checks the written config exactly before it is installed.
valid_cidr() {
	local c=$1 ip bits
	[[ $c == */* ]] || return 1
	ip=${c%/*} bits=${c##*/}
	[[ $bits =~ ^[0-9]{1,3}$ ]] || return 1
	if [[ $ip =~ ^([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})$ ]]; then
		local o
		for o in "${BASH_REMATCH[@]:1}"; do
			((10#$o <= 255)) || return 1
		done
		((10#$bits <= 32))
		return
	fi
	[[ $ip =~ ^[0-9a-fA-F:]+$ && $ip == *:* ]] && ((10#$bits <= 128))
}

# check_pod_subnets validates --pod-subnet: one or two CIDRs, comma
# separated, at most one per IP family (dual-stack: one of each).
check_pod_subnets() {
	[ -n "$POD_SUBNETS" ] || usage_error "--pod-subnet is required: the cluster's pod range(s), e.g. --pod-subnet 10.244.0.0/16 or --pod-subnet 10.244.0.0/16,fd00:10:244::/56"
	local c v4=0 v6=0
	local -a cidrs
	IFS=, read -r -a cidrs <<<"$POD_SUBNETS"
	[ "${#cidrs[@]}" -ge 1 ] || usage_error "--pod-subnet: empty"
	for c in "${cidrs[@]}"; do
		valid_cidr "$c" || usage_error "--pod-subnet: '$c' is not a CIDR such as 10.244.0.0/16 or fd00:10:244::/56"
		if [[ $c == *:* ]]; then v6=$((v6 + 1)); else v4=$((v4 + 1)); fi
	done
	if [ "$v4" -gt 1 ] || [ "$v6" -gt 1 ]; then
		usage_error "--pod-subnet: '$POD_SUBNETS' has more than one range of an IP family; give at most one IPv4 and one IPv6 range"
	fi
}

check_node_name() {
	[ -z "$NODE_NAME" ] && return 0
	if [[ ! $NODE_NAME =~ ^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$ ]] || [ "${#NODE_NAME}" -gt 253 ]; then
		usage_error "--node-name: '$NODE_NAME' is not a Kubernetes node name (lowercase letters, digits, '-' and '.')"
	fi
}

check_package_arg() {
	[ -z "$PACKAGE" ] && return 0
	case "$PACKAGE" in
	*.deb | *.rpm) ;;
	*) usage_error "--package: '$PACKAGE' is neither a .deb nor an .rpm" ;;
	esac
	[ -r "$PACKAGE" ] || usage_error "--package: cannot read '$PACKAGE'"
}

need_root() {
	[ "$DRY_RUN" = 1 ] && return 0
	[ "$(id -u)" = 0 ] || die "must run as root (or try --dry-run to see what it would do)"
}

need_commands() {
	[ "$DRY_RUN" = 1 ] && return 0
	local c
	for c in "$@"; do
		command -v "$c" >/dev/null 2>&1 || die "'$c' not found: install the Kubernetes tools (kubeadm, kubelet, kubectl) and a container runtime first; see docs/kubeadm.md"
	done
}

# installed_version prints the installed kindnet package version, or nothing.
installed_version() {
	if command -v dpkg-query >/dev/null 2>&1; then
		{ dpkg-query -W -f '${db:Status-Status} ${Version}' kindnet 2>/dev/null || true; } | sed -n 's/^installed //p'
	elif command -v rpm >/dev/null 2>&1; then
		rpm -q --qf '%{VERSION}-%{RELEASE}' kindnet 2>/dev/null || true
	fi
}

package_version() {
	case "$PACKAGE" in
	*.deb) dpkg-deb -f "$PACKAGE" Version ;;
	*.rpm) rpm -qp --qf '%{VERSION}-%{RELEASE}' "$PACKAGE" 2>/dev/null ;;
	esac
}

# install_package installs --package unless that version is installed.
install_package() {
	local have want
	have=$(installed_version)
	if [ -z "$PACKAGE" ]; then
		[ -n "$have" ] || die "kindnet is not installed: give the package with --package kindnet_<version>_<arch>.deb (or .rpm)"
		say "kindnet $have is installed"
		return 0
	fi
	want=$(package_version) || die "--package: cannot read the version of $PACKAGE"
	if [ "$have" = "$want" ]; then
		say "kindnet $want is already installed"
		return 0
	fi
	say "installing kindnet $want${have:+ (replacing $have)}"
	case "$PACKAGE" in
	# --force-confold: a config written by an earlier run (or by the
	# admin) stays when a newer package is installed over it.
	*.deb) run env DEBIAN_FRONTEND=noninteractive dpkg --force-confold -i "$PACKAGE" ;;
	*.rpm)
		if command -v dnf >/dev/null 2>&1; then
			run dnf install -y "$PACKAGE"
		else
			run rpm -Uvh "$PACKAGE"
		fi
		;;
	esac
}

# kindnet_config prints the config these scripts write: the cluster's pod
# ranges, kubelet's kubeconfig, and the node name when one was given.
kindnet_config() {
	echo "# $KINDNET_CONFIG_FILE: written by $PROG (kindnet's kubeadm bootstrap)."
	echo "# Every other setting has its default; \`man kindnet-agent\` and"
	echo "# \`kindnet config show\` list them. Edit, then: systemctl restart kindnet"
	echo "clusterCIDRs: [${POD_SUBNETS//,/, }]"
	echo "kubeconfig: $KUBELET_KUBECONFIG"
	if [ -n "$NODE_NAME" ]; then
		echo "nodeName: $NODE_NAME"
	fi
}

# write_config installs the config if it differs from what is there,
# after kindnet itself has checked it.
write_config() {
	local content
	content=$(kindnet_config)
	if [ -e "$KINDNET_CONFIG_FILE" ] && [ "$(cat "$KINDNET_CONFIG_FILE")" = "$content" ]; then
		say "$KINDNET_CONFIG_FILE is up to date"
		return 0
	fi
	if [ "$DRY_RUN" = 1 ]; then
		echo "would write $KINDNET_CONFIG_FILE:"
		printf '%s\n' "$content" | sed 's/^/    /'
		return 0
	fi
	local tmp
	tmp=$(mktemp "$KINDNET_CONFIG_FILE.XXXXXX")
	printf '%s\n' "$content" >"$tmp"
	chmod 0644 "$tmp"
	if ! kindnet config validate --config "$tmp" >/dev/null; then
		rm -f "$tmp"
		die "kindnet rejected the config above; nothing was changed"
	fi
	if [ -e "$KINDNET_CONFIG_FILE" ]; then
		cp -p "$KINDNET_CONFIG_FILE" "$KINDNET_CONFIG_FILE.before-$PROG"
		say "kept the previous config as $KINDNET_CONFIG_FILE.before-$PROG"
	fi
	mv "$tmp" "$KINDNET_CONFIG_FILE"
	say "wrote $KINDNET_CONFIG_FILE"
}

# start_agent starts kindnet.service. Before kubeadm: the agent turns on
# forwarding and says READY=1 at once; it follows the cluster once
# kubelet's kubeconfig exists (it waits for the file).
start_agent() {
	run systemctl enable kindnet.service
	run systemctl start kindnet.service
}
