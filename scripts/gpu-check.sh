#!/usr/bin/env bash
# GPU check, for a machine with an NVIDIA GPU (run from the repository root):
#   1. builds what it needs (or reuses a build/ carried from a CPU machine: its binaries link the
#      CUDA runtime statically; non-system shared libraries sit in build/lib),
#   2. runs the `gpu` tests (CUDA kernels byte-exact against the CPU reference; the gpu storage
#      tier, with CUDA IPC between two processes; StorePaged/LoadPaged on device memory and the
#      gpu tier's CUDA IPC export against a real kvaultd),
#   3. runs the AVX-512 cases of the CPU codec tests: GPU hosts usually have AVX-512, which
#      DetectCpuIsa then picks for every CPU encode and decode, while CPU-only CI machines may
#      lack it and skip those cases (the summary says whether they ran or were skipped),
#   4. runs `kvault-bench codec --device cuda` (gather+encode and decode+scatter vs D2D copy),
#   5. runs `kvault-bench paged --memory cuda` (StorePaged/LoadPaged on device memory against a
#      local kvaultd, beside each stage alone and a pinned host-to-device copy),
#   6. prints a summary. Results also go to $OUT (or out/) as JSON and logs. Budget: ~4 minutes.
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

echo "== CPU codec tests, AVX-512 cases"
# DetectCpuIsa needs AVX-512 F, BW, VL and DQ (cpu_codec.h); the tests skip visibly without them.
avx512_cpu=yes
for flag in avx512f avx512bw avx512vl avx512dq; do
  grep -qw "$flag" /proc/cpuinfo || avx512_cpu=no
done
avx512_passed=0 avx512_failed=0 avx512_skipped=0
# N from GoogleTest's closing line "[  PASSED  ] N tests.", "[  FAILED  ] N tests, listed below"
# or "[  SKIPPED ] N tests, listed below" in log $2 (passed excludes skipped); 0 when absent.
count() {
  local n
  n=$(sed -n "s/^\[  $1 *\] \([0-9]*\) tests\{0,1\}[,.].*/\1/p" "$2" | tail -1)
  echo "${n:-0}"
}
for t in build/tests/cpu_codec_sweep_test build/tests/cpu_codec_errors_test; do
  if [[ ! -x $t ]]; then echo "gpu-check: $t is missing"; status=1; continue; fi
  log="$out/avx512-$(basename "$t").log"
  timeout 100 "$t" --gtest_filter='*avx512*' --gtest_brief=1 >"$log" 2>&1
  [[ $? -eq 0 ]] || status=1
  tail -4 "$log"
  avx512_passed=$((avx512_passed + $(count PASSED "$log")))
  avx512_failed=$((avx512_failed + $(count FAILED "$log")))
  avx512_skipped=$((avx512_skipped + $(count SKIPPED "$log")))
done
avx512_summary="$avx512_passed passed, $avx512_failed failed, $avx512_skipped skipped"
if ((avx512_passed + avx512_failed == 0)); then
  avx512_summary="NOT RUN ($avx512_summary)"
else
  avx512_summary="RAN ($avx512_summary)"
fi
avx512_summary+="; this CPU has AVX-512 (F, BW, VL, DQ): $avx512_cpu"
# On an AVX-512 CPU a skip would hide the path every CPU codec call takes here.
if [[ $avx512_cpu == yes ]] && ((avx512_skipped > 0 || avx512_passed == 0)); then status=1; fi
echo "gpu-check: AVX-512 CPU codec tests: $avx512_summary"

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

echo "== AVX-512 CPU codec tests: $avx512_summary"
echo "== summary: $([[ $status -eq 0 ]] && echo PASS || echo FAIL)"
exit $status
