#!/usr/bin/env bash
# Runs the whole test suite against real PostgreSQL and Redis (started or installed first).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/services.sh
if ! command -v cargo >/dev/null; then
  echo "test.sh: cargo is missing; install Rust 1.95 with rustup (see rust-toolchain.toml)" >&2
  exit 1
fi
cargo test --locked
