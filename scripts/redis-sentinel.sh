#!/usr/bin/env bash
# redis-sentinel.sh start|stop|env DIR
#
#   start DIR  Starts on loopback a Redis primary, one replica of it and three
#              sentinels (redis-server --sentinel) monitoring it as "mymaster"
#              (quorum 2, down-after 1 s, failover-timeout 5 s), on free ports
#              from $REDIS_SENTINEL_BASE_PORT (default 26400); no persistence;
#              data, configs, logs and pid files in DIR/<port>/. Waits
#              (bounded) until the replica is in sync and every sentinel knows
#              the replica and the two other sentinels, then writes DIR/env:
#                REDIS_URL=redis://127.0.0.1:s1?master_name=mymaster&addr=127.0.0.1:s2&addr=127.0.0.1:s3
#                REDIS_SENTINEL_ADDRS=127.0.0.1:s1,127.0.0.1:s2,127.0.0.1:s3
#                REDIS_SENTINEL_MASTER=mymaster
#                REDIS_SENTINEL_NODES=127.0.0.1:primary,127.0.0.1:replica
#              REDIS_URL is the Sentinel form bus.ParseRedisURL (and go-redis's
#              ParseFailoverURL) reads. On failure it stops what it started,
#              keeps DIR for the logs and exits 1.
#   stop DIR   Shuts everything down and removes DIR. Only a DIR made by
#              `start` is removed. Stopping a missing DIR is not an error.
#   env DIR    Prints DIR/env.
#
# Environment: REDIS_SERVER / REDIS_CLI override the binaries (default from $PATH).
# REDIS_SENTINEL_PASSWORD, when set, is the data nodes' password (requirepass,
# masterauth; sentinel auth-pass) and REDIS_URL carries it as &password=...
#
# Example:
#   scripts/redis-sentinel.sh start /tmp/rs
#   set -a; . /tmp/rs/env; set +a
#   scripts/redis-sentinel.sh stop /tmp/rs
set -euo pipefail

readonly prog="redis-sentinel"
readonly marker=".redis-sentinel.sh"
readonly master="mymaster"
REDIS_SERVER_BIN=${REDIS_SERVER:-redis-server}
REDIS_CLI_BIN=${REDIS_CLI:-redis-cli}
base_port=${REDIS_SENTINEL_BASE_PORT:-26400}
password=${REDIS_SENTINEL_PASSWORD:-}
auth_args=()
if [[ -n $password ]]; then
	auth_args=(--requirepass "$password" --masterauth "$password")
fi

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
cli() { REDISCLI_AUTH=$password timeout 5 "$REDIS_CLI_BIN" -h 127.0.0.1 "$@"; }
# scli talks to a sentinel (no password).
scli() { timeout 5 "$REDIS_CLI_BIN" -h 127.0.0.1 "$@"; }

ports_of() {
	if [[ -f $dir/ports ]]; then
		cat "$dir/ports"
	fi
}

# gone PID: waits up to 5 s for PID to stop being a live redis-server (or
# redis-sentinel); a zombie or a reused pid counts as gone.
gone() {
	local stat
	for _ in $(seq 1 50); do
		stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
		[[ $stat == *"(redis-server) "* || $stat == *"(redis-sentinel) "* ]] || return 0
		stat=${stat##*) }
		[[ ${stat%% *} != Z ]] || return 0
		sleep 0.1
	done
	return 1
}

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
	gone "$pid" || echo "$prog: pid $pid (port $port) would not die" >&2
}

stop_all() {
	local port
	for port in $(ports_of); do
		stop_node "$port"
	done
}

fail_start() {
	echo "$prog: $*" >&2
	local f
	for f in "$dir"/*/redis.log "$dir"/*/start.log; do
		[[ -s $f ]] || continue
		echo "--- $f (last 20 lines)" >&2
		tail -n 20 "$f" >&2
	done
	stop_all
	echo "$prog: stopped everything; logs kept in $dir (remove with: $0 stop $dir)" >&2
	exit 1
}

# next_port prints the first free port from $port on and advances $port.
next_port() {
	while port_busy "$port"; do
		port=$((port + 1))
		((port < base_port + 1000)) || fail_start "no free ports in $base_port..$port"
	done
	echo "$port"
}

# wait_ping PORT: up to 10 s.
wait_ping() {
	for _ in $(seq 1 100); do
		[[ "$(cli -p "$1" ping 2>/dev/null || true)" == PONG ]] && return 0
		sleep 0.1
	done
	return 1
}

# start_server PORT [ARGS...]: a data node.
start_server() {
	local p=$1 nd="$dir/$1"
	shift
	mkdir -p "$nd"
	echo "$p" >>"$dir/ports"
	"$REDIS_SERVER_BIN" --bind 127.0.0.1 --port "$p" --save "" --appendonly no \
		--dir "$nd" --daemonize yes --pidfile "$nd/redis.pid" --logfile "$nd/redis.log" \
		${auth_args[@]+"${auth_args[@]}"} "$@" >"$nd/start.log" 2>&1 || fail_start "redis-server on port $p failed to start"
	wait_ping "$p" || fail_start "redis-server on port $p did not answer PING within 10 s"
}

# start_sentinel PORT PRIMARY_PORT
start_sentinel() {
	local p=$1 nd="$dir/$1"
	mkdir -p "$nd"
	echo "$p" >>"$dir/ports"
	cat >"$nd/sentinel.conf" <<CONF
bind 127.0.0.1
port $p
daemonize yes
pidfile $nd/redis.pid
logfile $nd/redis.log
dir $nd
sentinel resolve-hostnames no
sentinel monitor $master 127.0.0.1 $2 2
sentinel down-after-milliseconds $master 1000
sentinel failover-timeout $master 5000
sentinel parallel-syncs $master 1
CONF
	if [[ -n $password ]]; then
		echo "sentinel auth-pass $master $password" >>"$nd/sentinel.conf"
	fi
	"$REDIS_SERVER_BIN" "$nd/sentinel.conf" --sentinel >"$nd/start.log" 2>&1 ||
		fail_start "sentinel on port $p failed to start"
	local i
	for i in $(seq 1 100); do
		[[ "$(scli -p "$p" ping 2>/dev/null || true)" == PONG ]] && return 0
		sleep 0.1
	done
	fail_start "sentinel on port $p did not answer PING within 10 s"
}

field() { tr -d '\r' | grep "^$1:" | cut -d: -f2; }

do_start() {
	have "$REDIS_SERVER_BIN" || die "redis-server not found (apt-get install redis-server)"
	have "$REDIS_CLI_BIN" || die "redis-cli not found (apt-get install redis-tools)"
	[[ ! -f $dir/env ]] || die "$dir/env exists: a setup may already run there (stop it with: $0 stop $dir)"
	if [[ -e $dir && -n "$(ls -A "$dir" 2>/dev/null)" && ! -f $dir/$marker ]]; then
		die "$dir exists and is not empty; give a new or empty directory"
	fi
	mkdir -p "$dir"
	dir=$(cd "$dir" && pwd)
	touch "$dir/$marker"
	: >"$dir/ports"

	local port=$base_port primary replica s1 s2 s3
	primary=$(next_port)
	start_server "$primary"
	port=$((primary + 1))
	replica=$(next_port)
	start_server "$replica" --replicaof 127.0.0.1 "$primary"
	local ok=""
	for _ in $(seq 1 100); do
		if [[ "$(cli -p "$replica" info replication | field master_link_status)" == up ]]; then
			ok=yes
			break
		fi
		sleep 0.1
	done
	[[ -n $ok ]] || fail_start "the replica on port $replica did not sync with the primary within 10 s"

	port=$((replica + 1))
	s1=$(next_port)
	start_sentinel "$s1" "$primary"
	port=$((s1 + 1))
	s2=$(next_port)
	start_sentinel "$s2" "$primary"
	port=$((s2 + 1))
	s3=$(next_port)
	start_sentinel "$s3" "$primary"

	local s out
	for s in "$s1" "$s2" "$s3"; do
		ok=""
		for _ in $(seq 1 300); do # 30 s: sentinels find each other through the primary's hello channel
			out=$(scli -p "$s" sentinel master "$master" 2>/dev/null | tr -d '\r' || true)
			if grep -A1 -x num-slaves <<<"$out" | tail -n 1 | grep -qx 1 &&
				grep -A1 -x num-other-sentinels <<<"$out" | tail -n 1 | grep -qx 2; then
				ok=yes
				break
			fi
			sleep 0.1
		done
		[[ -n $ok ]] || fail_start "sentinel on port $s did not see the replica and the two other sentinels within 30 s"
	done

	{
		url="redis://127.0.0.1:$s1?master_name=$master&addr=127.0.0.1:$s2&addr=127.0.0.1:$s3"
		[[ -z $password ]] || url="$url&password=$password"
		echo "REDIS_URL=$url"
		echo "REDIS_SENTINEL_ADDRS=127.0.0.1:$s1,127.0.0.1:$s2,127.0.0.1:$s3"
		echo "REDIS_SENTINEL_MASTER=$master"
		echo "REDIS_SENTINEL_NODES=127.0.0.1:$primary,127.0.0.1:$replica"
	} >"$dir/env"
	echo "$prog: up: primary 127.0.0.1:$primary, replica 127.0.0.1:$replica, sentinels $s1 $s2 $s3 (dir $dir)" >&2
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
	[[ -f $dir/env ]] || die "$dir/env not found: start with: $0 start $dir"
	cat "$dir/env"
}

case $cmd in
start) do_start ;;
stop) do_stop ;;
env) do_env ;;
*) usage ;;
esac
