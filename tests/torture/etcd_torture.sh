#!/usr/bin/env bash
# The torture test against a real single-node etcd (fast elections, so a 1 s
# minimum lease TTL): starts etcd on free 127.0.0.1 ports in a temporary
# directory, runs the driver with an etcd:// store, stops etcd by PID.
# Usage: etcd_torture.sh TORTURE_BINARY LEASEHOLD_BINARY [driver options...]
set -euo pipefail
torture=$1 leasehold=$2
shift 2
command -v etcd >/dev/null || { echo "etcd_torture: no etcd binary (apt-get install etcd-server)" >&2; exit 1; }
free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
dir=$(mktemp -d "${TMPDIR:-/tmp}/leasehold-etcd-torture-XXXXXX")
pid=""
cleanup() {
  [[ -n $pid ]] && { kill -9 "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; }
  rm -rf "$dir"
}
trap cleanup EXIT
c=$(free_port); p=$(free_port)
etcd --name t --data-dir "$dir/data" --listen-client-urls "http://127.0.0.1:$c" \
  --advertise-client-urls "http://127.0.0.1:$c" --listen-peer-urls "http://127.0.0.1:$p" \
  --initial-advertise-peer-urls "http://127.0.0.1:$p" --initial-cluster "t=http://127.0.0.1:$p" \
  --heartbeat-interval 10 --election-timeout 100 >"$dir/etcd.log" 2>&1 &
pid=$!
for _ in $(seq 100); do
  curl -fs "http://127.0.0.1:$c/health" 2>/dev/null | grep -q '"health":"true"' && break
  sleep 0.1
done
curl -fs "http://127.0.0.1:$c/health" | grep -q '"health":"true"' || {
  echo "etcd_torture: etcd did not start:" >&2; tail "$dir/etcd.log" >&2; exit 1; }
"$torture" drive --leasehold "$leasehold" --store "etcd://127.0.0.1:$c/torture" "$@"
