#!/usr/bin/env bash
# The torture test against a real PostgreSQL 15: initializes a throwaway
# cluster in a temporary directory (as the `postgres` user when run as root:
# postgres refuses root), starts the postmaster on a free 127.0.0.1 port,
# runs the driver with a postgresql:// store, and stops the postmaster by PID.
# Expiry is client-judged (a contender takes a silent holder's row over after
# observing it unchanged for a TTL; waiters hear each renewal, so that is
# about one TTL after the holder's last renewal). CMake runs it with a
# 300 ms TTL: many tenures, and pauses that outlast the longest writers.
# Usage: postgresql_torture.sh TORTURE_BINARY LEASEHOLD_BINARY [driver options...]
set -euo pipefail
torture=$1 leasehold=$2
shift 2
bin=/usr/lib/postgresql/15/bin
[[ -x $bin/postgres && -x $bin/initdb ]] || {
  echo "postgresql_torture: no PostgreSQL 15 in $bin (apt-get install postgresql-15)" >&2
  exit 1
}
free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
dir=$(mktemp -d "${TMPDIR:-/tmp}/leasehold-pg-torture-XXXXXX")
pid=""
cleanup() {
  if [[ -n $pid ]]; then
    # Fast shutdown; SIGKILL if it has not exited within 10 s.
    kill -INT "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  rm -rf "$dir"
}
trap cleanup EXIT
as_server=()
if [[ $(id -u) == 0 ]]; then
  id postgres >/dev/null 2>&1 || {
    echo "postgresql_torture: running as root and there is no user postgres to run the server as" >&2
    exit 1
  }
  chown postgres: "$dir"
  as_server=(setpriv --reuid=postgres --regid=postgres --init-groups --)
fi
"${as_server[@]}" "$bin/initdb" -D "$dir/data" -A trust -U postgres --no-sync \
  >"$dir/initdb.log" 2>&1 || {
  echo "postgresql_torture: initdb failed:" >&2
  tail "$dir/initdb.log" >&2
  exit 1
}
port=$(free_port)
# setpriv execs the postmaster: $! is its PID. Its children (one per session)
# exit with it.
"${as_server[@]}" "$bin/postgres" -D "$dir/data" -p "$port" -k "$dir" \
  -c listen_addresses=127.0.0.1 -c fsync=off >"$dir/postgres.log" 2>&1 &
pid=$!
for _ in $(seq 150); do
  kill -0 "$pid" 2>/dev/null || break
  pg_isready -q -h 127.0.0.1 -p "$port" -t 1 && break
  sleep 0.1
done
pg_isready -q -h 127.0.0.1 -p "$port" -t 1 || {
  echo "postgresql_torture: PostgreSQL did not start:" >&2
  tail "$dir/postgres.log" >&2
  exit 1
}
"$torture" drive --leasehold "$leasehold" \
  --store "postgresql://postgres@127.0.0.1:$port/postgres" "$@"
