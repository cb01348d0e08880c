#!/usr/bin/env bash
# The main job on a single machine: install, build, then run the codec benchmark on the realistic
# KV generator (Llama-3-8B shape) and print its table. Extra arguments go to kvault-bench codec.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
mkdir -p out
json=(--json out/codec-bench.json)
for a in "$@"; do [[ "$a" == --json* ]] && json=(); done
exec build/bin/kvault-bench codec "${json[@]}" "$@"
