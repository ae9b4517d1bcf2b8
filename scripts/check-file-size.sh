#!/usr/bin/env bash
# check-file-size.sh: fail when a file tracked by git (as staged in the
# index) exceeds 1 MB, so that no binary or data dump is committed again.
# Run by `make lint`; LIMIT overrides the limit in bytes.
set -euo pipefail
cd "$(dirname "$0")/.."
limit=${LIMIT:-1048576}
# Sizes of the blobs in the index: the files as they would be committed.
big=$(git ls-files -s -z | tr '\0' '\n' | awk '$1 != "160000" {print $2}' |
  git cat-file --batch-check='%(objectsize) %(objectname)' |
  awk -v limit="$limit" '$1 > limit {print $2}')
[ -z "$big" ] && exit 0
echo "check-file-size: tracked files over $limit bytes:" >&2
git ls-files -s | while read -r mode obj stage path; do
  case " $big " in *"$obj"*) echo "  $path ($(git cat-file -s "$obj") bytes)" >&2 ;; esac
done
exit 1
