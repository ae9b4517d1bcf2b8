#!/bin/sh
# trigger-instructions.sh: what the invalidation and audit triggers cost the
# common one-row writes, in CPU instructions counted by valgrind's callgrind
# on a single-user PostgreSQL backend. Instruction counts do not depend on
# what else the machine runs, so this judges trigger work on a loaded
# machine, where throughput ratios are noise; the throughput ratios
# (migrations' BenchmarkTriggerOverhead) remain the acceptance measure.
#
#   sh scripts/trigger-instructions.sh [N]   (default 200)
#
# It makes a throwaway cluster from the PostgreSQL binaries on PATH or in
# PG_BIN (as the user "postgres" when run as root), migrates it with
# `go run ./cmd/orgperm migrate up`, and runs each write N times and 3N
# times under callgrind, with only the named triggers enabled; the
# difference over 2N is the instructions one more write costs, free of the
# backend's start-up and of first-call work (compiling the functions,
# planning their queries). It prints, for each write, that cost with no
# trigger and what each trigger set adds to it. Then it migrates one step
# down (the previous release's triggers) and measures the invalidation
# triggers again.
set -eu
n=${1:-200}
script=trigger-instructions
. "$(dirname "$0")/callgrind-cluster.sh"
psql -q -h "$dir" -p "$port" -U postgres bench <<'SQL'
INSERT INTO orgperm.memberships (org_id, user_id) VALUES ('o1', 'u1');
INSERT INTO orgperm.roles (id, org_id, name) VALUES (1, 'o1', 'r1'), (2, 'o1', 'r2');
INSERT INTO orgperm.membership_roles (org_id, user_id, role_id) VALUES ('o1', 'u1', 1);
CREATE FUNCTION public.yardstick() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_notify('orgperm_yardstick', 'x'); RETURN NULL; END $$;
CREATE TRIGGER yardstick AFTER UPDATE ON orgperm.memberships FOR EACH STATEMENT EXECUTE FUNCTION public.yardstick();
ALTER TABLE orgperm.memberships DISABLE TRIGGER yardstick;
SQL
stop

# Every trigger the runs switch: TABLE.TRIGGER.
all="memberships.yardstick"
for t in memberships membership_roles data_access; do
	for e in insert update delete; do
		all="$all $t.${t}_notify_$e $t.${t}_audit_$e"
	done
done

# count NAME REPEAT WRITE TRIGGERS...: instructions of a backend that runs
# WRITE (a file of statements) REPEAT times with only TRIGGERS enabled.
count() {
	name=$1 repeat=$2 write=$3
	shift 3
	f="$dir/$name.sql"
	{
		for t in $all; do
			case " $* " in
			*" $t "*) echo "ALTER TABLE orgperm.${t%%.*} ENABLE TRIGGER ${t#*.};" ;;
			*) echo "ALTER TABLE orgperm.${t%%.*} DISABLE TRIGGER ${t#*.};" ;;
			esac
		done
		i=0
		while [ $i -lt "$repeat" ]; do
			cat "$dir/$write.write"
			i=$((i + 1))
		done
		for t in $all; do
			case $t in
			*yardstick) ;;
			*) echo "ALTER TABLE orgperm.${t%%.*} ENABLE TRIGGER ${t#*.};" ;;
			esac
		done
	} >"$f"
	collect "$name" "$f"
}
# marginal WRITE TRIGGERS...: instructions of one more WRITE.
marginal() {
	a=$(count a "$n" "$@")
	b=$(count b $((3 * n)) "$@")
	echo $(((b - a) / (2 * n)))
}

cat >"$dir/membership.write" <<'SQL'
UPDATE orgperm.memberships SET status = CASE status WHEN 'active' THEN 'suspended' ELSE 'active' END WHERE org_id = 'o1' AND user_id = 'u1';
SQL
cat >"$dir/role-update.write" <<'SQL'
UPDATE orgperm.membership_roles SET valid_until = CASE WHEN valid_until IS NULL THEN 'infinity'::timestamptz END WHERE org_id = 'o1' AND user_id = 'u1' AND role_id = 1;
SQL
cat >"$dir/role-assign.write" <<'SQL'
INSERT INTO orgperm.membership_roles (org_id, user_id, role_id) VALUES ('o1', 'u1', 2);
DELETE FROM orgperm.membership_roles WHERE org_id = 'o1' AND user_id = 'u1' AND role_id = 2;
SQL
cat >"$dir/grant.write" <<'SQL'
INSERT INTO orgperm.data_access (org_id, user_id, resource_type, resource_id) VALUES ('o1', 'u1', 'invoice', '1');
DELETE FROM orgperm.data_access WHERE org_id = 'o1' AND user_id = 'u1' AND resource_type = 'invoice';
SQL

# measure LABEL: the invalidation triggers' cost on each write.
measure() {
	for w in membership role-update role-assign grant; do
		case $w in
		membership) t="memberships.memberships_notify_update" ;;
		role-update) t="membership_roles.membership_roles_notify_update" ;;
		role-assign) t="membership_roles.membership_roles_notify_insert membership_roles.membership_roles_notify_delete" ;;
		grant) t="data_access.data_access_notify_insert data_access.data_access_notify_delete" ;;
		esac
		eval "none=\$none_$(echo $w | tr - _)"
		# $t is a list of triggers: split on purpose.
		# shellcheck disable=SC2086
		echo "$1 $w: +$(($(marginal $w $t) - none))"
	done
}

echo "instructions of one more write beyond the same write with no trigger ($n and $((3 * n)) writes per run)"
for w in membership role-update role-assign grant; do
	v=$(marginal $w)
	eval "none_$(echo $w | tr - _)=$v"
	echo "untriggered $w: $v"
done
echo "yardstick (a statement trigger that only NOTIFYs) membership: +$(($(marginal membership memberships.yardstick) - none_membership))"
echo "invalidation and audit triggers membership: +$(($(marginal membership memberships.memberships_notify_update memberships.memberships_audit_update) - none_membership))"
start
cur=$(psql -X -A -t -h "$dir" -p "$port" -U postgres -c 'SELECT orgperm.schema_version()' bench)
stop
measure "schema version $cur, invalidation triggers"
start
DATABASE_URL=$url go run ./cmd/orgperm migrate down >/dev/null
prev=$(psql -X -A -t -h "$dir" -p "$port" -U postgres -c 'SELECT orgperm.schema_version()' bench)
stop
measure "schema version $prev, invalidation triggers"
