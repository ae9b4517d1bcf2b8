# callgrind-cluster.sh, sourced by trigger-instructions.sh and
# fill-instructions.sh (run from the repository's root): a throwaway
# cluster from the PostgreSQL binaries on PATH or in PG_BIN (as the user
# "postgres" when run as root), started, with a database "bench" migrated
# by `go run ./cmd/orgperm migrate up`, removed on exit. It defines bin,
# dir, opts (the server settings, for single-user backends too), port, url,
# run (a command as the cluster's owner), start, stop and collect. The
# sourcing script sets script (its name, for messages) first.
bin=${PG_BIN:-$(dirname "$(command -v initdb 2>/dev/null || echo /usr/lib/postgresql/15/bin/initdb)")}
command -v valgrind >/dev/null || { echo "$script: valgrind is not installed" >&2; exit 2; }
dir=$(mktemp -d)
trap 'run "$bin/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true; rm -rf "$dir"' EXIT
chmod 755 "$dir"
run() { if [ "$(id -u)" = 0 ]; then su postgres -s /bin/sh -c "$(printf '%s ' "$@")"; else "$@"; fi; }
[ "$(id -u)" = 0 ] && chown postgres "$dir"
run "$bin/initdb" -D "$dir/data" -A trust -U postgres >/dev/null
opts="-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
port=$((20000 + $$ % 20000))
url="postgres://postgres@/bench?host=$dir&port=$port"
start() { run "$bin/pg_ctl" -D "$dir/data" -o "'-p $port -k $dir -c listen_addresses= $opts'" -l "$dir/log" -w start >/dev/null; }
stop() { run "$bin/pg_ctl" -D "$dir/data" -w stop >/dev/null; }
start
psql -q -h "$dir" -p "$port" -U postgres -c 'CREATE DATABASE bench' postgres
DATABASE_URL=$url go run ./cmd/orgperm migrate up >/dev/null

# collect NAME FILE: the instructions, counted by callgrind, of a
# single-user backend on the database bench that runs the statements of
# FILE (the cluster stopped); its output is $dir/NAME.out. A statement that
# fails ends the script.
collect() {
	chmod 644 "$2"
	run valgrind --tool=callgrind --callgrind-out-file="$dir/cg.$1" "$bin/postgres" --single -D "$dir/data" $opts bench \
		<"$2" >"$dir/$1.out" 2>"$dir/$1.log"
	if grep -q ERROR "$dir/$1.out"; then
		cat "$dir/$1.out" >&2
		exit 1
	fi
	sed -n 's/.*Collected : \([0-9]*\).*/\1/p' "$dir/$1.log"
}
