#!/usr/bin/env bash
# Runs a foreign-architecture Linux binary under Debian's user-mode
# emulator, chosen from the binary's ELF header. It is `go test -exec`'s
# program for make test-arch and what test/emul's wrappers call:
#
#   scripts/qemu-exec.sh BINARY [ARGS...]
#
# The emulators come from scripts/tools.sh ensure qemu (cached, never
# installed, never registered with binfmt_misc); QEMU_DIR overrides where.
# A native binary (x86-64) runs as it is.
set -euo pipefail
bin=${1:?usage: qemu-exec.sh BINARY [ARGS...]}
shift
dir=${QEMU_DIR:-$("$(dirname "$0")/tools.sh" path qemu)}

# e_machine: 2 bytes, little-endian, at offset 18 of the ELF header.
machine=$(od -An -tu2 -j18 -N2 "$bin" | tr -d ' ')
case "$machine" in
62) exec "$bin" "$@" ;; # EM_X86_64
3) emu=i386 ;;          # EM_386
40) emu=arm ;;          # EM_ARM
183) emu=aarch64 ;;     # EM_AARCH64
243) emu=riscv64 ;;     # EM_RISCV
*)
	echo "qemu-exec.sh: $bin: ELF machine $machine is not one kindnet ships" >&2
	exit 126
	;;
esac
[ -x "$dir/qemu-$emu-static" ] || {
	echo "qemu-exec.sh: $dir/qemu-$emu-static missing: run scripts/tools.sh ensure qemu" >&2
	exit 126
}
exec "$dir/qemu-$emu-static" "$bin" "$@"
