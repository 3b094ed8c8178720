#!/usr/bin/env bash
# Builds kindnet's .deb and .rpm with nfpm (what `make packages` runs).
#
#   packaging/build.sh packages          build both, per architecture, into $DIST
#   packaging/build.sh pkg-version VER   print VER made safe for dpkg and rpm
#   packaging/build.sh scripts DIR       assemble the maintainer scripts into DIR (make lint)
#
# Environment (the Makefile sets all of these):
#   VERSION     kindnet version (semver-like: 1.2.3, 1.2.3-rc.1, git describe)
#   COMMIT      commit the binary is built from
#   LDFLAGS     Go linker flags (version injection)
#   DIST        output directory for the packages
#   NFPM        path of the nfpm binary (scripts/tools.sh path nfpm)
#   MAINTAINER  "Name <email>" of the packager
#   GO          go command (default: go)
#   ARCHES      Debian names of the architectures to build (default: all of
#               amd64 arm64 armhf riscv64)
#
# Everything the packages hold is first staged in one directory (binaries,
# man pages, completions, units, config, maintainer scripts, changelog) and
# nfpm runs from there, so packaging/deb/nfpm.yaml and packaging/rpm/nfpm.yaml
# name files relative to that stage only. What does not depend on the
# architecture is staged once; then, per architecture, the binaries are
# built into the stage and nfpm packs it twice.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)

die() {
	echo "packaging/build.sh: $*" >&2
	exit 1
}

# pkg_version turns a kindnet version into one dpkg and rpm order correctly:
#   1.2.3            -> 1.2.3
#   1.2.3-rc.1       -> 1.2.3~rc.1          (pre-release: sorts before 1.2.3)
#   0.1.0-dev        -> 0.1.0~dev
#   1.2.3-4-gabc1234 -> 1.2.3+4.gabc1234    (git describe: after 1.2.3)
#   1.2.3-rc.1-4-gabc1234 -> 1.2.3~rc.1+4.gabc1234
# rpm forbids '-' in a version and dpkg would read it as a Debian revision;
# '~' sorts before anything in both, '+' after.
pkg_version() {
	local v=$1 base pre="" build=""
	[[ $v =~ ^v?([0-9]+\.[0-9]+\.[0-9]+)(.*)$ ]] || die "VERSION=$v: expected MAJOR.MINOR.PATCH with an optional -pre-release and +build, e.g. 1.2.3-rc.1"
	base=${BASH_REMATCH[1]}
	local rest=${BASH_REMATCH[2]}
	if [[ $rest =~ ^(.*)-([0-9]+)-g([0-9a-f]+)$ ]]; then
		rest=${BASH_REMATCH[1]}
		build="+${BASH_REMATCH[2]}.g${BASH_REMATCH[3]}"
	fi
	if [[ $rest =~ ^\+([0-9A-Za-z.]+)$ ]]; then
		build="+${BASH_REMATCH[1]}$build"
		rest=""
	fi
	if [[ -n $rest ]]; then
		[[ $rest =~ ^-([0-9A-Za-z.]+)$ ]] || die "VERSION=$v: the part after $base must be -PRERELEASE (letters, digits, dots), +BUILD or git describe's -N-gHASH"
		pre="~${BASH_REMATCH[1]}"
	fi
	echo "$base$pre$build"
}

# changelog writes the chglog file nfpm turns into the Debian changelog or
# the rpm %changelog: the release history in packaging/changelog.yml, plus,
# for a version not released there, one entry naming this build's commit
# (commit subjects are not copied in: they are not written for operators,
# and lintian would hold their wording against the package). ENTRY is how
# this build's version is written in that format's changelog, with the
# release (Debian: the package version; rpm: semver, which nfpm's rpm
# template parses and prints).
changelog() {
	local out=$1 entry=$2 date
	date=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)
	{
		if ! grep -Eq "^- semver: ${VERSION//./\\.}\$" "$repo/packaging/changelog.yml"; then
			echo "- semver: '$entry'"
			echo "  date: $date"
			echo "  packager: $MAINTAINER"
			echo "  deb: {urgency: low, distributions: [UNRELEASED]}"
			echo "  changes:"
			echo "    - note: 'Development build of commit $COMMIT, not a release.'"
		fi
		grep -v '^#' "$repo/packaging/changelog.yml" | grep -v '^\[\]$' || true
	} >"$out"
}

# unit_for_rpm derives the rpm's unit from the Debian one: only the
# EnvironmentFile= line differs (/etc/sysconfig is where Fedora and RHEL
# keep service environments).
unit_for_rpm() {
	local in=$1 out=$2
	sed 's|^EnvironmentFile=-/etc/default/kindnet$|EnvironmentFile=-/etc/sysconfig/kindnet|' "$in" >"$out"
	[ "$(diff "$in" "$out" | grep -c '^[<>]')" = 2 ] ||
		die "$in: expected exactly one line 'EnvironmentFile=-/etc/default/kindnet' to rewrite for the rpm"
}

# script assembles a maintainer script: the per-format script with the
# shared helpers (packaging/scripts/lib.sh) pasted where it says "# @LIB@",
# so each installed script stands alone.
script() {
	local in=$1 out=$2
	grep -q '^# @LIB@$' "$in" || die "$in: no '# @LIB@' line to insert packaging/scripts/lib.sh at"
	sed -e "/^# @LIB@\$/{r $repo/packaging/scripts/lib.sh" -e 'd}' "$in" >"$out"
	chmod 0755 "$out"
}

# maintainer_scripts DIR assembles every maintainer script into DIR/deb and
# DIR/rpm, as they are packaged.
maintainer_scripts() {
	local st=$1 s
	mkdir -p "$st/deb" "$st/rpm"
	for s in postinst prerm postrm; do script "$repo/packaging/deb/$s" "$st/deb/$s"; done
	for s in post preun postun; do script "$repo/packaging/rpm/$s" "$st/rpm/$s"; done
}

# rpm_config writes the rpm's nfpm config into the stage: the one in
# packaging/rpm plus one %doc entry per man page.
rpm_config() {
	local st=$1 page
	cp "$repo/packaging/rpm/nfpm.yaml" "$st/rpm/nfpm.yaml"
	for page in "$st"/man/*.1.gz; do
		page=${page##*/}
		printf '  - src: man/%s\n    dst: /usr/share/man/man1/%s\n    type: doc\n' "$page" "$page"
	done >>"$st/rpm/nfpm.yaml"
}

# The architectures kindnet ships, by Debian name: Go's GOARCH (and GOARM)
# to build them and the name nfpm takes in packaging/*/nfpm.yaml's arch,
# which nfpm turns into the Debian and rpm names (arm7: armhf / armv7hl).
ALL_ARCHES="amd64 arm64 armhf riscv64"
# arch_info DEBARCH: prints "GOARCH GOARM NFPMARCH".
arch_info() {
	case "$1" in
	amd64) echo "amd64 - amd64" ;;
	arm64) echo "arm64 - arm64" ;;
	# ARMv7 with hardware floating point: what Debian's armhf and
	# Fedora's armv7hl are built for (Raspberry Pi 2 and later).
	armhf) echo "arm 7 arm7" ;;
	riscv64) echo "riscv64 - riscv64" ;;
	*) die "ARCHES: unknown architecture '$1' (known: $ALL_ARCHES)" ;;
	esac
}

# The programs of the packages, as "main package -> name in the stage";
# every one is built, static, for each architecture: the agent CLI, and the
# lean CNI plugin the container runtime starts for every pod (a binary of
# its own, so pod start does not pay the agent's start-up).
BINARIES=(
	"./cmd/kindnet kindnet"
	"./cmd/kindnet-cni cni/kindnet"
)

# build_binaries ST DEBARCH: builds every program of BINARIES for the
# architecture into the stage, replacing the previous architecture's.
build_binaries() {
	local st=$1 goarch goarm _ b pkg name
	read -r goarch goarm _ <<<"$(arch_info "$2")"
	[ "$goarm" = - ] && goarm=""
	for b in "${BINARIES[@]}"; do
		read -r pkg name <<<"$b"
		echo "building $name $VERSION for $2 (GOARCH=$goarch${goarm:+ GOARM=$goarm})"
		mkdir -p "$(dirname "$st/$name")"
		(cd "$repo" && CGO_ENABLED=0 GOOS=linux GOARCH=$goarch GOARM=$goarm \
			"${GO:-go}" build -trimpath -ldflags "$LDFLAGS" -o "$st/$name" "$pkg")
		chmod 0755 "$st/$name"
	done
}

stage() {
	local st=$1
	local go=${GO:-go}
	mkdir -p "$st/deb" "$st/rpm"
	echo "generating man pages and completions"
	(cd "$repo" && "$go" run ./hack/gendocs -out "$st" -version "$VERSION")
	gzip -9n "$st"/man/*.1

	cp "$repo/packaging/systemd/kindnet.service" "$st/deb/kindnet.service"
	unit_for_rpm "$repo/packaging/systemd/kindnet.service" "$st/rpm/kindnet.service"
	cp "$repo/packaging/systemd/kubelet.service.d/10-kindnet.conf" "$st/10-kindnet.conf"
	cp "$repo/packaging/config.yaml" "$st/config.yaml"
	cp "$repo/packaging/environment" "$st/environment"
	cp "$repo/packaging/rt_protos.d/kindnet.conf" "$st/rt_protos.conf"
	cp "$repo/LICENSE" "$st/LICENSE"
	cp "$repo/packaging/deb/copyright" "$st/deb/copyright"
	cp "$repo/packaging/deb/lintian-overrides" "$st/deb/lintian-overrides"
	maintainer_scripts "$st"
	rpm_config "$st"
	changelog "$st/deb/changelog.yml" "$PKG_VERSION-1"
	changelog "$st/rpm/changelog.yml" "$VERSION-1"
	# nfpm stores files with their modes but not their owners; make the
	# staged modes the packaged ones (build_binaries makes the programs
	# 0755 after this).
	find "$st" -type f ! -path '*/deb/p*' ! -path '*/rpm/p*' -exec chmod 0644 {} +
}

packages() {
	: "${VERSION:?}" "${COMMIT:?}" "${LDFLAGS:?}" "${DIST:?}" "${NFPM:?}" "${MAINTAINER:?}"
	[ -x "$NFPM" ] || die "nfpm not found at $NFPM: run scripts/tools.sh ensure nfpm"
	PKG_VERSION=$(pkg_version "$VERSION")
	local arches=${ARCHES:-$ALL_ARCHES} a
	for a in $arches; do arch_info "$a" >/dev/null; done
	# Reproducible: dates in man pages, the changelog and the archives come
	# from the commit, not the clock.
	SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$repo" log -1 --format=%ct 2>/dev/null || date +%s)}
	export PKG_VERSION SOURCE_DATE_EPOCH MAINTAINER

	mkdir -p "$DIST"
	DIST=$(cd "$DIST" && pwd)
	STAGE=$(mktemp -d "$DIST/.stage.XXXXXX")
	trap 'rm -rf "$STAGE"' EXIT
	stage "$STAGE"
	for a in $arches; do
		build_binaries "$STAGE" "$a"
		PKG_ARCH=$(arch_info "$a" | cut -d' ' -f3)
		export PKG_ARCH
		(cd "$STAGE" && "$NFPM" package --config "$repo/packaging/deb/nfpm.yaml" --packager deb --target "$DIST/")
		(cd "$STAGE" && "$NFPM" package --config "$STAGE/rpm/nfpm.yaml" --packager rpm --target "$DIST/")
	done
}

case "${1:-}" in
packages) packages ;;
pkg-version)
	[ -n "${2:-}" ] || die "usage: $0 pkg-version VERSION"
	pkg_version "$2"
	;;
scripts)
	[ -n "${2:-}" ] || die "usage: $0 scripts DIR"
	maintainer_scripts "$2"
	;;
*)
	sed -n '2,5p' "$0" >&2
	exit 64
	;;
esac
