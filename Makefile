# kindnet — build, test, demo.  `make help` lists the targets.
SHELL := /bin/bash
GO ?= go
export CGO_ENABLED := 0

VERSION ?= $(or $(shell git describe --tags --match 'v*' 2>/dev/null | sed 's/^v//'),0.1.0-dev)
COMMIT  ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
DATE    ?= $(shell date -u +%Y-%m-%dT%H:%M:%SZ)
PKG     := github.com/kindnet-dev/kindnet/internal/buildinfo
LDFLAGS := -s -w -X $(PKG).Version=$(VERSION) -X $(PKG).Commit=$(COMMIT) -X $(PKG).Date=$(DATE)

# Debian packages the tests, the lab and the demo use. containerd and runc
# are run by test/cri with configs of their own (their packages start no
# daemon on a host without systemd; on one with it, they start containerd).
# containernetworking-plugins: loopback for test/cri, ptp and host-local for
# make bench-cni.
DEB_DEPS := iproute2 nftables iputils-ping iperf3 containernetworking-plugins procps containerd runc util-linux
# ... and the packaging tests: lint the packages, read the rpm, boot a
# throwaway systemd, check the scripts; man-db lets systemd-analyze verify
# the unit's Documentation=man:… pages.
DEB_DEPS += lintian rpmlint rpm shellcheck systemd man-db
# ... and the benchmarks: GNU time reads the CNI plugin's peak memory.
DEB_DEPS += time
# ... and the cluster's container images (test/cluster/images), made of
# these programs and the files they read: what the e2e tests run in pods.
DEB_DEPS += busybox-static dash netcat-openbsd curl wget bind9-dnsutils socat libc-bin netbase ca-certificates iptables

# make packages: where they go, who packs them, and for which architectures
# (Debian names; empty means all four).
ARCHES     ?=
DIST       ?= dist
MAINTAINER ?= kindnet developers <maintainers@users.noreply.r-seed-3403187e.example>

.PHONY: cluster cluster-down cluster-status
NODES ?= 3
cluster: deps tools build ## a real cluster (NODES=3): control plane, nodes with kindnet, containerd, kubelet, kube-proxy, CoreDNS (root); docs/cluster.md
	NODES=$(NODES) scripts/cluster.sh up

cluster-down: ## remove every cluster made by make cluster, every trace (root)
	scripts/cluster.sh down

cluster-status: ## nodes, pods, kindnet status per node and how to run kubectl, for each cluster (root)
	scripts/cluster.sh status

# The upstream e2e network tests (issue 13): [sig-network] conformance and
# dual-stack, on a fresh 3-node cluster that is removed afterwards. The
# report goes to conformance/results/latest.md (and a dated copy).
.PHONY: conformance
conformance: deps tools build ## run e2e.test's [sig-network] conformance and dual-stack tests on a fresh cluster; report in conformance/results (root, ~12 min)
	scripts/tools.sh ensure e2e_test
	scripts/tools.sh ensure ginkgo
	./bin/kindnet-cluster conformance --nodes $(NODES)

.PHONY: help build test test-arch test-unit fuzz bench-cni demo deps tools lint clean packages bench-kube soak

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

build: ## build bin/kindnet (agent CLI, static), bin/cni/kindnet (the lean CNI plugin), bin/kindnet-lab and bin/kindnet-cluster
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/kindnet ./cmd/kindnet
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/cni/kindnet ./cmd/kindnet-cni
	$(GO) build -trimpath -o bin/kindnet-lab ./test/lab/kindnet-lab
	$(GO) build -trimpath -o bin/kindnet-cluster ./test/cluster/kindnet-cluster

packages: ## build $(DIST)/kindnet_<version>_<arch>.deb and kindnet-<version>-1.<arch>.rpm for each of ARCHES (default amd64 arm64 armhf riscv64; nfpm)
	scripts/tools.sh ensure nfpm
	VERSION='$(VERSION)' COMMIT='$(COMMIT)' LDFLAGS='$(LDFLAGS)' DIST='$(DIST)' \
	NFPM="$$(scripts/tools.sh path nfpm)" MAINTAINER='$(MAINTAINER)' GO='$(GO)' ARCHES='$(ARCHES)' \
	packaging/build.sh packages

deps: ## install the Debian packages the tests and the lab need (root)
	@missing=$$(for p in $(DEB_DEPS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing: $$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

tools: ## build the third-party tools tests drive (cached in ~/.cache/kindnet)
	scripts/tools.sh all

test: deps tools ## run every test, including the root-only network-namespace, lab, runtime and API-server tests, the emulated arm64/armhf unit tests
	$(GO) test -count=1 -timeout 60m ./...
	$(MAKE) fuzz
	$(MAKE) test-arch

# Every fuzz target, as package:Target:executions. A count, not a duration:
# Go 1.26's coordinator can fail a duration-bounded run with a bare "context
# deadline exceeded" at the deadline under load (go.dev/issue/75804, fixed
# in 1.27). Counts are sized for roughly 10-30 s each on a 2-core machine;
# FUZZSCALE multiplies them (make fuzz FUZZSCALE=20 for a long session).
# A crasher lands in the package's testdata/fuzz and then fails `go test`.
FUZZSCALE ?= 1
FUZZ_TARGETS := pkg/config:FuzzConfigFile:20000 pkg/nodesfile:FuzzNodesFile:60000 \
	pkg/cache:FuzzCache:20000 pkg/cni:FuzzParse:100000 pkg/cni:FuzzValidateArgs:100000 pkg/ipam:FuzzStateFile:6000 \
	pkg/status:FuzzDecodeRecord:60000
fuzz: ## run every fuzz target for a bounded number of executions
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; rest=$${t#*:}; name=$${rest%%:*}; n=$$(( $${rest#*:} * $(FUZZSCALE) )); \
		echo "fuzz $$name in ./$$pkg for $$n executions"; \
		$(GO) test -run='^$$' -fuzz="^$$name\$$" -fuzztime=$${n}x ./$$pkg/ ; \
	done

# test-unit runs, as any user, every test that needs no more than
# CAP_NET_ADMIN in network namespaces it creates: the pure tests and the
# netlink/nftables/sysctl ones, inside scripts/in-userns.sh (an unprivileged
# user + network + mount namespace, `unshare -Urnm`). Tests that need the
# host's root (netnstest.RequireHostRoot: systemd, packages, containerd,
# root-owned files) skip there. The namespace has no route out, so the
# modules are fetched first. On a kernel without unprivileged user
# namespaces it says so and runs the tests as they are (kernel ones skip).
test-unit: ## run the tests any user can, the netlink/nftables ones in an unprivileged user namespace
	$(GO) mod download
	@rc=0; scripts/in-userns.sh true || rc=$$?; \
	if [ $$rc -eq 0 ]; then scripts/in-userns.sh $(GO) test -count=1 ./...; \
	elif [ $$rc -eq 3 ]; then echo "test-unit: no user namespaces here: the kernel tests skip" >&2; $(GO) test -count=1 ./...; \
	else exit $$rc; fi

# The unit tests of the packages that need no root (no network namespace,
# no kernel), for other architectures: arm64 and armhf run under Debian's
# user-mode emulator through go test -exec (scripts/qemu-exec.sh; the
# emulators are cached by scripts/tools.sh, never installed or registered
# with binfmt_misc). 386 is vetted (tests type-checked too), not run: this
# machine's kernel refuses to exec 32-bit x86 binaries (ENOEXEC) and
# qemu-i386 7.2 crashes Go's 386 runtime at start; armhf is the 32-bit run.
# The root-only packages are proved under emulation by test/emul (make test).
ARCH_TEST_PKGS := ./pkg/atomicfile/ ./pkg/cache/ ./pkg/config/ ./pkg/ipam/ ./pkg/kube/... \
	./pkg/logging/ ./pkg/metrics/ ./pkg/model/ ./pkg/nldump/ ./pkg/nodesfile/ ./pkg/status/ \
	./internal/deprules/
test-arch: tools ## unit tests that need no root, emulated for arm64 and armhf; GOARCH=386 vet (~5 min on 2 cores)
	GOARCH=386 $(GO) vet ./...
	GOARCH=arm64 $(GO) test -count=1 -exec $(CURDIR)/scripts/qemu-exec.sh $(ARCH_TEST_PKGS)
	GOARCH=arm GOARM=7 $(GO) test -count=1 -exec $(CURDIR)/scripts/qemu-exec.sh $(ARCH_TEST_PKGS)

BENCHRUNS ?= 100
bench-cni: deps build ## CNI ADD/DEL latency, kindnet vs reference ptp+host-local, sequential and 20 parallel (root)
	KINDNET_BIN=$(CURDIR)/bin/cni/kindnet CNIBENCH_OUT=$(CURDIR)/bench/results/cni-latest.md $(GO) test -v -run '^$$' -bench BenchmarkCNI -benchtime $(BENCHRUNS)x -timeout 60m ./test/cnibench/

bench-kube: deps tools ## Kubernetes source against a real API server: create→route latency, 5,000-node sync and RSS, resync after 30 s and 10 min outages (root, about 25 min)
	$(GO) test -count=1 -run '^$$' -bench '^BenchmarkKube' -benchtime 1x -timeout 60m ./test/e2e/

# The soak (test/e2e/soak_test.go): SOAK long under pod churn, Node
# changes, agent kills and API outages; it prints a summary and fails on
# any violation. The go test timeout is SOAK plus 20m for the lab, the last
# outage and the end checks: Go adds up "20m" and "$(SOAK)" written side by
# side ("20m10m" is 30m).
SOAK ?= 10m
soak: deps tools ## the 3-node lab with a real API server under churn and faults for SOAK (default 10m) (root)
	KINDNET_SOAK=$(SOAK) $(GO) test -count=1 -v -run '^TestSoak$$' -timeout 20m$(SOAK) ./test/e2e/

demo: deps build ## build a 3-node lab in network namespaces, show it working, tear it down (root)
	./bin/kindnet-lab demo

# Benchmarks (root): results in $(BENCH_OUT); docs/benchmarks.md explains them.
BENCH_OUT ?= bench/results
BENCH_NOTES := $(wildcard bench/notes.md)
BENCH_ARGS := --out $(BENCH_OUT) $(if $(BENCH_NOTES),--notes $(BENCH_NOTES))

.PHONY: bench bench-quick bench-build
bench-build: build
	$(GO) build -trimpath -o bin/kindnet-bench ./test/bench/kindnet-bench

bench: deps tools bench-build ## full benchmark in the lab (root, 20-30 min): writes bench/results/<date>-<host>.json and latest.md
	./bin/kindnet-bench $(BENCH_ARGS)

bench-quick: deps bench-build ## short benchmark (root, < 5 min), same report
	./bin/kindnet-bench --quick $(BENCH_ARGS)

# lint: gofmt, go vet, staticcheck (pinned in scripts/tools.sh; a finding
# that is right to keep carries a //lint:ignore CHECK reason at the line)
# and shellcheck, on the repository's scripts and on the maintainer scripts
# as they are packaged (with packaging/scripts/lib.sh pasted in, run by
# /bin/sh; SC2317, "unreachable", is expected there: each holds every
# shared helper whether it calls it or not).
SH_SCRIPTS := .ci/run packaging/build.sh $(wildcard scripts/*.sh)
lint: ## gofmt, go vet, staticcheck and shellcheck
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...
	scripts/tools.sh ensure staticcheck
	"$$(scripts/tools.sh path staticcheck)" ./...
	shellcheck -x -s bash -S style $(SH_SCRIPTS)
	@d=$$(mktemp -d) && trap 'rm -rf "$$d"' EXIT && packaging/build.sh scripts "$$d" && \
		shellcheck -s sh -S style -e SC2317 "$$d"/deb/* "$$d"/rpm/* && echo "shellcheck: maintainer scripts clean"

clean: ## remove build outputs
	rm -rf bin dist
