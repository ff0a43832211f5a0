#!/usr/bin/env bash
# with-postgres.sh CMD [ARGS...]
#
# Runs CMD with POSTGRES_URL exported and pointing at a PostgreSQL that
# answers, then cleans up. Exits with CMD's exit code.
#
# Which PostgreSQL, in this order:
#   1. $POSTGRES_URL if set (must answer `psql "$POSTGRES_URL" -c 'select 1'`
#      or pg_isready, else exit 1);
#   2. a PostgreSQL answering on 127.0.0.1:5432 with a database "test"
#      -> postgres://postgres@127.0.0.1:5432/test?sslmode=disable;
#   3. a throwaway server from the installed binaries ($PG_BINDIR, else the
#      newest /usr/lib/postgresql/*/bin, else $PATH): initdb + pg_ctl on a temp
#      dir and a free loopback port, trust auth, fsync off, database "test";
#      stopped and removed when CMD ends. As root it runs as user postgres.
# One line on stderr says which PostgreSQL is used.
#
# Examples:
#   scripts/with-postgres.sh go test -race ./outbox/
#   scripts/with-redis.sh scripts/with-postgres.sh go test ./...
set -euo pipefail

readonly prog="with-postgres"
readonly no_pg_msg="no PostgreSQL: set POSTGRES_URL, start PostgreSQL on 127.0.0.1:5432 with a database \"test\", or install it (apt-get install postgresql)"

die() {
	echo "$prog: $*" >&2
	exit 1
}

if [[ $# -eq 0 ]]; then
	echo "usage: $0 CMD [ARGS...]" >&2
	exit 2
fi

have() { command -v "$1" >/dev/null 2>&1; }

bindir=${PG_BINDIR:-}
if [[ -z $bindir ]]; then
	for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k4 -n -r); do
		if [[ -x $d/initdb ]]; then
			bindir=$d
			break
		fi
	done
fi
if [[ -z $bindir ]] && have initdb; then
	bindir=$(dirname "$(command -v initdb)")
fi
isready() {
	if [[ -n $bindir && -x $bindir/pg_isready ]]; then
		"$bindir/pg_isready" -q -d "$1"
	elif have pg_isready; then
		pg_isready -q -d "$1"
	else
		return 1
	fi
}
# hasdb URL succeeds if URL's database accepts a query (psql), or, without
# psql, if the server is ready.
hasdb() {
	if have psql; then
		timeout 5 psql -qtAX -d "$1" -c 'select 1' >/dev/null 2>&1
	else
		isready "$1"
	fi
}

# 1. POSTGRES_URL given: use it or fail loudly.
if [[ -n ${POSTGRES_URL:-} ]]; then
	hasdb "$POSTGRES_URL" || die "POSTGRES_URL does not answer (checked with psql/pg_isready); start that PostgreSQL or unset POSTGRES_URL"
	echo "$prog: using PostgreSQL from POSTGRES_URL" >&2
	export POSTGRES_URL
	exec "$@"
fi

# 2. The default one.
default_url="postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
if hasdb "$default_url"; then
	export POSTGRES_URL=$default_url
	echo "$prog: using running PostgreSQL at $POSTGRES_URL" >&2
	exec "$@"
fi

# 3. Start our own.
[[ -n $bindir && -x $bindir/initdb && -x $bindir/pg_ctl ]] || die "$no_pg_msg"
tmpdir=$(mktemp -d "${TMPDIR:-/tmp}/with-postgres.XXXXXX")
as=()
if [[ $(id -u) -eq 0 ]]; then
	id postgres >/dev/null 2>&1 || die "running as root and there is no user postgres to run initdb as"
	chown postgres "$tmpdir"
	as=(runuser -u postgres --)
fi
started=""
# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() {
	local rc=$?
	if [[ -n $started ]]; then
		"${as[@]}" "$bindir/pg_ctl" -D "$tmpdir/data" -m immediate -w stop >/dev/null 2>&1 || true
	fi
	rm -rf "$tmpdir"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

"${as[@]}" "$bindir/initdb" -D "$tmpdir/data" -U postgres -A trust --no-sync >"$tmpdir/initdb.log" 2>&1 ||
	{ sed 's/^/  /' "$tmpdir/initdb.log" >&2; die "initdb failed"; }
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null || echo $((15432 + RANDOM % 1000)))
"${as[@]}" "$bindir/pg_ctl" -D "$tmpdir/data" -l "$tmpdir/server.log" -w -t 60 \
	-o "-p $port -c listen_addresses=127.0.0.1 -k $tmpdir -c fsync=off" start >/dev/null ||
	{ sed 's/^/  /' "$tmpdir/server.log" >&2; die "pg_ctl start failed on port $port"; }
started=yes
"${as[@]}" "$bindir/createdb" -h 127.0.0.1 -p "$port" -U postgres test || die "createdb test failed"
export POSTGRES_URL="postgres://postgres@127.0.0.1:$port/test?sslmode=disable"
echo "$prog: started PostgreSQL $("$bindir/postgres" --version | awk '{print $3}') at $POSTGRES_URL (dir $tmpdir)" >&2
rc=0
"$@" || rc=$?
exit "$rc"
