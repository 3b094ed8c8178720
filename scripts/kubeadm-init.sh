#!/usr/bin/env bash
# Bootstrap the first control-plane node of a kubeadm cluster with kindnet.
#
#   kubeadm-init.sh --pod-subnet CIDR[,CIDR] [--package FILE] [options] [-- KUBEADM-INIT-ARGS...]
#
# Steps, each skipped when already done (a second run changes nothing):
#   1. install the kindnet package (--package; skipped if that version is in)
#   2. write /etc/kindnet/config.yaml: clusterCIDRs = the pod subnet(s)
#   3. start kindnet.service: it turns on IP forwarding (which kubeadm's
#      preflight checks), then waits for kubelet's kubeconfig
#   4. kubeadm init --config (skipped if admin.conf exists), with a kubeadm
#      config written from the options below (plus --kubeadm-config)
#   5. wait for the API server, then apply kindnet's RBAC with admin.conf:
#        kindnet rbac | kubectl --kubeconfig=/etc/kubernetes/admin.conf apply -f -
#      (nodes may list all Nodes: needed since Kubernetes 1.32's Node
#      authorizer; `kindnet rbac` prints that ClusterRole and binding)
#   6. write the join configuration for the other nodes, with a short-lived
#      bootstrap token, to /etc/kubernetes/kindnet-join.yaml (mode 0600)
#      and print how to use it. The token is never printed nor put on a
#      command line; the still valid token of an earlier run is kept.
#
# Options:
#   --pod-subnet CIDR[,CIDR]   cluster pod range(s), one per IP family (required)
#   --service-subnet CIDR[,CIDR]  service range(s) (kubeadm's default otherwise)
#   --control-plane-endpoint HOST[:PORT]  shared endpoint for more control planes
#   --kubernetes-version VERSION  the control plane's version (default: kubeadm
#                              asks the Internet for the latest stable one)
#   --node-name NAME           this node's name (default: the hostname)
#   --package FILE             kindnet .deb or .rpm to install
#   --kubeadm-config FILE      more kubeadm config documents for kubeadm init,
#                              such as a KubeletConfiguration or a
#                              KubeProxyConfiguration (not Init- or
#                              ClusterConfiguration: this script writes those)
#   --token-ttl DURATION       how long the join token is valid (default 1h)
#   --api-timeout SECONDS      how long to wait for the API server (default 300)
#   --dry-run                  print the config and the commands, change nothing
#   -h, --help                 this text
# Arguments after -- go to kubeadm init unchanged; kubeadm takes only the
# flags that go with --config there (--ignore-preflight-errors, --skip-*, -v).
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
TOKEN_TTL=1h
EXTRA_CONFIG=""
JOIN_FILE=/etc/kubernetes/kindnet-join.yaml
# The group kubeadm's join flow authorizes (its default node token's).
TOKEN_GROUP=system:bootstrappers:kubeadm:default-node-token
TOKEN_DESCRIPTION="kindnet: joins nodes (kubeadm-init.sh)"
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
	--kubeadm-config) need_value "$1" $#; EXTRA_CONFIG=$2; shift 2 ;;
	--kubeadm-config=*) EXTRA_CONFIG=${1#*=}; shift ;;
	--token-ttl) need_value "$1" $#; TOKEN_TTL=$2; shift 2 ;;
	--token-ttl=*) TOKEN_TTL=${1#*=}; shift ;;
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
# A Go duration as kubeadm takes it. Not 0, which kubeadm reads as "never
# expires": the join token is meant to be short-lived.
if [[ ! $TOKEN_TTL =~ ^([0-9]+(h|m|s))+$ ]] || [[ $TOKEN_TTL =~ ^(0+[hms])+$ ]]; then
	usage_error "--token-ttl: '$TOKEN_TTL' is not a duration such as 30m or 2h (0, never expiring, is refused)"
fi
if [ -n "$EXTRA_CONFIG" ]; then
	[ -r "$EXTRA_CONFIG" ] || usage_error "--kubeadm-config: cannot read '$EXTRA_CONFIG'"
	if grep -Eq '^kind:[[:space:]]*(InitConfiguration|ClusterConfiguration)[[:space:]]*$' "$EXTRA_CONFIG"; then
		usage_error "--kubeadm-config: '$EXTRA_CONFIG' has an InitConfiguration or a ClusterConfiguration; this script writes those from its options (give other kinds only, such as KubeletConfiguration or KubeProxyConfiguration)"
	fi
fi
need_root
need_commands kubeadm kubectl systemctl

install_package
write_config
# Before kubeadm: the agent turns on forwarding, which kubeadm's preflight
# checks, and kubelet (ordered after it) then finds the pod network in
# place as soon as the node has a pod range.
start_agent

# kubeadm_config TOKEN prints the InitConfiguration and ClusterConfiguration
# of this control plane, then the documents of --kubeadm-config. TOKEN is
# the bootstrap token kubeadm init creates: short-lived, where kubeadm's
# default lives 24 hours.
kubeadm_config() {
	cat <<EOF
apiVersion: kubeadm.k8s.io/v1beta4
kind: InitConfiguration
bootstrapTokens:
- token: "$1"
  description: "$TOKEN_DESCRIPTION"
  ttl: $TOKEN_TTL
  usages: [signing, authentication]
  groups: [$TOKEN_GROUP]
EOF
	if [ -n "$NODE_NAME" ]; then
		printf 'nodeRegistration:\n  name: %s\n' "$NODE_NAME"
	fi
	cat <<EOF
---
apiVersion: kubeadm.k8s.io/v1beta4
kind: ClusterConfiguration
networking:
  podSubnet: "$POD_SUBNETS"
EOF
	if [ -n "$SERVICE_SUBNETS" ]; then printf '  serviceSubnet: "%s"\n' "$SERVICE_SUBNETS"; fi
	if [ -n "$ENDPOINT" ]; then printf 'controlPlaneEndpoint: "%s"\n' "$ENDPOINT"; fi
	if [ -n "$K8S_VERSION" ]; then printf 'kubernetesVersion: "%s"\n' "$K8S_VERSION"; fi
	if [ -n "$EXTRA_CONFIG" ]; then
		echo "---"
		cat "$EXTRA_CONFIG"
	fi
}

if [ -e "$ADMIN_KUBECONFIG" ]; then
	say "$ADMIN_KUBECONFIG exists: the control plane is initialized; not running kubeadm init"
elif [ "$DRY_RUN" = 1 ]; then
	echo "would write a kubeadm config (mode 0600, removed after kubeadm init):"
	kubeadm_config "<a new token from kubeadm token generate>" | sed 's/^/    /'
	run kubeadm init --config=KUBEADM-CONFIG --skip-token-print "${KUBEADM_ARGS[@]}"
else
	# The config holds the bootstrap token: root-only, and removed once
	# kubeadm has read it. --skip-token-print keeps kubeadm from printing
	# it in its closing join command.
	init_dir=$(mktemp -d)
	trap 'rm -rf "$init_dir"' EXIT
	(
		umask 077
		kubeadm_config "$(kubeadm token generate)" >"$init_dir/kubeadm.yaml"
	)
	run kubeadm init "--config=$init_dir/kubeadm.yaml" --skip-token-print "${KUBEADM_ARGS[@]}"
	rm -rf "$init_dir"
fi

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

# The join configuration: a kubeadm JoinConfiguration in a root-only file,
# with a bootstrap token that is a join token (signing and authentication,
# kubeadm's node group) and short-lived. An earlier run's token is kept
# while it has at least 10 minutes left, so a second run changes nothing;
# otherwise a new one is made. Tokens are never printed, logged or passed
# on a command line (where every user of the machine sees them in ps).
if [ "$DRY_RUN" = 1 ]; then
	run kubeadm token create --ttl "$TOKEN_TTL" --usages signing,authentication --groups "$TOKEN_GROUP" \
		--description "$TOKEN_DESCRIPTION"
	echo "would write $JOIN_FILE (mode 0600): a kubeadm JoinConfiguration with that token"
	exit 0
fi

# token_field ID FIELD prints one field of a bootstrap token's Secret
# (kube-system/bootstrap-token-ID), decoded.
token_field() {
	"${kubectl_admin[@]}" -n kube-system get secret "bootstrap-token-$1" -o "jsonpath={.data.$2}" 2>/dev/null |
		base64 -d 2>/dev/null
}

# usable_token TOKEN: the token exists, is ours (its description), is a
# join token and nothing more, and has at least 10 minutes left.
usable_token() {
	local id=${1%%.*} secret=${1#*.} exp
	[[ $1 =~ ^[a-z0-9]{6}\.[a-z0-9]{16}$ ]] || return 1
	[ "$(token_field "$id" token-secret)" = "$secret" ] || return 1
	[ "$(token_field "$id" description)" = "$TOKEN_DESCRIPTION" ] || return 1
	[ "$(token_field "$id" usage-bootstrap-authentication)" = true ] || return 1
	[ "$(token_field "$id" usage-bootstrap-signing)" = true ] || return 1
	[ "$(token_field "$id" auth-extra-groups)" = "$TOKEN_GROUP" ] || return 1
	exp=$(token_field "$id" expiration)
	[ -n "$exp" ] || return 1 # never expires: not short-lived
	exp=$(date -d "$exp" +%s 2>/dev/null) || return 1
	[ "$exp" -gt $(($(date +%s) + 600)) ]
}

# The token to hand over: the one in the join file of an earlier run, else
# the one kubeadm init just created from our config, else a new one.
token=""
if [ -r "$JOIN_FILE" ]; then
	token=$(sed -n 's/^    token: "\([a-z0-9.]*\)"$/\1/p' "$JOIN_FILE" | head -n 1)
fi
if [ -n "$token" ] && ! usable_token "$token"; then
	token=""
fi
if [ -z "$token" ]; then
	while read -r t; do
		if usable_token "$t"; then
			token=$t
			break
		fi
	done < <(kubeadm token list -o jsonpath='{.token}{"\n"}' 2>/dev/null)
fi
if [ -z "$token" ]; then
	token=$(kubeadm token create --ttl "$TOKEN_TTL" --usages signing,authentication --groups "$TOKEN_GROUP" \
		--description "$TOKEN_DESCRIPTION")
	say "created a join token valid for $TOKEN_TTL"
fi
server=$("${kubectl_admin[@]}" config view --minify -o jsonpath='{.clusters[0].cluster.server}')
hash=$(openssl x509 -pubkey -noout -in /etc/kubernetes/pki/ca.crt |
	openssl pkey -pubin -outform der 2>/dev/null |
	openssl dgst -sha256 -hex | sed 's/^.* //')
join_config=$(
	cat <<EOF
# Written by kubeadm-init.sh: joins a node to this cluster, with
# kubeadm-join.sh --join-config FILE (or kubeadm join --config FILE).
# It holds a bootstrap token: keep it root-only (mode 0600), delete it
# once the nodes have joined.
apiVersion: kubeadm.k8s.io/v1beta4
kind: JoinConfiguration
discovery:
  bootstrapToken:
    apiServerEndpoint: "${server#https://}"
    token: "$token"
    caCertHashes: ["sha256:$hash"]
EOF
)
if [ -e "$JOIN_FILE" ] && [ "$(cat "$JOIN_FILE")" = "$join_config" ]; then
	say "$JOIN_FILE is up to date"
else
	tmp=$(umask 077 && mktemp "$JOIN_FILE.XXXXXX")
	printf '%s\n' "$join_config" >"$tmp"
	mv "$tmp" "$JOIN_FILE"
	say "wrote $JOIN_FILE"
fi
chmod 0600 "$JOIN_FILE"
expires=$(token_field "${token%%.*}" expiration || true)
expires=${expires:-"its expiry (kubeadm token list)"}
unset token join_config
pkg_hint=${PACKAGE:+ --package $(basename "$PACKAGE")}
cat <<EOF

The control plane is up with kindnet. To join another node, copy
$JOIN_FILE to it, readable by root only (e.g. scp -p; its token is
valid until $expires), then run there:

  scripts/kubeadm-join.sh --pod-subnet $POD_SUBNETS$pkg_hint --join-config kindnet-join.yaml

(or by hand: install kindnet, write $KINDNET_CONFIG_FILE as above, start
kindnet.service, then kubeadm join --config kindnet-join.yaml)
EOF
