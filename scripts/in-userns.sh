#!/usr/bin/env bash
# in-userns.sh COMMAND [ARG...] — run COMMAND, as any user, as "root" of a
# new unprivileged user namespace with its own network and mount namespaces
# (`unshare -Urnm`), the way kubernetes-sigs/kube-network-policies runs its
# netlink and nftables tests without root.
#
# Inside, the process has CAP_NET_ADMIN over every network namespace it
# creates, so netlink, nftables and /proc/sys/net tests run for real; it has
# no power over the host: the host's network, mounts, files of other users,
# systemd and the package manager are out of reach (tests that need those
# call netnstest.RequireHostRoot and skip here).
#
# The mount namespace exists for one reason: `ip netns add` and
# netnstest.New bind-mount namespaces under /run/netns, which only the host's
# root may write. A private tmpfs over /run, seen only by this mount
# namespace and gone when it ends, gives the tests their own /run/netns.
#
# The network namespace has no route out: fetch modules before entering
# (the Makefile runs `go mod download` first). If this kernel refuses
# unprivileged user namespaces (user.max_user_namespaces=0, or
# kernel.unprivileged_userns_clone=0 on older Debian kernels), say so and
# exit 3 so the caller can tell it from a test failure.
set -euo pipefail

if [ "$#" -eq 0 ]; then
	echo "usage: $0 COMMAND [ARG...]" >&2
	exit 2
fi

if [ "${IN_USERNS_SH_CHILD:-}" = 1 ]; then
	# Already inside (the re-exec below): a private /run, and loopback up
	# as on any host (tests listen on 127.0.0.1 and ::1).
	mount -t tmpfs -o mode=0755 kindnet-userns-run /run
	# The marker goes, so the command sees the environment it was given
	# (kindnet itself refuses unknown KINDNET_* variables: hence the name).
	ip link set lo up
	unset IN_USERNS_SH_CHILD
	exec "$@"
fi

if ! unshare -Urnm true 2>/dev/null; then
	echo "in-userns: this kernel refuses unprivileged user namespaces" \
		"(user.max_user_namespaces=$(cat /proc/sys/user/max_user_namespaces 2>/dev/null || echo ?)," \
		"kernel.unprivileged_userns_clone=$(cat /proc/sys/kernel/unprivileged_userns_clone 2>/dev/null || echo absent))" >&2
	exit 3
fi

IN_USERNS_SH_CHILD=1 exec unshare -Urnm --propagation private "$0" "$@"
