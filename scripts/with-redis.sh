#!/usr/bin/env bash
# with-redis.sh CMD [ARGS...]
#
# Runs CMD with REDIS_URL exported and pointing at a Redis that answers PING,
# then cleans up. Exits with CMD's exit code.
#
# Which Redis, in this order:
#   1. $REDIS_URL if set (must answer `redis-cli -u "$REDIS_URL" ping`, else exit 1;
#      for rediss:// URLs $REDIS_TLS_CA, if set, is passed as --cacert);
#   2. a Redis already answering on 127.0.0.1:6379 -> redis://127.0.0.1:6379/0;
#   3. a throwaway redis-server on a free loopback port (from $WITH_REDIS_BASE_PORT,
#      default 16379, upward), no persistence, data in a temp dir; stopped and
#      removed when CMD ends.
# One line on stderr says which Redis is used.
#
# Environment: REDIS_SERVER / REDIS_CLI override the binaries (default from $PATH).
#
# Examples:
#   scripts/with-redis.sh go test -race ./...
#   REDIS_URL=redis://127.0.0.1:6380/1 scripts/with-redis.sh go test ./internal/...
set -euo pipefail

readonly prog="with-redis"
readonly no_redis_msg="no Redis: set REDIS_URL, start redis-server on 127.0.0.1:6379, or install redis-server (apt-get install redis-server)"
REDIS_SERVER_BIN=${REDIS_SERVER:-redis-server}
REDIS_CLI_BIN=${REDIS_CLI:-redis-cli}
base_port=${WITH_REDIS_BASE_PORT:-16379}

die() {
	echo "$prog: $*" >&2
	exit 1
}

if [[ $# -eq 0 ]]; then
	echo "usage: $0 CMD [ARGS...]" >&2
	exit 2
fi

have() { command -v "$1" >/dev/null 2>&1; }

# redact prints a Redis URL with its password replaced by ***.
redact() { sed -E 's#^([a-z]+://[^:@/]*):[^@/]*@#\1:***@#' <<<"$1"; }

# ping_url succeeds if the Redis at URL $1 answers PONG within 5 s.
ping_url() {
	local url=$1 out
	local -a args=(--no-auth-warning -u "$url")
	if [[ $url == rediss://* && -n ${REDIS_TLS_CA:-} ]]; then
		args+=(--cacert "$REDIS_TLS_CA")
	fi
	out=$(timeout 5 "$REDIS_CLI_BIN" "${args[@]}" ping 2>&1) || return 1
	[[ $out == PONG ]]
}

# port_busy succeeds if something accepts TCP connections on 127.0.0.1:$1.
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

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
	while kill -0 "$child_pid" 2>/dev/null; do
		rc=0
		wait "$child_pid" || rc=$?
	done
	exit "$rc"
}

# 1. REDIS_URL given: use it or fail loudly.
if [[ -n ${REDIS_URL:-} ]]; then
	have "$REDIS_CLI_BIN" || die "REDIS_URL is set but $REDIS_CLI_BIN is not installed to check it (apt-get install redis-tools)"
	if ! ping_url "$REDIS_URL"; then
		die "REDIS_URL=$(redact "$REDIS_URL") does not answer PING (checked with: redis-cli -u \"\$REDIS_URL\" ping); start that Redis or unset REDIS_URL"
	fi
	echo "$prog: using Redis from REDIS_URL: $(redact "$REDIS_URL")" >&2
	export REDIS_URL
	exec "$@"
fi

# 2. A Redis on the default port.
if have "$REDIS_CLI_BIN" && ping_url "redis://127.0.0.1:6379/0"; then
	export REDIS_URL="redis://127.0.0.1:6379/0"
	echo "$prog: using running Redis at $REDIS_URL" >&2
	exec "$@"
fi

# 3. Start our own.
have "$REDIS_SERVER_BIN" || die "$no_redis_msg"
have "$REDIS_CLI_BIN" || die "$no_redis_msg (redis-cli is missing too: apt-get install redis-tools)"

tmpdir=$(mktemp -d "${TMPDIR:-/tmp}/with-redis.XXXXXX")
server_pid=""

# running PID succeeds while PID exists and is not a zombie.
running() {
	local stat
	stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
	stat=${stat##*) }
	[[ ${stat%% *} != Z ]]
}

# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() {
	local rc=$?
	if [[ -n $server_pid ]] && kill -0 "$server_pid" 2>/dev/null; then
		kill -TERM "$server_pid" 2>/dev/null || true
		for _ in $(seq 1 50); do
			running "$server_pid" || break
			sleep 0.1
		done
		kill -KILL "$server_pid" 2>/dev/null || true
		wait "$server_pid" 2>/dev/null || true
	fi
	rm -rf "$tmpdir"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# start_on PORT: starts redis-server on PORT and waits (10 s) until it answers.
# Returns 0 when up, 2 when the port was taken (try another), 1 on other failure.
start_on() {
	local port=$1 log="$tmpdir/redis.log"
	: >"$log"
	"$REDIS_SERVER_BIN" --bind 127.0.0.1 --port "$port" --save "" --appendonly no \
		--dir "$tmpdir" --daemonize no --logfile "" >"$log" 2>&1 &
	server_pid=$!
	for _ in $(seq 1 100); do
		if ! running "$server_pid"; then
			wait "$server_pid" 2>/dev/null || true
			server_pid=""
			if grep -q "Address already in use" "$log"; then
				return 2
			fi
			return 1
		fi
		if ping_url "redis://127.0.0.1:$port/0"; then
			return 0
		fi
		sleep 0.1
	done
	return 1
}

started=""
port=$base_port
for _ in $(seq 1 100); do
	if port_busy "$port"; then
		port=$((port + 1))
		continue
	fi
	rc=0
	start_on "$port" || rc=$?
	case $rc in
	0)
		started=yes
		break
		;;
	2) port=$((port + 1)) ;;
	*)
		echo "$prog: redis-server failed to start on 127.0.0.1:$port; its log:" >&2
		sed 's/^/  /' "$tmpdir/redis.log" >&2 || true
		exit 1
		;;
	esac
done
[[ -n $started ]] || die "no free loopback port for redis-server in $base_port..$port"

export REDIS_URL="redis://127.0.0.1:$port/0"
echo "$prog: started redis-server $("$REDIS_SERVER_BIN" --version | awk '{print $3}') at $REDIS_URL (pid $server_pid, dir $tmpdir)" >&2
run_child "$@"
