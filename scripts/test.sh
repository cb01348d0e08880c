#!/usr/bin/env bash
# Install, build, and run every test (unit, integration, fuzz; gpu tests skip without a GPU).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cd build
ctest --output-on-failure --parallel "$(nproc)" --timeout 600
