#!/usr/bin/env bash
# Join a node to a kubeadm cluster bootstrapped with kindnet
# (scripts/kubeadm-init.sh prints the exact command for your cluster).
#
#   kubeadm-join.sh --pod-subnet CIDR[,CIDR] [--package FILE] [options] -- KUBEADM-JOIN-ARGS...
#
# Steps, each skipped when already done (a second run changes nothing):
#   1. install the kindnet package (--package; skipped if that version is in)
#   2. write /etc/kindnet/config.yaml: clusterCIDRs = the pod subnet(s)
#   3. kubeadm join KUBEADM-JOIN-ARGS (skipped if kubelet.conf exists)
#   4. start kindnet.service; it follows the cluster with kubelet's
#      credentials (the RBAC applied by kubeadm-init.sh lets it list Nodes)
#
# Options:
#   --pod-subnet CIDR[,CIDR]   cluster pod range(s), as given to kubeadm-init.sh (required)
#   --node-name NAME           this node's name (default: the hostname)
#   --package FILE             kindnet .deb or .rpm to install
#   --dry-run                  print the config and the commands, change nothing
#   -h, --help                 this text
# Arguments after -- go to kubeadm join unchanged, e.g.
#   -- 192.0.2.10:6443 --token abcdef.0123456789abcdef --discovery-token-ca-cert-hash sha256:…
#
# Needs root, kubeadm, kubelet and a container runtime. The flow is described
# in docs/kubeadm.md.
set -euo pipefail
PROG=kubeadm-join.sh
# shellcheck source=scripts/kubeadm-lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/kubeadm-lib.sh"

JOIN_ARGS=()

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
	case "$1" in
	--pod-subnet) need_value "$1" $#; POD_SUBNETS=$2; shift 2 ;;
	--pod-subnet=*) POD_SUBNETS=${1#*=}; shift ;;
	--node-name) need_value "$1" $#; NODE_NAME=$2; shift 2 ;;
	--node-name=*) NODE_NAME=${1#*=}; shift ;;
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
need_root
need_commands kubeadm systemctl

joined=0
[ -e "$KUBELET_KUBECONFIG" ] && joined=1
if [ "$joined" = 0 ] && [ "${#JOIN_ARGS[@]}" -eq 0 ]; then
	usage_error "kubeadm join's arguments are missing: add -- API-SERVER:PORT --token … --discovery-token-ca-cert-hash sha256:… (kubeadm-init.sh prints them)"
fi

install_package
write_config

if [ "$joined" = 1 ]; then
	say "$KUBELET_KUBECONFIG exists: this node has joined; not running kubeadm join"
else
	join=(kubeadm join)
	[ -n "$NODE_NAME" ] && join+=("--node-name=$NODE_NAME")
	run "${join[@]}" "${JOIN_ARGS[@]}"
fi

start_agent
if [ "$DRY_RUN" = 0 ]; then
	say "done: kindnet runs on this node; from a control-plane node, 'kubectl get nodes' shows it Ready once its routes and CNI config are in place"
fi
