#!/usr/bin/env bash
# The network-namespace lab: a kindnet cluster on this machine.
#   scripts/lab.sh up       build a lab and leave it running (prints its ID)
#   scripts/lab.sh status   show running labs: agents, pods, kindnet routes
#   scripts/lab.sh down     tear down every lab (or: down ID)
#   scripts/lab.sh demo     build one, show it working, tear it down
# Needs root. Never touches the machine's own network namespace.
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
up|down|status|demo) ;;
*) sed -n '2,7p' "$0"; exit 64 ;;
esac
[ "$(id -u)" = 0 ] || { echo "lab.sh: run as root (sudo): it creates network namespaces" >&2; exit 1; }
make --no-print-directory build >/dev/null
exec ./bin/kindnet-lab "$@"
