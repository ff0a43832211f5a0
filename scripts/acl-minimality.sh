#!/usr/bin/env bash
# acl-minimality.sh: shows that the ACL line of deploy/redis-acl.conf grants no
# command the bus does not need. It starts a TLS Redis (scripts/redis-tls.sh),
# then, for each +command of the line in turn, takes that command away from
# the eventbus user, runs TestTLSACLUserRunsEveryBusFeature and gives the
# command back. Every line of its output should read "needed"; "NOT NEEDED"
# names a command the test never uses (exit code 1).
#
#   scripts/acl-minimality.sh          # about 5 minutes
set -euo pipefail
cd "$(dirname "$0")/.."
dir=$(mktemp -d)
bin=$(mktemp)
trap 'scripts/redis-tls.sh stop "$dir" >/dev/null 2>&1; rm -f "$bin"' EXIT
scripts/redis-tls.sh start "$dir"
set -a
# shellcheck disable=SC1091
. "$dir/env"
set +a
go test -c -tags tls -o "$bin" ./bus/
admin_pass=${REDIS_TLS_ADMIN_URL#rediss://eventbus-admin:}
admin_pass=${admin_pass%@*}
port=${REDIS_TLS_URL##*:}
port=${port%/0}
admin() { redis-cli --tls --cacert "$REDIS_TLS_CA" -h 127.0.0.1 -p "$port" --user eventbus-admin --pass "$admin_pass" --no-auth-warning "$@" >/dev/null; }
status=0
for rule in $(grep -E '^user eventbus ' deploy/redis-acl.conf | tr ' ' '\n' | grep '^+'); do
	admin ACL SETUSER eventbus "-${rule#+}"
	if (cd bus && timeout 120 "$bin" -test.run '^TestTLSACLUserRunsEveryBusFeature$' -test.count=1 >/dev/null 2>&1); then
		echo "$rule NOT NEEDED"
		status=1
	else
		echo "$rule needed"
	fi
	admin ACL SETUSER eventbus "$rule"
done
exit $status
