#!/bin/bash
# Stages the AVX-512 BF16 device check in .devcheck/ (git-ignored through .git/info/exclude):
# test and bench binaries built for any x86-64-v3 CPU (the vdpbf16ps kernel carries its own
# target attribute and is chosen at run time), the shared libraries they need beside glibc,
# the bench configs and avx512_bf16_check.sh. A session lent a device machine then runs
#   the device tool's run, carry [".devcheck"], command "bash .devcheck/avx512_bf16_check.sh"
# and reads $OUT/log.txt and the JSON files (bench/README.md, "AVX-512 BF16 check").
set -euo pipefail
cd "$(dirname "$0")/../.."
B=${BUILD:-build-dev}
cmake -S . -B "$B" -G Ninja -DCMAKE_BUILD_TYPE=Release -DSEEKR_NATIVE=OFF \
  -DCMAKE_CXX_FLAGS="-march=x86-64-v3" >/dev/null
ninja -C "$B" test_fp8 test_linear test_no_alloc bench_model bench_kernels
grep -qx "/.devcheck/" .git/info/exclude 2>/dev/null || echo "/.devcheck/" >>.git/info/exclude
rm -rf .devcheck && mkdir -p .devcheck/lib
for b in tests/test_fp8 tests/test_linear tests/test_no_alloc bench/bench_model bench/bench_kernels; do
  strip -o ".devcheck/$(basename $b)" "$B/$b"
done
ldd .devcheck/bench_model .devcheck/test_fp8 | awk '/=> \//{print $3}' | sort -u |
  grep -v -E '/(libc|libm|ld-linux)[.-]' | xargs -I{} cp -L {} .devcheck/lib/
cp ../shared/bench-configs/tiny.json ../shared/bench-configs/small.json .devcheck/
cp bench/device/avx512_bf16_check.sh .devcheck/
du -sh .devcheck
