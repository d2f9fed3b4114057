#!/usr/bin/env bash
# Test suite: needs Redis on 127.0.0.1:6379 (started here if none answers) and ../shared/datasets.
source "$(dirname "$0")/env.sh"
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
  for _ in $(seq 50); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break; sleep 0.1; done
fi
exec python -m pytest "$@"
