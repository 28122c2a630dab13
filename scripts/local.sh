#!/usr/bin/env bash
# Runs campaign-sync on this machine: PostgreSQL and Redis (started or installed first), a
# development database, migrations, the upstream sandbox (Mailjet and Slack, offline), then the
# web process and the worker. Ctrl-C stops them all.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/services.sh
cargo build --release --locked
bin=target/release/campaign-sync

# Secrets for this machine only: generated once into .local.env (git-ignored), never committed.
if [ ! -f .local.env ]; then
  rand() { head -c 24 /dev/urandom | base64 | tr '+/' '-_'; }
  cat > .local.env <<ENV
API_TOKEN=$(rand)
METRICS_TOKEN=$(rand)
MAILJET_WEBHOOK_USER=mailjet
MAILJET_WEBHOOK_PASSWORD=$(rand)
SLACK_SIGNING_SECRET=$(rand)
MAILJET_MCP_TOKEN=$(rand)
SLACK_BOT_TOKEN=local-$(rand)
ENCRYPTION_KEY=$(head -c 32 /dev/urandom | base64)
ENV
fi
set -a
# shellcheck disable=SC1091
. ./.local.env
set +a
export APP_ENV=development PORT="${PORT:-8080}"
# The sandbox stands in for Mailjet and Slack, with the same credentials.
sandbox_port="${SANDBOX_PORT:-4010}"
export MAILJET_MCP_URL="http://127.0.0.1:$sandbox_port" MAILJET_API_URL="http://127.0.0.1:$sandbox_port"
export SLACK_API_URL="http://127.0.0.1:$sandbox_port/api"

export PGPASSWORD=postgres
if ! psql -h 127.0.0.1 -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'campaign_sync_dev'" | grep -q 1; then
  createdb -h 127.0.0.1 -U postgres campaign_sync_dev
fi
"$bin" migrate
"$bin" sandbox --port "$sandbox_port" & sandbox=$!
"$bin" web & web=$!
"$bin" worker & worker=$!
trap 'kill -TERM $web $worker $sandbox 2>/dev/null || true; wait' INT TERM

cat <<INFO

campaign-sync is running (APP_ENV=development)
  health     http://127.0.0.1:$PORT/healthz
  readiness  http://127.0.0.1:$PORT/readyz
  metrics    curl -H "Authorization: Bearer \$METRICS_TOKEN" http://127.0.0.1:$PORT/metrics
             (the tokens are in .local.env)
  sandbox    http://127.0.0.1:$sandbox_port (Mailjet REST and agent; Slack at /api)
  doctor     set -a; . ./.local.env; set +a; $bin doctor
  jobs       set -a; . ./.local.env; set +a; $bin jobs list
Ctrl-C stops it.

INFO
wait
