#!/usr/bin/env bash
# Runs the whole test suite: the release build's tests (incl. the PyTorch twin comparison),
# then the unit tests once more under AddressSanitizer + UndefinedBehaviorSanitizer.
#   scripts/test.sh            (expects scripts/setup.sh to have run)
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

echo "== release build tests"
cmake --build build -j2
ctest --test-dir build --output-on-failure -j2 --timeout 900

echo "== sanitizer build (ASan + UBSan)"
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DSEEKR_SANITIZE=ON >/dev/null
cmake --build build-asan -j2
# The twin comparison is numerically identical under sanitizers and slow: skip it there.
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --test-dir build-asan --output-on-failure -j2 --timeout 900 -E 'reference|Reference'
