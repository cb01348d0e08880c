#!/usr/bin/env bash
# GPU check, for a machine with an NVIDIA GPU (run from the repository root):
#   1. builds what it needs (or reuses a build/ carried from a CPU machine: its binaries link the
#      CUDA runtime statically; non-system shared libraries sit in build/lib),
#   2. runs the `gpu` tests (CUDA kernels byte-exact against the CPU reference; the gpu storage
#      tier, with CUDA IPC between two processes; StorePaged/LoadPaged on device memory and the
#      gpu tier's CUDA IPC export against a real kvaultd),
#   3. runs `kvault-bench codec --device cuda` (gather+encode and decode+scatter vs D2D copy),
#   4. runs `kvault-bench paged --memory cuda` (StorePaged/LoadPaged on device memory against a
#      local kvaultd, beside each stage alone and a pinned host-to-device copy),
#   5. prints a summary. Results also go to $OUT (or out/) as JSON and logs. Budget: ~4 minutes.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-out}"
mkdir -p "$out"
export LD_LIBRARY_PATH="$PWD/build/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
# The paged and gpu-export tests start build/bin/kvaultd (also from a carried build).
export KVAULT_BIN_DIR="$PWD/build/bin"

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true

# A build/ configured for this checkout is brought up to date; one carried from another machine
# (its CMake cache names another source path) is used as it is.
need_build=1
if [[ -f build/CMakeCache.txt ]] && grep -qx "CMAKE_HOME_DIRECTORY:INTERNAL=$PWD" build/CMakeCache.txt; then
  need_build=1
elif [[ -x build/bin/kvault-bench && -x build/bin/kvaultd ]] && compgen -G "build/tests/cuda_*_test" >/dev/null &&
     [[ -x build/tests/gpu_ipc_reader ]] &&
     build/tests/gpu_tier_test --gtest_list_tests >/dev/null 2>&1 &&
     build/bin/kvault --help >/dev/null 2>&1; then
  need_build=0
  echo "gpu-check: using the carried build/ as it is"
fi
if ((need_build)); then
  echo "gpu-check: building (CUDA sm_80/sm_90)"
  nvcc="${CUDACXX:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}"
  cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CUDA_COMPILER="$nvcc" \
    -DCMAKE_CUDA_ARCHITECTURES="80;90" >"$out/configure.log" 2>&1 || { tail -20 "$out/configure.log"; exit 1; }
  cmake --build build --parallel "$(nproc)" >"$out/build.log" 2>&1 \
    || { tail -40 "$out/build.log"; exit 1; }
fi

status=0
for t in build/tests/cuda_*_test build/tests/gpu_*_test; do
  if [[ ! -x $t ]]; then echo "gpu-check: $t is missing"; status=1; continue; fi
  echo "== $t" | tee -a "$out/gpu-tests.log"
  # A hang must not eat the device lease: each test binary gets at most 100 s.
  timeout 100 "$t" --gtest_brief=1 2>&1 | tee -a "$out/gpu-tests.log" | tail -15
  [[ ${PIPESTATUS[0]} -eq 0 ]] || status=1
done

echo "== kvault-bench codec --device cuda"
timeout 240 build/bin/kvault-bench codec --device cuda --tokens 4096 --accuracy-layers 4 --reps 5 \
  --json "$out/codec-cuda.json" 2>&1 | tee "$out/codec-cuda.log" | tail -40
[[ ${PIPESTATUS[0]} -eq 0 ]] || status=1

echo "== kvault-bench paged --memory cuda"
# StorePaged / LoadPaged on device memory against a local kvaultd, beside each stage alone and a
# page-locked host-to-device copy (the pipelining and 1.4x targets of docs/client.md).
timeout 240 build/bin/kvault-bench paged --memory cuda --codecs raw,fp8,int4 \
  --json "$out/paged-cuda.json" 2>&1 | tee "$out/paged-cuda.log" | tail -20
[[ ${PIPESTATUS[0]} -eq 0 ]] || status=1

echo "== summary: $([[ $status -eq 0 ]] && echo PASS || echo FAIL)"
exit $status
