#!/usr/bin/env bash
# redis-cluster.sh start|stop|env DIR
#
#   start DIR  Starts a 3-master Redis Cluster on loopback (no replicas, or
#              $REDIS_CLUSTER_REPLICAS replicas per master): redis-server daemons on the first free ports from
#              $REDIS_CLUSTER_BASE_PORT (default 17000) whose cluster bus ports
#              (port+10000) are free too; no persistence; data, logs and pid files
#              in DIR/<port>/. Waits (bounded) until every node reports
#              cluster_state:ok, then writes
#                REDIS_CLUSTER_ADDRS=127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3
#              to DIR/env. On failure it stops what it started, keeps DIR for the
#              logs and exits 1.
#   stop DIR   Shuts the nodes down (SHUTDOWN NOSAVE) and removes DIR. Only a DIR
#              made by `start` is removed. Stopping a missing DIR is not an error.
#   env DIR    Prints the REDIS_CLUSTER_ADDRS=... line.
#
# Environment: REDIS_SERVER / REDIS_CLI override the binaries (default from $PATH).
# REDIS_CLUSTER_REPLICAS (default 0) replicas per master: with 1, six nodes,
# each master with one replica (what scripts/with-redis-cluster.sh and the ha/
# tests use for failover). REDIS_CLUSTER_NODE_TIMEOUT (ms, default 5000) is
# cluster-node-timeout: how long a master must be unreachable before its
# replica takes over.
#
# Example:
#   scripts/redis-cluster.sh start /tmp/rc
#   export "$(scripts/redis-cluster.sh env /tmp/rc)"
#   scripts/redis-cluster.sh stop /tmp/rc
set -euo pipefail

readonly prog="redis-cluster"
readonly marker=".redis-cluster.sh"
REDIS_SERVER_BIN=${REDIS_SERVER:-redis-server}
REDIS_CLI_BIN=${REDIS_CLI:-redis-cli}
base_port=${REDIS_CLUSTER_BASE_PORT:-17000}
replicas=${REDIS_CLUSTER_REPLICAS:-0}
node_timeout=${REDIS_CLUSTER_NODE_TIMEOUT:-5000}
[[ $replicas =~ ^[0-9]+$ ]] || { echo "$prog: REDIS_CLUSTER_REPLICAS=$replicas is not a number" >&2; exit 2; }
[[ $node_timeout =~ ^[0-9]+$ ]] || { echo "$prog: REDIS_CLUSTER_NODE_TIMEOUT=$node_timeout is not a number of ms" >&2; exit 2; }
readonly nodes=$((3 * (1 + replicas)))

die() {
	echo "$prog: $*" >&2
	exit 1
}

usage() {
	echo "usage: $0 start|stop|env DIR" >&2
	exit 2
}

[[ $# -eq 2 ]] || usage
cmd=$1
dir=$2
[[ -n $dir ]] || usage

have() { command -v "$1" >/dev/null 2>&1; }
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
cli() { timeout 5 "$REDIS_CLI_BIN" -h 127.0.0.1 "$@"; }

# ports_of prints the ports recorded in DIR/ports, one a line.
ports_of() {
	if [[ -f $dir/ports ]]; then
		cat "$dir/ports"
	fi
}

# stop_node PORT: SHUTDOWN NOSAVE, then TERM/KILL by pid file if it lingers.
stop_node() {
	local port=$1 pidfile="$dir/$1/redis.pid" pid=""
	[[ -f $pidfile ]] && pid=$(cat "$pidfile" 2>/dev/null || true)
	cli -p "$port" shutdown nosave >/dev/null 2>&1 || true
	[[ -n $pid ]] || return 0
	local sig
	for sig in TERM KILL; do
		gone "$pid" && return 0
		kill -"$sig" "$pid" 2>/dev/null || true
	done
	gone "$pid" || echo "$prog: redis-server pid $pid (port $port) would not die" >&2
}

# gone PID: waits up to 5 s for PID to stop being a live redis-server. A zombie
# counts as gone (a daemon's parent may be slow to reap it), and so does a live
# pid running something else (pids get reused).
gone() {
	local stat
	for _ in $(seq 1 50); do
		stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
		[[ $stat == *"(redis-server) "* ]] || return 0
		stat=${stat##*) }
		[[ ${stat%% *} != Z ]] || return 0
		sleep 0.1
	done
	return 1
}

stop_all() {
	local port
	for port in $(ports_of); do
		stop_node "$port"
	done
}

# start_node PORT: starts one daemon; returns 0 when it answers PING, 2 if the
# port pair was taken meanwhile, 1 otherwise.
start_node() {
	local port=$1 nd="$dir/$1"
	mkdir -p "$nd"
	: >"$nd/redis.log"
	echo "$port" >>"$dir/ports"
	"$REDIS_SERVER_BIN" --bind 127.0.0.1 --port "$port" \
		--cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout "$node_timeout" \
		--save "" --appendonly no --dir "$nd" --daemonize yes \
		--pidfile "$nd/redis.pid" --logfile "$nd/redis.log" >"$nd/start.log" 2>&1 || return 1
	for _ in $(seq 1 100); do
		if [[ "$(cli -p "$port" ping 2>/dev/null || true)" == PONG ]]; then
			return 0
		fi
		if grep -q "Address already in use" "$nd/redis.log"; then
			return 2
		fi
		sleep 0.1
	done
	return 1
}

fail_start() {
	echo "$prog: $*" >&2
	local f
	for f in "$dir"/*/start.log "$dir"/*/redis.log "$dir/create.log"; do
		[[ -s $f ]] || continue
		echo "--- $f (last 20 lines)" >&2
		tail -n 20 "$f" >&2
	done
	stop_all
	echo "$prog: stopped the nodes; logs kept in $dir (remove with: $0 stop $dir)" >&2
	exit 1
}

# cluster_ok PORT: the node reports state ok, all slots ok and all nodes known.
cluster_ok() {
	local info
	info=$(cli -p "$1" cluster info 2>/dev/null | tr -d '\r') || return 1
	grep -qx 'cluster_state:ok' <<<"$info" &&
		grep -qx 'cluster_slots_ok:16384' <<<"$info" &&
		grep -qx "cluster_known_nodes:$nodes" <<<"$info"
}

# repl_ok PORT: with replicas, a master has all its replicas connected and a
# replica has its link up (the cluster is ok before replicas have synced).
repl_ok() {
	((replicas > 0)) || return 0
	local info
	info=$(cli -p "$1" info replication 2>/dev/null | tr -d '\r') || return 1
	if grep -qx 'role:master' <<<"$info"; then
		grep -qx "connected_slaves:$replicas" <<<"$info"
	else
		grep -qx 'master_link_status:up' <<<"$info"
	fi
}

do_start() {
	have "$REDIS_SERVER_BIN" || die "redis-server not found (apt-get install redis-server)"
	have "$REDIS_CLI_BIN" || die "redis-cli not found (apt-get install redis-tools)"
	if [[ -f $dir/env ]]; then
		die "$dir/env exists: a cluster may already run there (stop it with: $0 stop $dir)"
	fi
	if [[ -e $dir && -n "$(ls -A "$dir" 2>/dev/null)" && ! -f $dir/$marker ]]; then
		die "$dir exists and is not empty; give a new or empty directory"
	fi
	mkdir -p "$dir"
	dir=$(cd "$dir" && pwd)
	touch "$dir/$marker"
	: >"$dir/ports"

	local -a ports=()
	local port=$base_port rc
	while [[ ${#ports[@]} -lt $nodes ]]; do
		if ((port > base_port + 1000)); then
			fail_start "no free port pairs (p and p+10000) in $base_port..$port"
		fi
		if port_busy "$port" || port_busy $((port + 10000)); then
			port=$((port + 1))
			continue
		fi
		rc=0
		start_node "$port" || rc=$?
		case $rc in
		0) ports+=("$port") ;;
		2) ;; # taken meanwhile: try the next one
		*) fail_start "redis-server on 127.0.0.1:$port failed to start or did not answer PING within 10 s" ;;
		esac
		port=$((port + 1))
	done

	local -a addrs=()
	for port in "${ports[@]}"; do
		addrs+=("127.0.0.1:$port")
	done
	if ! timeout 60 "$REDIS_CLI_BIN" --cluster create "${addrs[@]}" \
		--cluster-replicas "$replicas" --cluster-yes >"$dir/create.log" 2>&1; then
		fail_start "redis-cli --cluster create failed"
	fi

	local ok=""
	for _ in $(seq 1 300); do # 30 s
		ok=yes
		for port in "${ports[@]}"; do
			{ cluster_ok "$port" && repl_ok "$port"; } || {
				ok=""
				break
			}
		done
		[[ -z $ok ]] || break
		sleep 0.1
	done
	[[ -n $ok ]] || fail_start "cluster did not reach cluster_state:ok (and, with replicas, replicas in sync) on all nodes within 30 s"

	local joined
	joined=$(
		IFS=,
		echo "${addrs[*]}"
	)
	echo "REDIS_CLUSTER_ADDRS=$joined" >"$dir/env"
	echo "$prog: cluster up: $joined (dir $dir)" >&2
}

do_stop() {
	if [[ ! -e $dir ]]; then
		echo "$prog: $dir does not exist; nothing to stop" >&2
		return 0
	fi
	[[ -f $dir/$marker ]] || die "$dir was not made by '$0 start'; not touching it"
	stop_all
	rm -rf "$dir"
	echo "$prog: stopped, removed $dir" >&2
}

do_env() {
	[[ -f $dir/env ]] || die "$dir/env not found: start a cluster with: $0 start $dir"
	cat "$dir/env"
}

case $cmd in
start) do_start ;;
stop) do_stop ;;
env) do_env ;;
*) usage ;;
esac
