#!/usr/bin/env bash
# Builds the third-party tools the tests drive (for example a real
# kube-apiserver, containerd) from the Go module proxy, once per version,
# into a cache outside the repository: ${KINDNET_TOOLS:-~/.cache/kindnet}.
# A second run finds them cached and takes seconds.
#
#   scripts/tools.sh all        build every tool that is missing
#   scripts/tools.sh path NAME  print the cached path of a tool
set -euo pipefail
CACHE="${KINDNET_TOOLS:-$HOME/.cache/kindnet}"
mkdir -p "$CACHE"

# Each tool is a function build_<name> that installs into "$1" (a directory
# named after the tool and its version) and the list TOOLS names them.
TOOLS=()

usage() { sed -n '2,8p' "$0"; exit 64; }

case "${1:-}" in
all)
	for t in "${TOOLS[@]}"; do "ensure_$t"; done
	;;
path)
	[ -n "${2:-}" ] || usage
	"path_$2"
	;;
*) usage ;;
esac
