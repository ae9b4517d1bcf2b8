#!/bin/sh
# trigger-instructions.sh: what the invalidation and audit triggers cost a
# one-row membership UPDATE, in CPU instructions counted by valgrind's
# callgrind on a single-user PostgreSQL backend. Instruction counts do not
# depend on what else the machine runs, so this judges trigger work on a
# loaded machine, where throughput ratios are noise; the throughput ratios
# (migrations' BenchmarkTriggers*) remain the acceptance measure.
#
#   sh scripts/trigger-instructions.sh [UPDATES]   (default 300)
#
# It makes a throwaway cluster from the PostgreSQL binaries on PATH or in
# PG_BIN (as the user "postgres" when run as root), migrates it with
# `go run ./cmd/orgperm migrate up`, and runs UPDATES updates of one
# membership's status under callgrind four times: no triggers, a statement
# trigger that only NOTIFYs a constant (the yardstick), the invalidation
# trigger, and the invalidation and audit triggers. It prints each one's
# instructions per UPDATE beyond the untriggered one.
set -eu
n=${1:-300}
bin=${PG_BIN:-$(dirname "$(command -v initdb 2>/dev/null || echo /usr/lib/postgresql/15/bin/initdb)")}
command -v valgrind >/dev/null || { echo "trigger-instructions: valgrind is not installed" >&2; exit 2; }
dir=$(mktemp -d)
trap 'run "$bin/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true; rm -rf "$dir"' EXIT
chmod 755 "$dir"
run() { if [ "$(id -u)" = 0 ]; then su postgres -s /bin/sh -c "$(printf '%s ' "$@")"; else "$@"; fi; }
[ "$(id -u)" = 0 ] && chown postgres "$dir"
run "$bin/initdb" -D "$dir/data" -A trust -U postgres >/dev/null
opts="-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
port=$((20000 + $$ % 20000))
run "$bin/pg_ctl" -D "$dir/data" -o "'-p $port -k $dir -c listen_addresses= $opts'" -l "$dir/log" -w start >/dev/null
psql -q -h "$dir" -p "$port" -U postgres -c 'CREATE DATABASE bench' postgres
DATABASE_URL="postgres://postgres@/bench?host=$dir&port=$port" go run ./cmd/orgperm migrate up >/dev/null
psql -q -h "$dir" -p "$port" -U postgres bench <<'SQL'
INSERT INTO orgperm.memberships (org_id, user_id) VALUES ('o1', 'u1');
CREATE FUNCTION public.yardstick() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_notify('orgperm_yardstick', 'x'); RETURN NULL; END $$;
CREATE TRIGGER yardstick AFTER UPDATE ON orgperm.memberships FOR EACH STATEMENT EXECUTE FUNCTION public.yardstick();
ALTER TABLE orgperm.memberships DISABLE TRIGGER yardstick;
SQL
run "$bin/pg_ctl" -D "$dir/data" -w stop >/dev/null

# script NAME TRIGGERS...: the updates with only TRIGGERS of the three on.
script() {
	name=$1
	shift
	f="$dir/$name.sql"
	{
		for t in memberships_audit_update memberships_notify_update yardstick; do
			case " $* " in
			*" $t "*) echo "ALTER TABLE orgperm.memberships ENABLE TRIGGER $t;" ;;
			*) echo "ALTER TABLE orgperm.memberships DISABLE TRIGGER $t;" ;;
			esac
		done
		i=0
		while [ $i -lt "$n" ]; do
			echo "UPDATE orgperm.memberships SET status = CASE status WHEN 'active' THEN 'suspended' ELSE 'active' END WHERE org_id = 'o1' AND user_id = 'u1';"
			i=$((i + 1))
		done
	} >"$f"
	chmod 644 "$f"
}
count() {
	run valgrind --tool=callgrind --callgrind-out-file="$dir/cg.$1" "$bin/postgres" --single -D "$dir/data" $opts bench \
		<"$dir/$1.sql" >"$dir/$1.out" 2>"$dir/$1.log"
	if grep -q ERROR "$dir/$1.out"; then
		cat "$dir/$1.out" >&2
		exit 1
	fi
	sed -n 's/.*Collected : \([0-9]*\).*/\1/p' "$dir/$1.log"
}
script none
script yardstick yardstick
script notify memberships_notify_update
script notify_audit memberships_notify_update memberships_audit_update
base=$(count none)
echo "one-row membership UPDATE, $n updates, instructions per UPDATE beyond the untriggered one"
echo "untriggered (whole backend run, per UPDATE): $((base / n))"
for s in yardstick notify notify_audit; do
	c=$(count $s)
	echo "$s: +$(((c - base) / n))"
done
