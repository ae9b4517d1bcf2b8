#!/bin/sh
# fill-instructions.sh: what one fill costs the server against a bare
# primary-key select, in CPU instructions counted by valgrind's callgrind on
# a single-user PostgreSQL backend (docs/BENCHMARKS.md, "The fill in
# instructions"). Instruction counts do not depend on what else the machine
# runs; BenchmarkFill's wall-time ratio remains the acceptance measure.
#
#   sh scripts/fill-instructions.sh [N]   (default 200)
#
# It makes a throwaway cluster from the PostgreSQL binaries on PATH or in
# PG_BIN (as the user "postgres" when run as root), migrates it with
# `go run ./cmd/orgperm migrate up`, seeds BenchmarkFill's population (1,000
# members of one org, 3 roles and 10 record grants each), and runs each
# statement, prepared with a generic plan, N and 3N times under callgrind;
# the difference over 2N is the instructions of one more execution, free of
# the backend's start-up and of planning. The fill is memberSQL, read from
# pkg/membership/roledefs.go. Single-user mode prints rows in text, so the
# output part differs from what a client in binary format costs.
set -eu
n=${1:-200}
script=fill-instructions
. "$(dirname "$0")/callgrind-cluster.sh"
psql -q -h "$dir" -p "$port" -U postgres bench <<'SQL'
INSERT INTO orgperm.roles (org_id, name) SELECT 'bench', 'r' || i FROM generate_series(1, 9) i;
INSERT INTO orgperm.memberships (org_id, user_id) SELECT 'bench', 'm' || i FROM generate_series(1, 1000) i;
INSERT INTO orgperm.membership_roles (org_id, user_id, role_id)
SELECT 'bench', 'm' || i, r.id FROM generate_series(1, 1000) i, (SELECT id FROM orgperm.roles ORDER BY id LIMIT 3) r;
INSERT INTO orgperm.data_access (org_id, user_id, resource_type, resource_id)
SELECT 'bench', 'm' || i, 'type' || (j % 5), 'record-' || j FROM generate_series(1, 1000) i, generate_series(1, 10) j;
VACUUM ANALYZE;
SQL
stop

# The statements, one line each.
member=$(sed -n '/^const memberSQL = `$/,/`$/p' pkg/membership/roledefs.go | sed '1d;s/`$//' | tr '\n' ' ')
[ -n "$member" ] || { echo "fill-instructions: memberSQL not found in pkg/membership/roledefs.go" >&2; exit 1; }
printf '%s\n' "PREPARE s(text, text, timestamptz) AS SELECT status FROM orgperm.memberships WHERE org_id = \$1 AND user_id = \$2;" >"$dir/pk.prep"
printf '%s\n' "PREPARE s(text, text, timestamptz) AS $member;" >"$dir/fill.prep"

# count NAME REPEAT: instructions of a backend that executes NAME's
# statement REPEAT times, over the members in turn.
count() {
	f="$dir/$1.$2.sql"
	{
		echo "SET plan_cache_mode = force_generic_plan;"
		cat "$dir/$1.prep"
		i=0
		while [ $i -lt "$2" ]; do
			echo "EXECUTE s('bench', 'm$((i % 1000 + 1))', NULL);"
			i=$((i + 1))
		done
	} >"$f"
	collect "$1.$2" "$f"
}
for s in pk fill; do
	a=$(count $s "$n")
	b=$(count $s $((3 * n)))
	echo "$s: $(((b - a) / (2 * n)))"
done
