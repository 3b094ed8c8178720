#!/usr/bin/env bash
# Bootstrap the first control-plane node of a kubeadm cluster with kindnet.
#
#   kubeadm-init.sh --pod-subnet CIDR[,CIDR] [--package FILE] [options] [-- KUBEADM-INIT-ARGS...]
#
# Steps, each skipped when already done (a second run changes nothing):
#   1. install the kindnet package (--package; skipped if that version is in)
#   2. write /etc/kindnet/config.yaml: clusterCIDRs = the pod subnet(s)
#   3. kubeadm init --pod-network-cidr=… (skipped if admin.conf exists)
#   4. start kindnet.service
#   5. wait for the API server, then apply kindnet's RBAC with admin.conf:
#        kindnet rbac | kubectl --kubeconfig=/etc/kubernetes/admin.conf apply -f -
#      (nodes may list all Nodes: needed since Kubernetes 1.32's Node
#      authorizer; `kindnet rbac` prints that ClusterRole and binding)
#   6. print the command that joins further nodes (reusing a valid token)
#
# Options:
#   --pod-subnet CIDR[,CIDR]   cluster pod range(s), one per IP family (required)
#   --service-subnet CIDR[,CIDR]  service range(s) (kubeadm's default otherwise)
#   --control-plane-endpoint HOST[:PORT]  shared endpoint for more control planes
#   --kubernetes-version VERSION  passed to kubeadm init
#   --node-name NAME           this node's name (default: the hostname)
#   --package FILE             kindnet .deb or .rpm to install
#   --api-timeout SECONDS      how long to wait for the API server (default 300)
#   --dry-run                  print the config and the commands, change nothing
#   -h, --help                 this text
# Arguments after -- go to kubeadm init unchanged.
#
# Needs root, kubeadm, kubelet, kubectl and a container runtime. The flow is
# described in docs/kubeadm.md.
set -euo pipefail
PROG=kubeadm-init.sh
# shellcheck source=scripts/kubeadm-lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/kubeadm-lib.sh"

ADMIN_KUBECONFIG=/etc/kubernetes/admin.conf
SERVICE_SUBNETS=""
ENDPOINT=""
K8S_VERSION=""
API_TIMEOUT=300
KUBEADM_ARGS=()

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
	case "$1" in
	--pod-subnet) need_value "$1" $#; POD_SUBNETS=$2; shift 2 ;;
	--pod-subnet=*) POD_SUBNETS=${1#*=}; shift ;;
	--service-subnet) need_value "$1" $#; SERVICE_SUBNETS=$2; shift 2 ;;
	--service-subnet=*) SERVICE_SUBNETS=${1#*=}; shift ;;
	--control-plane-endpoint) need_value "$1" $#; ENDPOINT=$2; shift 2 ;;
	--control-plane-endpoint=*) ENDPOINT=${1#*=}; shift ;;
	--kubernetes-version) need_value "$1" $#; K8S_VERSION=$2; shift 2 ;;
	--kubernetes-version=*) K8S_VERSION=${1#*=}; shift ;;
	--node-name) need_value "$1" $#; NODE_NAME=$2; shift 2 ;;
	--node-name=*) NODE_NAME=${1#*=}; shift ;;
	--package) need_value "$1" $#; PACKAGE=$2; shift 2 ;;
	--package=*) PACKAGE=${1#*=}; shift ;;
	--api-timeout) need_value "$1" $#; API_TIMEOUT=$2; shift 2 ;;
	--api-timeout=*) API_TIMEOUT=${1#*=}; shift ;;
	--dry-run) DRY_RUN=1; shift ;;
	-h | --help) usage; exit 0 ;;
	--) shift; KUBEADM_ARGS=("$@"); break ;;
	*) usage_error "unknown argument '$1'" ;;
	esac
done

check_pod_subnets
check_node_name
check_package_arg
if [ -n "$SERVICE_SUBNETS" ]; then
	IFS=, read -r -a svc <<<"$SERVICE_SUBNETS"
	for c in "${svc[@]}"; do
		valid_cidr "$c" || usage_error "--service-subnet: '$c' is not a CIDR such as 10.96.0.0/12"
	done
fi
[[ $API_TIMEOUT =~ ^[0-9]+$ ]] || usage_error "--api-timeout: '$API_TIMEOUT' is not a number of seconds"
need_root
need_commands kubeadm kubectl systemctl

install_package
write_config

if [ -e "$ADMIN_KUBECONFIG" ]; then
	say "$ADMIN_KUBECONFIG exists: the control plane is initialized; not running kubeadm init"
else
	init=(kubeadm init "--pod-network-cidr=$POD_SUBNETS")
	[ -n "$SERVICE_SUBNETS" ] && init+=("--service-cidr=$SERVICE_SUBNETS")
	[ -n "$ENDPOINT" ] && init+=("--control-plane-endpoint=$ENDPOINT")
	[ -n "$K8S_VERSION" ] && init+=("--kubernetes-version=$K8S_VERSION")
	[ -n "$NODE_NAME" ] && init+=("--node-name=$NODE_NAME")
	run "${init[@]}" "${KUBEADM_ARGS[@]}"
fi

start_agent

# The API server comes up a little after kubeadm init returns (and after a
# reboot, well after): wait for it before applying RBAC.
kubectl_admin=(kubectl "--kubeconfig=$ADMIN_KUBECONFIG")
if [ "$DRY_RUN" = 1 ]; then
	run "${kubectl_admin[@]}" get --raw=/readyz
else
	say "waiting up to ${API_TIMEOUT}s for the API server"
	deadline=$((SECONDS + API_TIMEOUT))
	until "${kubectl_admin[@]}" get --raw=/readyz >/dev/null 2>&1; do
		[ "$SECONDS" -lt "$deadline" ] || die "the API server did not become ready within ${API_TIMEOUT}s: see 'crictl ps -a' and 'journalctl -u kubelet'"
		sleep 2
	done
fi

# `kindnet rbac` prints the ClusterRole and ClusterRoleBinding that let the
# nodes' kubelet identities list and watch Nodes. kubectl apply is
# idempotent: a second run reports "unchanged".
if [ "$DRY_RUN" = 0 ] && ! kindnet rbac --help >/dev/null 2>&1; then
	die "this kindnet has no 'rbac' command: install a kindnet with the Kubernetes API source"
fi
run_sh "kindnet rbac | kubectl --kubeconfig=$ADMIN_KUBECONFIG apply -f -"

# The join command, with a token that is still valid if there is one (so a
# second run does not create another), else a new one.
if [ "$DRY_RUN" = 1 ]; then
	run kubeadm token list
	run kubeadm token create
	echo "would print: the kubeadm join command and the matching kubeadm-join.sh call"
	exit 0
fi
token=$(kubeadm token list -o jsonpath='{.token}{"\n"}' 2>/dev/null | head -n 1)
if [ -z "$token" ]; then
	token=$(kubeadm token create)
fi
server=$("${kubectl_admin[@]}" config view --minify -o jsonpath='{.clusters[0].cluster.server}')
hash=$(openssl x509 -pubkey -noout -in /etc/kubernetes/pki/ca.crt |
	openssl pkey -pubin -outform der 2>/dev/null |
	openssl dgst -sha256 -hex | sed 's/^.* //')
join_args="${server#https://} --token $token --discovery-token-ca-cert-hash sha256:$hash"
pkg_hint=${PACKAGE:+ --package $(basename "$PACKAGE")}
cat <<EOF

The control plane is up with kindnet. On every other node, run:

  scripts/kubeadm-join.sh --pod-subnet $POD_SUBNETS$pkg_hint -- $join_args

(or by hand: install kindnet, write $KINDNET_CONFIG_FILE as above, then
  kubeadm join $join_args)
EOF
