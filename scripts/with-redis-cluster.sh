#!/usr/bin/env bash
# with-redis-cluster.sh CMD [ARGS...]
#
# Runs CMD with REDIS_CLUSTER_ADDRS exported (comma-separated host:port list of
# a 3-master Redis Cluster), then cleans up. Exits with CMD's exit code.
#
# If REDIS_CLUSTER_ADDRS is already set, every address must answer PING and
# report cluster_state:ok (else exit 1) and that cluster is used. Otherwise a
# throwaway cluster is started with scripts/redis-cluster.sh in a temp dir and
# stopped and removed when CMD ends (also on INT/TERM, which are forwarded to
# CMD). One line on stderr says which cluster is used.
#
# Example:
#   scripts/with-redis-cluster.sh go test -race -tags cluster ./internal/redistest/
set -euo pipefail

readonly prog="with-redis-cluster"
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REDIS_CLI_BIN=${REDIS_CLI:-redis-cli}

die() {
	echo "$prog: $*" >&2
	exit 1
}

if [[ $# -eq 0 ]]; then
	echo "usage: $0 CMD [ARGS...]" >&2
	exit 2
fi

# running PID succeeds while PID exists and is not a zombie.
running() {
	local stat
	stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
	stat=${stat##*) }
	[[ ${stat%% *} != Z ]]
}

# run_child runs "$@" as a child with our stdin, forwards INT/TERM to it, waits
# for it and exits with its exit code (the EXIT trap then cleans up).
run_child() {
	"$@" <&0 &
	child_pid=$!
	trap 'kill -INT "$child_pid" 2>/dev/null || true' INT
	trap 'kill -TERM "$child_pid" 2>/dev/null || true' TERM
	local rc=0
	wait "$child_pid" || rc=$?
	# A trapped signal interrupts wait; wait again for the real exit status.
	while running "$child_pid"; do
		rc=0
		wait "$child_pid" || rc=$?
	done
	exit "$rc"
}

if [[ -n ${REDIS_CLUSTER_ADDRS:-} ]]; then
	command -v "$REDIS_CLI_BIN" >/dev/null 2>&1 ||
		die "REDIS_CLUSTER_ADDRS is set but redis-cli is not installed to check it (apt-get install redis-tools)"
	IFS=, read -r -a addrs <<<"$REDIS_CLUSTER_ADDRS"
	for addr in "${addrs[@]}"; do
		host=${addr%:*}
		port=${addr##*:}
		out=$(timeout 5 "$REDIS_CLI_BIN" -h "$host" -p "$port" cluster info 2>&1 | tr -d '\r' || true)
		state=$(grep '^cluster_state:' <<<"$out" || true)
		[[ $state == cluster_state:ok ]] ||
			die "REDIS_CLUSTER_ADDRS node $addr is not a healthy cluster node (${state:-$(head -n 1 <<<"$out")}); unset REDIS_CLUSTER_ADDRS to start a throwaway cluster"
	done
	echo "$prog: using Redis Cluster from REDIS_CLUSTER_ADDRS: $REDIS_CLUSTER_ADDRS" >&2
	export REDIS_CLUSTER_ADDRS
	exec "$@"
fi

tmpdir=$(mktemp -d "${TMPDIR:-/tmp}/with-redis-cluster.XXXXXX")
# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() {
	local rc=$?
	"$here/redis-cluster.sh" stop "$tmpdir/cluster" 2>/dev/null ||
		echo "$prog: stopping the cluster in $tmpdir/cluster failed" >&2
	rm -rf "$tmpdir"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

"$here/redis-cluster.sh" start "$tmpdir/cluster" 2>"$tmpdir/start.log" || {
	cat "$tmpdir/start.log" >&2
	exit 1
}
line=$("$here/redis-cluster.sh" env "$tmpdir/cluster")
export REDIS_CLUSTER_ADDRS=${line#REDIS_CLUSTER_ADDRS=}
echo "$prog: started Redis Cluster at $REDIS_CLUSTER_ADDRS (dir $tmpdir/cluster)" >&2
run_child "$@"
