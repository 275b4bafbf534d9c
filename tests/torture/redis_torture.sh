#!/usr/bin/env bash
# The torture test against a real redis-server 7.0: starts a throwaway server
# (no persistence, noeviction) on a free 127.0.0.1 port in a temporary
# directory, runs the driver with a redis:// store, and stops the server by
# PID. Expiry is client-judged (a contender takes a silent holder's record
# over after observing it unchanged for a TTL; waiters hear each renewal, so
# that is about one TTL after the holder's last renewal). CMake runs it with
# a 300 ms TTL: many tenures, and pauses that outlast the longest writers.
# Usage: redis_torture.sh TORTURE_BINARY LEASEHOLD_BINARY [driver options...]
set -euo pipefail
torture=$1 leasehold=$2
shift 2
server=/usr/bin/redis-server
[[ -x $server ]] || { echo "redis_torture: no $server (apt-get install redis-server)" >&2; exit 1; }
free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
dir=$(mktemp -d "${TMPDIR:-/tmp}/leasehold-redis-torture-XXXXXX")
pid=""
cleanup() {
  if [[ -n $pid ]]; then
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  rm -rf "$dir"
}
trap cleanup EXIT
port=$(free_port)
"$server" --port "$port" --bind 127.0.0.1 --dir "$dir" --save '' --appendonly no \
  --maxmemory-policy noeviction --daemonize no >"$dir/redis.log" 2>&1 &
pid=$!
for _ in $(seq 100); do
  kill -0 "$pid" 2>/dev/null || break
  [[ $(redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null) == PONG ]] && break
  sleep 0.05
done
[[ $(redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null) == PONG ]] || {
  echo "redis_torture: redis-server did not start:" >&2
  tail "$dir/redis.log" >&2
  exit 1
}
"$torture" drive --leasehold "$leasehold" --store "redis://127.0.0.1:$port" "$@"
