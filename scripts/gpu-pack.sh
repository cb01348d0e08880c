#!/usr/bin/env bash
# Packs what scripts/gpu-check.sh needs into one archive, for a GPU machine that cannot build
# kvault itself (no RocksDB, no UCX headers there): builds the CUDA targets in a CUDA build
# directory (default build-gpu, sm_80;90), copies the binaries and gpu tests with their
# non-system shared libraries (found with ldd) into a build/ tree, strips them and writes
# ARCHIVE (default .gpu-exp/build.tar.xz). On the GPU machine, from the repository root:
#   rm -rf build && tar xJf .gpu-exp/build.tar.xz && bash scripts/gpu-check.sh
# Usage: scripts/gpu-pack.sh [BUILD_DIR] [ARCHIVE]
set -euo pipefail
cd "$(dirname "$0")/.."
build="${1:-build-gpu}"
archive="${2:-.gpu-exp/build.tar.xz}"
nvcc="${CUDACXX:-/usr/local/cuda/bin/nvcc}"
[[ -x "$nvcc" ]] || { echo "gpu-pack: nvcc not found (set CUDACXX)" >&2; exit 1; }

if [[ ! -f "$build/CMakeCache.txt" ]]; then
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_CUDA_COMPILER="$nvcc" -DCMAKE_CUDA_ARCHITECTURES="80;90" >/dev/null
fi
targets=(kvault kvault-bench kvaultd gpu_ipc_reader)
for src in tests/gpu/*_test.cc; do targets+=("$(basename "$src" .cc)"); done
ninja -C "$build" "${targets[@]}"

stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/build/bin" "$stage/build/tests" "$stage/build/lib"
cp "$build"/bin/{kvault,kvault-bench,kvaultd} "$stage/build/bin/"
cp "$build"/tests/gpu_ipc_reader "$build"/tests/cuda_*_test "$build"/tests/gpu_*_test \
  "$stage/build/tests/"
strip --strip-all "$stage"/build/bin/* "$stage"/build/tests/*

# Shared libraries that are not glibc's own: the GPU machine has a different distribution.
for f in "$stage"/build/bin/* "$stage"/build/tests/*; do
  ldd "$f" | awk '$3 ~ /^\// {print $3}'
done | sort -u | while read -r lib; do
  case "$(basename "$lib")" in
    libc.so*|libm.so*|libpthread.so*|libdl.so*|librt.so*|ld-linux*|libgcc_s.so*|libstdc++.so*) ;;
    *) cp -L "$lib" "$stage/build/lib/" ;;
  esac
done
# UCX loads some transports as modules at run time, from lib/ucx beside libuct: cma is one
# (the InfiniBand modules would need libibverbs, which the GPU machine lacks).
mkdir -p "$stage/build/lib/ucx"
for m in libuct_cma.so libuct_cma.so.0; do
  cp -L "/usr/lib/x86_64-linux-gnu/ucx/$m" "$stage/build/lib/ucx/" 2>/dev/null || true
done

mkdir -p "$(dirname "$archive")"
tar -C "$stage" -cJf "$archive" build
echo "gpu-pack: wrote $archive ($(du -h "$archive" | cut -f1)); carry its folder to the GPU machine"
