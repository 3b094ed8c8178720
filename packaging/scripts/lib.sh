# ---- shared helpers of kindnet's maintainer scripts ----------------------
# (packaging/scripts/lib.sh, pasted into each script by packaging/build.sh;
# the script sets KINDNET_ENV_FILE before this point.)

# systemd_running: systemd is the init system of this machine right now
# (the test of sd_booted(3)). Not so in a container or a chroot: then only
# the unit files are changed (enable/disable work offline) and nothing is
# started or stopped.
systemd_running() { [ -d /run/systemd/system ]; }

# have_systemctl: systemd's tools are installed (a container image without
# systemd has no systemctl; the agent can still be run by other means).
have_systemctl() { command -v systemctl >/dev/null 2>&1; }

# effective_config: `kindnet config show` as the service would see it:
# /etc/kindnet/config.yaml overridden by the KINDNET_* variables of the
# service's environment file. Fails (exit 2) when the config is invalid.
effective_config() {
	(
		if [ -r "$KINDNET_ENV_FILE" ]; then
			set -a
			# shellcheck disable=SC1090 # the admin's environment file
			. "$KINDNET_ENV_FILE"
			set +a
		fi
		"${1:-/usr/bin/kindnet}" config show
	)
}

# config_value SHOW KEY: the value of KEY in `kindnet config show` output,
# whose lines read "key: value  # origin".
config_value() {
	printf '%s\n' "$1" | sed -n "s|^$2: \\(.*\\)  # .*\$|\\1|p"
}

# node_configured: the agent has a cluster to follow: a nodes file, or a
# kubeconfig that exists. A node before `kubeadm init/join` has neither;
# there kubelet's drop-in (Wants=kindnet.service) starts the agent when
# kubeadm starts kubelet.
node_configured() {
	_show=$(effective_config 2>&1) || {
		echo "kindnet: the configuration is not valid, so the agent is not started:" >&2
		printf '%s\n' "$_show" | sed 's/^/  /' >&2
		return 1
	}
	_nodes=$(config_value "$_show" nodesFile)
	_kubeconfig=$(config_value "$_show" kubeconfig)
	if [ -n "$_nodes" ]; then
		return 0
	fi
	if [ -n "$_kubeconfig" ] && [ -e "$_kubeconfig" ]; then
		return 0
	fi
	echo "kindnet: enabled but not started: no nodesFile and no kubeconfig at ${_kubeconfig:-(none)} yet; kubelet starts it after kubeadm init/join, or run: systemctl start kindnet" >&2
	return 1
}

# start_if_configured: start the agent now when systemd runs and the node
# is configured.
start_if_configured() {
	if systemd_running && node_configured; then
		systemctl start kindnet.service ||
			echo "kindnet: the agent did not start; see: journalctl -u kindnet" >&2
	fi
}
# ---- end of shared helpers -------------------------------------------------
