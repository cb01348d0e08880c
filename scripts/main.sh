#!/usr/bin/env bash
# The main job on a single machine: install, build, start a single-node kvaultd (host RAM + RocksDB
# under out/kvault-data, embedded defaults, free loopback ports), run the end-to-end demo through
# the client library against it (`kvault demo`: a multi-turn chat workload, verified), stop the
# daemon (also when something fails), then compare the codecs on a sample of the Mooncake
# synthetic trace (`kvault-bench compare`, which starts its own daemons). Extra arguments go to
# `kvault demo` (see its --help).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
mkdir -p out

# A fresh data directory: the demo's first turns then miss by construction (a kept one would
# serve the previous run's blocks from RocksDB, which is the point of a store, not of a demo).
data_dir=out/kvault-data
rm -rf "$data_dir"
ready_file=out/kvaultd.ready
log_file=out/kvaultd.log
: >"$ready_file"

daemon_pid=""
stop_daemon() {
  [[ -n "$daemon_pid" ]] || return 0
  if kill -0 "$daemon_pid" 2>/dev/null; then
    kill -TERM "$daemon_pid" 2>/dev/null || true
    local rc=0
    wait "$daemon_pid" || rc=$?
    if ((rc != 0)); then
      echo "main: kvaultd exited with $rc on SIGTERM (log: $log_file)" >&2
    else
      echo "kvaultd stopped"
    fi
  fi
  daemon_pid=""
}
trap stop_daemon EXIT
trap 'exit 130' INT TERM

build/bin/kvaultd --data_dir "$data_dir" --control.port 0 --http.port 0 \
  >"$ready_file" 2>"$log_file" &
daemon_pid=$!

# Wait (30 s at most) for the one ready line; a daemon that dies first is reported with its log.
ready=""
for _ in $(seq 300); do
  ready="$(head -n 1 "$ready_file")"
  [[ "$ready" == "kvaultd ready "* ]] && break
  if ! kill -0 "$daemon_pid" 2>/dev/null; then
    rc=0
    wait "$daemon_pid" || rc=$?
    daemon_pid=""
    echo "main: kvaultd exited with $rc before it was ready; its log ($log_file):" >&2
    tail -n 20 "$log_file" >&2
    exit 1
  fi
  sleep 0.1
done
if [[ "$ready" != "kvaultd ready "* ]]; then
  echo "main: kvaultd printed no ready line within 30 s (log: $log_file)" >&2
  exit 1
fi
echo "$ready"
server="$(sed -n 's/.* control=\([^ ]*\).*/\1/p' <<<"$ready")"
if [[ -z "$server" ]]; then
  echo "main: cannot find control=HOST:PORT in kvaultd's ready line" >&2
  exit 1
fi

json=(--json out/demo.json)
for a in "$@"; do [[ "$a" == --json* ]] && json=(); done
build/bin/kvault demo --server "$server" "${json[@]}" "$@"
stop_daemon

# What quantization buys: the same trace sample replayed once per codec against a fresh daemon
# with the same RAM, side by side with raw, and raw again with 3x the RAM (docs/bench_compare.md).
# About two minutes here.
echo
echo "== kvault-bench compare: codecs side by side on a sample of the Mooncake synthetic trace"
rm -rf out/compare-plots
build/bin/kvault-bench compare --trace bench/traces/synthetic_trace.jsonl \
  --json out/compare.json --plots out/compare-plots
echo "compare: table above; JSON in out/compare.json; plots (PNG) in out/compare-plots/"
