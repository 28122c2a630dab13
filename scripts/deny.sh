#!/usr/bin/env bash
# Supply chain: `cargo deny check` — RustSec advisories, licences (deny.toml's allow-list),
# banned crates (OpenSSL, native-tls, ring: one TLS stack, rustls on aws-lc-rs) and sources.
# With ../shared/advisory-db (an offline snapshot, as CI has no internet) the advisories are
# checked against it; otherwise cargo-deny fetches the database as it normally does.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v cargo-deny >/dev/null; then
  echo "deny.sh: installing cargo-deny"
  cargo install cargo-deny --locked --quiet
fi
snapshot=../shared/advisory-db
if [ -d "$snapshot/crates" ]; then
  root=$(mktemp -d)
  trap 'rm -rf "$root"' EXIT
  # cargo-deny opens a database of the default URL at <db-path>/advisory-db-3157b0e258782691,
  # and wants it to be a git checkout (it reads the HEAD commit's time for staleness).
  db="$root/advisory-db-3157b0e258782691"
  cp -r "$snapshot" "$db"
  chmod -R u+w "$db"
  git -C "$db" init -q
  git -C "$db" add -A
  git -C "$db" -c user.name=ci -c user.email=ci@localhost commit -q -m "advisory-db snapshot"
  sed "s|^\[advisories\]|[advisories]\ndb-path = \"$root\"|" deny.toml > "$root/deny.toml"
  cargo deny --locked --offline --config "$root/deny.toml" check
else
  cargo deny --locked check
fi
