#!/usr/bin/env bash
# redis-tls.sh start|stop|env DIR
#
#   start DIR  Makes a throwaway CA and a server certificate for 127.0.0.1 and
#              localhost with openssl in DIR, and starts a TLS-only redis-server
#              (plain port 0, TLS on the first free loopback port from
#              $REDIS_TLS_BASE_PORT, default 16600; no client certificates; no
#              persistence) as a daemon with DIR as its dir. ACL: user `eventbus`
#              with the least-privilege rules of the one `user eventbus` line
#              of deploy/redis-acl.conf ($REDIS_TLS_ACL_FILE overrides it; its
#              >CHANGE_ME becomes the password $REDIS_TLS_PASSWORD, default 32
#              random hex digits, allowed characters [A-Za-z0-9._~-]), and user
#              `eventbus-admin` (`~* &* +@all`, a random password of its own) for
#              what the bus never does: test clean-up, ACL LOG. The default user
#              is switched off, so every client must authenticate. Waits (10 s)
#              until PING over TLS answers as `eventbus`, then writes to DIR/env
#              (mode 600):
#                REDIS_TLS_URL=rediss://eventbus:PASS@127.0.0.1:P/0
#                REDIS_TLS_ADMIN_URL=rediss://eventbus-admin:PASS2@127.0.0.1:P/0
#                REDIS_TLS_CA=DIR/ca.crt
#              Exits non-zero with a clear message if this redis-server or
#              redis-cli was built without TLS.
#   stop DIR   Stops that server and removes DIR (only a DIR made by `start`).
#   env DIR    Prints the three lines of DIR/env.
#
# Environment: REDIS_SERVER / REDIS_CLI override the binaries (default from $PATH).
#
# Example:
#   scripts/redis-tls.sh start /tmp/rtls
#   set -a; . /tmp/rtls/env; set +a
#   go test -tags tls -run TLS ./bus/      # as the least-privilege user
#   REDIS_URL=$REDIS_TLS_ADMIN_URL …        # as the admin (any key prefix)
#   scripts/redis-tls.sh stop /tmp/rtls
set -euo pipefail

readonly prog="redis-tls"
readonly marker=".redis-tls.sh"
REDIS_SERVER_BIN=${REDIS_SERVER:-redis-server}
REDIS_CLI_BIN=${REDIS_CLI:-redis-cli}
base_port=${REDIS_TLS_BASE_PORT:-16600}
acl_file=${REDIS_TLS_ACL_FILE:-$(dirname "${BASH_SOURCE[0]}")/../deploy/redis-acl.conf}

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

# alive PID succeeds while PID is a live (not zombie) redis-server.
alive() {
	local stat
	stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
	[[ $stat == *"(redis-server) "* ]] || return 1
	stat=${stat##*) }
	[[ ${stat%% *} != Z ]]
}

stop_server() {
	local pid=""
	[[ -f $dir/redis.pid ]] && pid=$(cat "$dir/redis.pid" 2>/dev/null || true)
	[[ -n $pid ]] || return 0
	local sig
	for sig in TERM KILL; do
		alive "$pid" || return 0
		kill -"$sig" "$pid" 2>/dev/null || true
		for _ in $(seq 1 50); do
			alive "$pid" || return 0
			sleep 0.1
		done
	done
	echo "$prog: redis-server pid $pid would not die" >&2
}

fail_start() {
	echo "$prog: $*" >&2
	if [[ -s $dir/redis.log ]]; then
		echo "--- $dir/redis.log (last 20 lines)" >&2
		tail -n 20 "$dir/redis.log" >&2
	fi
	stop_server
	echo "$prog: files kept in $dir (remove with: $0 stop $dir)" >&2
	exit 1
}

# check_tls_support fails with a clear message if redis-server or redis-cli
# cannot do TLS. redis-server only knows the tls-* directives when built with
# TLS, so a config check that names one fails at once on other builds.
check_tls_support() {
	local out
	if ! out=$("$REDIS_CLI_BIN" --tls --version 2>&1); then
		die "this redis-cli was built without TLS support ($out); install a build with TLS (Debian's redis-tools has it)"
	fi
	# --port 0 --tls-port 0 listens nowhere, and the bogus loglevel makes the
	# server exit right after parsing its config, so nothing is started. A TLS
	# build complains about the loglevel; one without TLS about tls-port first.
	out=$("$REDIS_SERVER_BIN" --port 0 --tls-port 0 --loglevel not-a-level 2>&1 || true)
	if grep -q "tls-port" <<<"$out"; then
		die "this redis-server was built without TLS support (it rejects tls-port: $(grep -m1 -i 'bad directive' <<<"$out" || grep -m1 -i 'error' <<<"$out" || true)); install a build with TLS (BUILD_TLS=yes; Debian's redis-server has it)"
	fi
}

gen_certs() {
	local log="$dir/openssl.log"
	{
		openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
			-keyout "$dir/ca.key" -out "$dir/ca.crt" -days 2 \
			-subj "/CN=eventbus throwaway test CA" \
			-addext "basicConstraints=critical,CA:TRUE" \
			-addext "keyUsage=critical,keyCertSign,cRLSign" &&
			openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
				-keyout "$dir/server.key" -out "$dir/server.csr" -subj "/CN=127.0.0.1" &&
			printf '%s\n' \
				"basicConstraints=CA:FALSE" \
				"keyUsage=critical,digitalSignature,keyEncipherment" \
				"extendedKeyUsage=serverAuth" \
				"subjectAltName=IP:127.0.0.1,DNS:localhost" >"$dir/server.ext" &&
			openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" \
				-CAcreateserial -out "$dir/server.crt" -days 2 -extfile "$dir/server.ext"
	} >"$log" 2>&1 || {
		cat "$log" >&2
		die "openssl failed to make the certificates"
	}
	chmod 600 "$dir/ca.key" "$dir/server.key"
}

# read_acl_line prints the one `user eventbus ` line of $acl_file, which must
# hold the password placeholder >CHANGE_ME exactly once.
read_acl_line() {
	[[ -f $acl_file ]] || die "ACL file $acl_file not found"
	local lines
	lines=$(grep -E '^user eventbus ' "$acl_file" || true)
	[[ -n $lines && $(wc -l <<<"$lines") -eq 1 ]] || die "$acl_file must hold exactly one line starting with 'user eventbus '"
	[[ $(grep -o '>CHANGE_ME' <<<"$lines" | wc -l) -eq 1 ]] || die "the user line of $acl_file must hold the password placeholder >CHANGE_ME once"
	printf '%s\n' "$lines"
}

tls_ping() {
	local out
	out=$(timeout 5 "$REDIS_CLI_BIN" --tls --cacert "$dir/ca.crt" -h 127.0.0.1 -p "$1" \
		--user eventbus --pass "$2" --no-auth-warning ping 2>&1) || return 1
	[[ $out == PONG ]]
}

do_start() {
	have "$REDIS_SERVER_BIN" || die "redis-server not found (apt-get install redis-server)"
	have "$REDIS_CLI_BIN" || die "redis-cli not found (apt-get install redis-tools)"
	have openssl || die "openssl not found (apt-get install openssl)"
	check_tls_support

	local pass=${REDIS_TLS_PASSWORD:-}
	if [[ -z $pass ]]; then
		pass=$(openssl rand -hex 16)
	elif [[ ! $pass =~ ^[A-Za-z0-9._~-]+$ ]]; then
		die "REDIS_TLS_PASSWORD has characters outside [A-Za-z0-9._~-] (they would need escaping in the URL); pick another"
	fi
	local admin_pass
	admin_pass=$(openssl rand -hex 16)
	acl_line=$(read_acl_line)
	acl_line=${acl_line/'>CHANGE_ME'/">$pass"}

	if [[ -f $dir/env ]]; then
		die "$dir/env exists: a server may already run there (stop it with: $0 stop $dir)"
	fi
	if [[ -e $dir && -n "$(ls -A "$dir" 2>/dev/null)" && ! -f $dir/$marker ]]; then
		die "$dir exists and is not empty; give a new or empty directory"
	fi
	mkdir -p "$dir"
	dir=$(cd "$dir" && pwd)
	touch "$dir/$marker"
	chmod 700 "$dir"
	gen_certs

	local port=$base_port ok=""
	while ((port <= base_port + 1000)); do
		if port_busy "$port"; then
			port=$((port + 1))
			continue
		fi
		# The password goes in a mode-600 config file, not on the command line.
		(
			umask 077
			cat >"$dir/redis.conf" <<-EOF
				bind 127.0.0.1
				port 0
				tls-port $port
				tls-cert-file $dir/server.crt
				tls-key-file $dir/server.key
				tls-ca-cert-file $dir/ca.crt
				tls-auth-clients no
				save ""
				appendonly no
				dir $dir
				daemonize yes
				pidfile $dir/redis.pid
				logfile $dir/redis.log
				user default off
				$acl_line
				user eventbus-admin on >$admin_pass ~* &* +@all
			EOF
		)
		: >"$dir/redis.log"
		"$REDIS_SERVER_BIN" "$dir/redis.conf" >>"$dir/redis.log" 2>&1 ||
			fail_start "redis-server refused the TLS configuration"
		local taken=""
		for _ in $(seq 1 100); do
			if tls_ping "$port" "$pass"; then
				ok=yes
				break
			fi
			if grep -q "Address already in use" "$dir/redis.log"; then
				taken=yes
				break
			fi
			sleep 0.1
		done
		[[ -z $ok ]] || break
		[[ -n $taken ]] || fail_start "redis-server with TLS on 127.0.0.1:$port did not answer PING over TLS within 10 s"
		stop_server
		port=$((port + 1))
	done
	[[ -n $ok ]] || fail_start "no free loopback port in $base_port..$port"

	(
		umask 077
		printf 'REDIS_TLS_URL=rediss://eventbus:%s@127.0.0.1:%s/0\nREDIS_TLS_ADMIN_URL=rediss://eventbus-admin:%s@127.0.0.1:%s/0\nREDIS_TLS_CA=%s\n' \
			"$pass" "$port" "$admin_pass" "$port" "$dir/ca.crt" >"$dir/env"
	)
	echo "$prog: TLS Redis up at rediss://eventbus:***@127.0.0.1:$port/0 (CA $dir/ca.crt, env in $dir/env)" >&2
}

do_stop() {
	if [[ ! -e $dir ]]; then
		echo "$prog: $dir does not exist; nothing to stop" >&2
		return 0
	fi
	[[ -f $dir/$marker ]] || die "$dir was not made by '$0 start'; not touching it"
	stop_server
	rm -rf "$dir"
	echo "$prog: stopped, removed $dir" >&2
}

do_env() {
	[[ -f $dir/env ]] || die "$dir/env not found: start a server with: $0 start $dir"
	cat "$dir/env"
}

case $cmd in
start) do_start ;;
stop) do_stop ;;
env) do_env ;;
*) usage ;;
esac
