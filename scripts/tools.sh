#!/usr/bin/env bash
# Builds the third-party tools the tests drive (for example a real
# kube-apiserver, containerd) from the Go module proxy, once per version,
# into a cache outside the repository: ${KINDNET_TOOLS:-~/.cache/kindnet}.
# A second run finds them cached and takes seconds.
#
#   scripts/tools.sh all        build every tool that is missing
#   scripts/tools.sh path NAME  print the cached path of a tool
#   scripts/tools.sh ensure NAME  build one tool if it is missing
set -euo pipefail
CACHE="${KINDNET_TOOLS:-$HOME/.cache/kindnet}"
mkdir -p "$CACHE"

# Each tool NAME has ensure_NAME (build it into the cache unless it is there)
# and path_NAME (print where it is); the list TOOLS names them.
TOOLS=()

# go_install DIR PKG@VERSION...: build Go commands into DIR, atomically (a
# half-built DIR never looks complete).
go_install() {
	local dir=$1
	shift
	rm -rf "$dir.tmp"
	mkdir -p "$dir.tmp"
	echo "tools: building $* into $dir" >&2
	GOBIN="$dir.tmp" CGO_ENABLED=0 go install -trimpath "$@"
	rm -rf "$dir"
	mv "$dir.tmp" "$dir"
}

# containerd 2.x for the CNI runtime tests (test/cri): containerd, its runc
# shim and ctr, built from the module proxy. runc itself is Debian's.
CONTAINERD2_VERSION=v2.4.2
path_containerd2() { echo "$CACHE/containerd-$CONTAINERD2_VERSION"; }
ensure_containerd2() {
	local d
	d=$(path_containerd2)
	[ -x "$d/containerd" ] && [ -x "$d/containerd-shim-runc-v2" ] && [ -x "$d/ctr" ] && return 0
	go_install "$d" github.com/containerd/containerd/v2/cmd/{containerd,containerd-shim-runc-v2,ctr}@"$CONTAINERD2_VERSION"
}
TOOLS+=(containerd2)

# crictl drives containerd's CRI API in the runtime tests.
CRICTL_VERSION=v1.37.0
path_crictl() { echo "$CACHE/crictl-$CRICTL_VERSION/crictl"; }
ensure_crictl() {
	local d
	d=$(dirname "$(path_crictl)")
	[ -x "$d/crictl" ] && return 0
	go_install "$d" sigs.k8s.io/cri-tools/cmd/crictl@"$CRICTL_VERSION"
}
TOOLS+=(crictl)

usage() { sed -n '2,9p' "$0"; exit 64; }

# nfpm builds the .deb and .rpm (make packages). Pinned: the package layout
# and the lintian/rpmlint results are checked against this version.
NFPM_VERSION=v2.48.0
TOOLS+=(nfpm)
path_nfpm() { echo "$CACHE/nfpm-$NFPM_VERSION/nfpm"; }
ensure_nfpm() {
	local dir tmp
	dir=$(dirname "$(path_nfpm)")
	[ -x "$dir/nfpm" ] && return 0
	echo "building nfpm $NFPM_VERSION into $dir"
	# Build into a temporary directory and rename it, so an interrupted
	# build never leaves a half-written tool that looks cached.
	tmp=$(mktemp -d "$CACHE/.nfpm.XXXXXX")
	if ! GOBIN="$tmp" CGO_ENABLED=0 go install "github.com/goreleaser/nfpm/v2/cmd/nfpm@$NFPM_VERSION"; then
		rm -rf "$tmp"
		return 1
	fi
	chmod 0755 "$tmp"
	mv "$tmp" "$dir"
}

ROOT="$(cd "$(dirname "$0")/.." && pwd)"

# The real control plane the Kubernetes-source tests run against, built from
# the wrapper module test/kube (its go.mod pins both versions; keep these in
# step with it). Built with `nice`: the kube-apiserver link alone needs ~2.8 GB
# and ~5 minutes on 2 cores when cold.
KUBE_VERSION=v1.37.2
ETCD_VERSION=v3.7.0

# build_in_wrapper OUT PKG [LDFLAGS]: go build PKG from test/kube into OUT,
# through a temporary name so an interrupted build never looks cached.
build_in_wrapper() {
	local out="$1" pkg="$2" ldflags="${3:-}"
	mkdir -p "$(dirname "$out")"
	echo "building $pkg -> $out" >&2
	(cd "$ROOT/test/kube" && CGO_ENABLED=0 nice go build -trimpath \
		-ldflags "-s -w $ldflags" -o "$out.tmp" "$pkg")
	mv -f "$out.tmp" "$out"
}

path_kube_apiserver() { echo "$CACHE/kube-apiserver-$KUBE_VERSION/kube-apiserver"; }
ensure_kube_apiserver() {
	local out minor
	out="$(path_kube_apiserver)"
	[ -x "$out" ] && return 0
	minor="${KUBE_VERSION#v1.}"; minor="${minor%%.*}"
	local v="k8s.io/component-base/version"
	build_in_wrapper "$out" k8s.io/kubernetes/cmd/kube-apiserver \
		"-X $v.gitVersion=$KUBE_VERSION -X $v.gitMajor=1 -X $v.gitMinor=$minor -X $v.gitTreeState=clean"
}
TOOLS+=(kube_apiserver)

path_etcd() { echo "$CACHE/etcd-$ETCD_VERSION/etcd"; }
ensure_etcd() {
	local out
	out="$(path_etcd)"
	[ -x "$out" ] && return 0
	build_in_wrapper "$out" go.etcd.io/etcd/server/v3
}
TOOLS+=(etcd)

# The rest of a real cluster (scripts/cluster.sh, make conformance): the
# node and control-plane components, built from the same wrapper module and
# version as kube-apiserver, into one directory. One `go build` of all of
# them compiles each shared package once.
KUBE_BINS=(kubelet kube-proxy kube-controller-manager kube-scheduler kubectl kubeadm)
path_kubernetes() { echo "$CACHE/kubernetes-$KUBE_VERSION"; }
ensure_kubernetes() {
	local dir tmp b pkgs=() minor v="k8s.io/component-base/version"
	dir="$(path_kubernetes)"
	local missing=0
	for b in "${KUBE_BINS[@]}" agnhost; do [ -x "$dir/$b" ] || missing=1; done
	[ "$missing" = 0 ] && return 0
	for b in "${KUBE_BINS[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$b"); done
	minor="${KUBE_VERSION#v1.}"; minor="${minor%%.*}"
	tmp="$dir.tmp"
	rm -rf "$tmp"; mkdir -p "$tmp"
	echo "building ${KUBE_BINS[*]} agnhost $KUBE_VERSION -> $dir" >&2
	(cd "$ROOT/test/kube" && CGO_ENABLED=0 nice go build -trimpath -o "$tmp/" \
		-ldflags "-s -w -X $v.gitVersion=$KUBE_VERSION -X $v.gitMajor=1 -X $v.gitMinor=$minor -X $v.gitTreeState=clean" \
		"${pkgs[@]}" k8s.io/kubernetes/test/images/agnhost)
	rm -rf "$dir"; mv "$tmp" "$dir"
}
TOOLS+=(kubernetes)

# e2e.test, the upstream end-to-end suite, for make conformance only: the
# smoke test in make test does not need it, so `tools.sh all` leaves it out.
path_e2e_test() { echo "$CACHE/kubernetes-$KUBE_VERSION-e2e/e2e.test"; }
ensure_e2e_test() {
	local out minor v="k8s.io/component-base/version"
	out="$(path_e2e_test)"
	[ -x "$out" ] && return 0
	minor="${KUBE_VERSION#v1.}"; minor="${minor%%.*}"
	mkdir -p "$(dirname "$out")"
	echo "building e2e.test $KUBE_VERSION -> $out" >&2
	(cd "$ROOT/test/kube" && CGO_ENABLED=0 nice go test -c -trimpath -o "$out.tmp" \
		-ldflags "-s -w -X $v.gitVersion=$KUBE_VERSION -X $v.gitMajor=1 -X $v.gitMinor=$minor -X $v.gitTreeState=clean" \
		k8s.io/kubernetes/test/e2e)
	mv -f "$out.tmp" "$out"
}

# The ginkgo CLI runs e2e.test's specs in parallel processes (make
# conformance): e2e.test alone runs them one after another. Its version is
# the one test/kube's go.mod pins, as the CLI and the suite must agree.
GINKGO_VERSION=v2.32.0
path_ginkgo() { echo "$CACHE/ginkgo-$GINKGO_VERSION/ginkgo"; }
ensure_ginkgo() {
	local d
	d=$(dirname "$(path_ginkgo)")
	[ -x "$d/ginkgo" ] && return 0
	go_install "$d" github.com/onsi/ginkgo/v2/ginkgo@"$GINKGO_VERSION"
}

# CoreDNS with only the plugins the cluster DNS uses (test/coredns).
COREDNS_VERSION=v1.14.6
path_coredns() { echo "$CACHE/coredns-$COREDNS_VERSION/coredns"; }
ensure_coredns() {
	local out
	out="$(path_coredns)"
	[ -x "$out" ] && return 0
	mkdir -p "$(dirname "$out")"
	echo "building coredns $COREDNS_VERSION -> $out" >&2
	(cd "$ROOT/test/coredns" && CGO_ENABLED=0 nice go build -trimpath -ldflags "-s -w" -o "$out.tmp" .)
	mv -f "$out.tmp" "$out"
}
TOOLS+=(coredns)

# staticcheck for make lint only (so `tools.sh all`, which make test runs,
# leaves it out). Pinned: a new release brings new checks, and the
# exclusions in staticcheck.conf are judged against this one.
STATICCHECK_VERSION=v0.8.2
path_staticcheck() { echo "$CACHE/staticcheck-$STATICCHECK_VERSION/staticcheck"; }
ensure_staticcheck() {
	local d
	d=$(dirname "$(path_staticcheck)")
	[ -x "$d/staticcheck" ] && return 0
	go_install "$d" honnef.co/go/tools/cmd/staticcheck@"$STATICCHECK_VERSION"
}

# qemu-user-static for the foreign-architecture checks (make test-arch,
# test/emul): Debian's statically linked user-mode emulators, fetched with
# `apt-get download` and unpacked into the cache. Never installed on the
# machine and never registered with binfmt_misc: the tests run them by
# path (go test -exec scripts/qemu-exec.sh, or a wrapper script).
# The version is the one apt offers, so a Debian security update is
# picked up; only the emulators the checks use are kept.
QEMU_ARCHES=(aarch64 arm i386 riscv64)
qemu_version() {
	local v
	v=$(apt-cache policy qemu-user-static 2>/dev/null | awk '/Candidate:/ {print $2}')
	if { [ -z "$v" ] || [ "$v" = "(none)" ]; } && [ "$(id -u)" = 0 ] &&
		! find "$CACHE" -maxdepth 1 -name 'qemu-*' -type d | grep -q .; then
		# A fresh machine without apt lists and nothing cached: read them.
		apt-get update -qq >&2 || true
		v=$(apt-cache policy qemu-user-static 2>/dev/null | awk '/Candidate:/ {print $2}')
	fi
	if [ -z "$v" ] || [ "$v" = "(none)" ]; then
		# No apt lists (apt-get update not run): use what is cached.
		v=$(find "$CACHE" -maxdepth 1 -name 'qemu-*' -type d -printf '%f\n' 2>/dev/null | sed 's/^qemu-//' | sort -V | tail -1)
	fi
	[ -n "$v" ] || { echo "tools.sh: qemu-user-static: apt knows no version and none is cached; run apt-get update" >&2; return 1; }
	echo "${v//:/_}"
}
path_qemu() { echo "$CACHE/qemu-$(qemu_version)"; }
ensure_qemu() {
	local dir tmp a
	dir=$(path_qemu)
	local missing=0
	for a in "${QEMU_ARCHES[@]}"; do [ -x "$dir/qemu-$a-static" ] || missing=1; done
	[ "$missing" = 0 ] && return 0
	echo "tools: fetching qemu-user-static into $dir" >&2
	tmp=$(mktemp -d "$CACHE/.qemu.XXXXXX")
	# apt-get download writes into the current directory, as the _apt user
	# when it can: give it a directory it may write.
	chmod 0777 "$tmp"
	if ! (cd "$tmp" && apt-get download -q qemu-user-static >&2); then
		rm -rf "$tmp"
		echo "tools.sh: apt-get download qemu-user-static failed" >&2
		return 1
	fi
	dpkg-deb -x "$tmp"/qemu-user-static_*.deb "$tmp/x"
	mkdir -p "$tmp/out"
	for a in "${QEMU_ARCHES[@]}"; do
		mv "$tmp/x/usr/bin/qemu-$a-static" "$tmp/out/"
	done
	rm -rf "$dir"
	mv "$tmp/out" "$dir"
	chmod 0755 "$dir"
	rm -rf "$tmp"
}
TOOLS+=(qemu)


case "${1:-}" in
all)
	for t in "${TOOLS[@]}"; do "ensure_$t"; done
	;;
path)
	[ -n "${2:-}" ] || usage
	"path_$2"
	;;
ensure)
	[ -n "${2:-}" ] || usage
	"ensure_$2"
	;;
*) usage ;;
esac
