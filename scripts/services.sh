#!/usr/bin/env bash
# Start the local services the test suite talks to, if they are not already up.
# Only services this script starts are touched; nothing running is restarted.
set -u

pg_up() { pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; }
if ! pg_up; then
  if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
    echo "services: starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
    for _ in $(seq 1 30); do pg_up && break; sleep 1; done
  fi
fi
pg_up && echo "services: PostgreSQL is up" || echo "services: PostgreSQL is NOT available"

redis_up() { redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; }
if command -v redis-server >/dev/null 2>&1 && ! redis_up; then
  echo "services: starting Redis"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no || true
  for _ in $(seq 1 20); do redis_up && break; sleep 0.5; done
fi
exit 0
