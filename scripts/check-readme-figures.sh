#!/usr/bin/env bash
# check-readme-figures.sh: every figure (a number with a unit: ns, µs, ms,
# s, %, ×, B, instances) that README.md quotes between its
# "<!-- benchmark-summary" and "<!-- end benchmark-summary -->" lines must
# appear in docs/BENCHMARKS.md, which `make bench` generates: so the README
# cannot drift from the measurements. Run by `make lint`.
# Usage: check-readme-figures.sh [README [BENCHMARKS]]
set -euo pipefail
cd "$(dirname "$0")/.."
readme=${1:-README.md}
bench=${2:-docs/BENCHMARKS.md}
export LC_ALL=C.UTF-8

section=$(awk '/^<!-- benchmark-summary/ {on=1; next} /^<!-- end benchmark-summary -->/ {on=0} on' "$readme")
if [ -z "$section" ]; then
  echo "check-readme-figures: $readme has no benchmark-summary section" >&2
  exit 1
fi
figures=$(printf '%s\n' "$section" |
  grep -oE '[0-9][0-9,]*(\.[0-9]+)? ?(ns|µs|ms|s|%|×|B|instances)([^A-Za-z0-9]|$)' |
  sed -E 's/[^A-Za-z0-9%×µ]$//' | sort -u)
missing=0
checked=0
while IFS= read -r fig; do
  [ -n "$fig" ] || continue
  checked=$((checked + 1))
  re=$(printf '%s' "$fig" | sed -e 's/[.[\*^$]/\\&/g')
  if ! grep -qE "(^|[^0-9.,])$re([^A-Za-z0-9]|$)" "$bench"; then
    echo "check-readme-figures: $readme quotes \"$fig\", which $bench does not hold" >&2
    missing=1
  fi
done <<<"$figures"
if [ "$missing" = 1 ]; then
  echo "check-readme-figures: quote what $bench holds (make bench regenerates it)" >&2
  exit 1
fi
echo "check-readme-figures: $checked figures of $readme found in $bench"
