#!/usr/bin/env bash
# Makes sure PostgreSQL (127.0.0.1:5432) and Redis (127.0.0.1:6379) answer: starts them when
# they are installed but stopped, installs them with apt-get when they are absent.
# Used by the README's commands and by .ci/run. Idempotent.
set -euo pipefail

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

apt_install() {
  if [ -z "${APT_UPDATED:-}" ]; then
    as_root apt-get update -qq
    APT_UPDATED=1
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

pg_ready() {
  if command -v pg_isready >/dev/null; then
    pg_isready -q -h 127.0.0.1 -p 5432
  else
    port_open 5432
  fi
}

redis_ready() {
  if command -v redis-cli >/dev/null; then
    [ "$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" = PONG ]
  else
    port_open 6379
  fi
}

wait_for() { # name check-function
  for _ in $(seq 1 60); do
    if "$2"; then return 0; fi
    sleep 0.5
  done
  echo "services.sh: $1 did not start; see its log" >&2
  return 1
}

if ! pg_ready; then
  installed_pg=
  if ! command -v pg_ctlcluster >/dev/null || [ -z "$(ls /etc/postgresql 2>/dev/null)" ]; then
    echo "services.sh: installing PostgreSQL"
    apt_install postgresql
    installed_pg=1
  fi
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  echo "services.sh: starting PostgreSQL $version"
  as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  wait_for PostgreSQL pg_ready
  if [ -n "$installed_pg" ]; then
    # A fresh Debian cluster wants a password over TCP; the tests and the local run use this one.
    as_root su postgres -c "psql -q -c \"ALTER USER postgres PASSWORD 'postgres'\""
  fi
fi

if ! redis_ready; then
  if ! command -v redis-server >/dev/null; then
    echo "services.sh: installing Redis"
    apt_install redis-server
  fi
  if ! redis_ready; then
    echo "services.sh: starting Redis"
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
      --dir /tmp --logfile /tmp/campaign-sync-redis.log
    wait_for Redis redis_ready
  fi
fi

# The queue's tests start redis-server processes of their own on other ports, and make a
# self-signed certificate with openssl for the TLS test.
command -v redis-server >/dev/null || apt_install redis-server
command -v openssl >/dev/null || apt_install openssl
# The chaos command runs initdb and postgres of its own (Debian keeps them here).
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || apt_install postgresql
# A sandbox test drives it with Slack's own Python client.
if command -v python3 >/dev/null && ! python3 -c 'import slack_sdk' 2>/dev/null; then
  python3 -m pip install -q slack_sdk || { command -v pip3 >/dev/null || apt_install python3-pip; python3 -m pip install -q --break-system-packages slack_sdk; }
fi
command -v python3 >/dev/null || { apt_install python3 python3-pip; python3 -m pip install -q --break-system-packages slack_sdk; }
# A test runs schemathesis (PyPI) with every check against the internal API's OpenAPI document.
if ! python3 -c 'import schemathesis' 2>/dev/null; then
  python3 -m pip install -q schemathesis 2>/dev/null || python3 -m pip install -q --break-system-packages schemathesis
fi
# The metrics test checks /metrics with promtool (Debian's prometheus package brings it).
command -v promtool >/dev/null || apt_install --no-install-recommends prometheus
# The dashboard's browser test drives Debian's Chromium with npm's playwright-core.
command -v chromium >/dev/null || apt_install chromium chromium-driver
command -v npm >/dev/null || apt_install nodejs npm
browser_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/../tests/browser" && pwd)"
if [ ! -d "$browser_dir/node_modules/playwright-core" ]; then
  (cd "$browser_dir" && npm ci --no-audit --no-fund --loglevel=error)
fi
echo "services.sh: PostgreSQL and Redis are answering"
