#!/usr/bin/env bash
# Runs the whole service on this machine in one process: PostgreSQL and Redis (started or
# installed first), then `campaign-sync demo`: migrations, the sandbox (offline Mailjet and
# Slack) with seeded data, the web server and the worker with schedules sped up. Ctrl-C stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/services.sh
if ! command -v cargo >/dev/null; then
  echo "demo.sh: cargo is missing; install Rust 1.95 with rustup (see rust-toolchain.toml)" >&2
  exit 1
fi
cargo build --release --locked
exec "${CARGO_TARGET_DIR:-target}/release/campaign-sync" demo
