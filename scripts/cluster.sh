#!/usr/bin/env bash
# A real Kubernetes cluster with kindnet on this machine (docs/cluster.md):
# a control plane and N nodes in namespaces, each node running the kindnet
# agent as its package installs it, containerd 2, kubelet and kube-proxy.
#   scripts/cluster.sh up            build one (NODES=3) and leave it running; prints its ID
#   scripts/cluster.sh status [ID]   processes, nodes, pods, kindnet status per node, kubectl hint
#   scripts/cluster.sh kubectl ID ARGS...   kubectl as the cluster admin
#   scripts/cluster.sh down [ID]     remove it (every cluster when no ID), every trace
# State: ${KINDNET_CLUSTER_DIR:-/var/tmp/kindnet-cluster}/<ID>. Needs root and
# `make tools` (cached Kubernetes, etcd, containerd, CoreDNS builds).
set -euo pipefail
cd "$(dirname "$0")/.."
cmd="${1:-}"
case "$cmd" in
up | down | status | kubectl) shift ;;
*)
	sed -n '2,12p' "$0"
	exit 64
	;;
esac
[ "$(id -u)" = 0 ] || {
	echo "cluster.sh: run as root (sudo): it creates namespaces, cgroups and mounts" >&2
	exit 1
}
make --no-print-directory build >/dev/null
if [ "$cmd" = up ]; then
	exec ./bin/kindnet-cluster up --nodes "${NODES:-3}" "$@"
fi
exec ./bin/kindnet-cluster "$cmd" "$@"
