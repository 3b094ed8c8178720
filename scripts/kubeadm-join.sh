#!/usr/bin/env bash
# Join a node to a kubeadm cluster bootstrapped with kindnet
# (scripts/kubeadm-init.sh prints the exact command for your cluster).
#
#   kubeadm-join.sh --pod-subnet CIDR[,CIDR] --join-config FILE [options] [-- KUBEADM-JOIN-ARGS...]
#   kubeadm-join.sh --pod-subnet CIDR[,CIDR] [options] -- KUBEADM-JOIN-ARGS...
#
# Steps, each skipped when already done (a second run changes nothing):
#   1. install the kindnet package (--package; skipped if that version is in)
#   2. write /etc/kindnet/config.yaml: clusterCIDRs = the pod subnet(s)
#   3. start kindnet.service: it turns on IP forwarding (which kubeadm's
#      preflight checks), then follows the cluster with kubelet's
#      credentials once they exist (the RBAC applied by kubeadm-init.sh
#      lets it list Nodes)
#   4. kubeadm join --config FILE (skipped if kubelet.conf exists)
#
# Options:
#   --pod-subnet CIDR[,CIDR]   cluster pod range(s), as given to kubeadm-init.sh (required)
#   --join-config FILE         the join configuration kubeadm-init.sh wrote
#                              (/etc/kubernetes/kindnet-join.yaml on the
#                              control-plane node): its token is never put on
#                              a command line
#   --node-name NAME           this node's name (default: the hostname)
#   --package FILE             kindnet .deb or .rpm to install
#   --dry-run                  print the config and the commands, change nothing
#   -h, --help                 this text
# Arguments after -- go to kubeadm join unchanged: with --join-config, the
# flags kubeadm takes with --config (--ignore-preflight-errors, --skip-*,
# -v); without it, kubeadm join's own arguments, e.g.
#   -- 192.0.2.10:6443 --token abcdef.0123456789abcdef --discovery-token-ca-cert-hash sha256:…
# (every user of the machine sees a token given so in ps).
#
# Needs root, kubeadm, kubelet and a container runtime. The flow is described
# in docs/kubeadm.md.
set -euo pipefail
PROG=kubeadm-join.sh
# shellcheck source=scripts/kubeadm-lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/kubeadm-lib.sh"

JOIN_ARGS=()
JOIN_CONFIG=""

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
	case "$1" in
	--pod-subnet) need_value "$1" $#; POD_SUBNETS=$2; shift 2 ;;
	--pod-subnet=*) POD_SUBNETS=${1#*=}; shift ;;
	--node-name) need_value "$1" $#; NODE_NAME=$2; shift 2 ;;
	--node-name=*) NODE_NAME=${1#*=}; shift ;;
	--join-config) need_value "$1" $#; JOIN_CONFIG=$2; shift 2 ;;
	--join-config=*) JOIN_CONFIG=${1#*=}; shift ;;
	--package) need_value "$1" $#; PACKAGE=$2; shift 2 ;;
	--package=*) PACKAGE=${1#*=}; shift ;;
	--dry-run) DRY_RUN=1; shift ;;
	-h | --help) usage; exit 0 ;;
	--) shift; JOIN_ARGS=("$@"); break ;;
	*) usage_error "unknown argument '$1' (kubeadm join's arguments go after --)" ;;
	esac
done

check_pod_subnets
check_node_name
check_package_arg
if [ -n "$JOIN_CONFIG" ]; then
	[ -r "$JOIN_CONFIG" ] || usage_error "--join-config: cannot read '$JOIN_CONFIG'"
	grep -Eq '^kind:[[:space:]]*JoinConfiguration[[:space:]]*$' "$JOIN_CONFIG" ||
		usage_error "--join-config: '$JOIN_CONFIG' is not a kubeadm JoinConfiguration (kubeadm-init.sh writes one to /etc/kubernetes/kindnet-join.yaml)"
	if [ -n "$(find "$JOIN_CONFIG" -maxdepth 0 -perm /o+r)" ]; then
		say "warning: $JOIN_CONFIG is readable by every user; it holds a bootstrap token (chmod 0600 it)" >&2
	fi
fi
need_root
need_commands kubeadm systemctl

joined=0
[ -e "$KUBELET_KUBECONFIG" ] && joined=1
if [ "$joined" = 0 ] && [ -z "$JOIN_CONFIG" ] && [ "${#JOIN_ARGS[@]}" -eq 0 ]; then
	usage_error "how to join is missing: give --join-config FILE (the kindnet-join.yaml kubeadm-init.sh wrote), or kubeadm join's arguments after --"
fi

install_package
write_config
# Before kubeadm: the agent turns on forwarding, which kubeadm's preflight
# checks; kubelet (ordered after it) then finds the pod network in place.
start_agent

if [ "$joined" = 1 ]; then
	say "$KUBELET_KUBECONFIG exists: this node has joined; not running kubeadm join"
else
	join=(kubeadm join)
	[ -n "$JOIN_CONFIG" ] && join+=("--config=$JOIN_CONFIG")
	[ -n "$NODE_NAME" ] && join+=("--node-name=$NODE_NAME")
	run "${join[@]}" "${JOIN_ARGS[@]}"
fi
if [ "$DRY_RUN" = 0 ]; then
	say "done: kindnet runs on this node; from a control-plane node, 'kubectl get nodes' shows it Ready once its routes and CNI config are in place"
fi
