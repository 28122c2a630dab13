#!/usr/bin/env bash
# Load test of the sandbox: it must never be the bottleneck (target: at least 20,000 simple
# requests/s on a 2-core machine). Runs wrk against a release build with the largest seeded
# data (10,000 campaigns, 50,000 users, 2,000 channels) and prints requests/s and latency.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v wrk >/dev/null; then
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq wrk >/dev/null; else sudo apt-get install -y -qq wrk >/dev/null; fi
fi
cargo build --release --locked --quiet
port="${SANDBOX_BENCH_PORT:-4811}"
"${CARGO_TARGET_DIR:-target}/release/campaign-sync" sandbox --port "$port" --campaigns 10000 --users 50000 --channels 2000 \
  --slack-tier-scale 1000000 >/tmp/campaign-sync-sandbox-bench.log 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
base="http://127.0.0.1:$port"
basic="Authorization: Basic $(printf 'sandbox-key:sandbox-secret' | base64)"
bearer="Authorization: Bearer ${SLACK_BOT_TOKEN:-sandbox-bot-token}"
run() { # name, then wrk arguments
  local name=$1; shift
  echo "== $name"
  wrk -t2 -c64 -d"${DURATION:-10s}" --latency "$@" | grep -E "Requests/sec|Latency  |50%|99%"
}
run "Mailjet REST GET /v3/REST/campaign?Limit=1" -H "$basic" "$base/v3/REST/campaign?Limit=1"
run "Mailjet REST GET /v3/REST/statcounters (one campaign)" -H "$basic" "$base/v3/REST/statcounters?SourceId=7000042&CounterSource=Campaign&CounterTiming=Message&CounterResolution=Lifetime"
run "Slack GET /api/auth.test" -H "$bearer" "$base/api/auth.test"
run "Slack GET /api/users.list?limit=200 (50,000 users)" -H "$bearer" "$base/api/users.list?limit=200"
