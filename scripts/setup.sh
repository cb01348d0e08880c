#!/usr/bin/env bash
# Installs kvault's build dependencies (Debian 12, as root; idempotent: packages already present
# are skipped) and builds everything into build/ (binaries in build/bin/).
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
  build-essential cmake ninja-build pkg-config git
  libssl-dev libxxhash-dev libgtest-dev libgmock-dev
  clang-14 libclang-rt-14-dev
  librocksdb-dev fio
  libucx-dev ucx-utils libboost-dev libyaml-cpp-dev prometheus-cpp-dev
  redis-server libhiredis-dev prometheus
  python3-dev pybind11-dev python3-pybind11 python3-numpy python3-pytest python3-cbor2
  gnuplot-nox
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

cmake_args=(-G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo)
nvcc="${CUDACXX:-}"
[[ -z "$nvcc" && -x /usr/local/cuda/bin/nvcc ]] && nvcc=/usr/local/cuda/bin/nvcc
[[ -z "$nvcc" ]] && nvcc="$(command -v nvcc || true)"
if [[ -n "$nvcc" ]]; then
  cmake_args+=(-DCMAKE_CUDA_COMPILER="$nvcc")
fi
cmake -S . -B build "${cmake_args[@]}" >/dev/null
cmake --build build --parallel "$(nproc)"
