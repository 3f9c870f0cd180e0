#!/usr/bin/env bash
# Installs everything seekr needs on a fresh Debian 12 machine (as root) and builds it.
#   scripts/setup.sh [BUILD_DIR]     (default: build)
# Idempotent: already-installed packages and an existing build are reused.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}

# Build: compiler, CMake/CTest/Ninja, GoogleTest, Google Benchmark, OpenMP, OpenBLAS,
# PCRE2 (HF pre-tokenizer regexes), nlohmann-json, cpp-httplib.
# Run time: gnuplot (training plots). Tests only: python3-torch + numpy (the PyTorch twin,
# run as /usr/bin/python3), node + npm (HF tokenizers' reference ids).
packages=(g++ cmake ninja-build pkg-config libgtest-dev libgmock-dev libbenchmark-dev
          libopenblas-dev libpcre2-dev nlohmann-json3-dev libcpp-httplib-dev gnuplot-nox
          python3-torch python3-numpy nodejs npm)
missing=()
for p in "${packages[@]}"; do
  [[ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" == "install ok installed" ]] || missing+=("$p")
done
# Node and npm may come from elsewhere than Debian on some images; accept them if present.
if command -v node >/dev/null && command -v npm >/dev/null; then
  missing=("${missing[@]/nodejs}")
  missing=("${missing[@]/npm}")
fi
read -r -a missing <<<"${missing[*]}"
if [[ ${#missing[@]} -gt 0 ]]; then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# npm dev dependencies: DeepSeek-V3's tokenizer.json and HF tokenizers' Node binding (tests).
if [[ ! -d node_modules/tokenizers || package-lock.json -nt node_modules/.package-lock.json ]]; then
  npm ci --no-audit --no-fund --loglevel=error || echo "setup: npm ci failed; tokenizer reference tests will say so"
fi

cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" -j2
echo "setup: built $build/seekr"
