#!/bin/bash
# Device check: the AVX-512 BF16 path on a CPU that has it. Writes $OUT/log.txt and $OUT/*.json.
D=$(cd "$(dirname "$0")" && pwd)
export LD_LIBRARY_PATH=$D/lib
exec > >(tee "$OUT/log.txt") 2>&1
echo "== cpu"; lscpu | grep -E "Model name|^CPU\(s\)|Thread|Core|Socket|MHz|L2|L3"
grep -o -w 'avx512[a-z_0-9]*\|amx[a-z_0-9]*\|avx_vnni' /proc/cpuinfo | sort | uniq -c
# Two CPUs on distinct cores.
CPUS=$(lscpu -p=CPU,CORE | grep -v '^#' | sort -t, -k2,2n -u | head -2 | cut -d, -f1 | paste -sd,)
echo "pinned to CPUs $CPUS"; uptime
T0=$(date +%s)
echo "== tests"
timeout 120 "$D/test_fp8" --gtest_filter='Bf16*' 2>&1 | tail -25
OMP_NUM_THREADS=2 timeout 60 taskset -c $CPUS "$D/test_linear" 2>&1 | tail -5
OMP_NUM_THREADS=2 timeout 60 taskset -c $CPUS "$D/test_no_alloc" 2>&1 | tail -4
echo "== kernel lab $(( $(date +%s) - T0 ))s"
for t in 1 2; do
  OMP_NUM_THREADS=$t OPENBLAS_NUM_THREADS=$t OMP_WAIT_POLICY=PASSIVE timeout 90 taskset -c $CPUS \
    "$D/bench_kernels" --benchmark_filter='Bf16Gemm' --benchmark_min_time=0.2 2>&1 | grep BM_
done
echo "== model training $(( $(date +%s) - T0 ))s"
run() {  # cfg threads label precision modes [env]
  local cfg=$1 t=$2 label=$3 prec=$4 modes=$5; shift 5
  env "$@" OMP_WAIT_POLICY=PASSIVE timeout 150 taskset -c $CPUS "$D/bench_model" --config "$D/$cfg.json" \
    --modes $modes --threads $t --precision $prec $EXTRA > "$OUT/$cfg-$t-$label.json"
  echo "$cfg t=$t $label: $(grep -o '"tok_per_s"[^,]*\|"mfu"[^,]*\|"last_loss"[^,]*\|"sgemm_gflops"[^,]*' "$OUT/$cfg-$t-$label.json" | paste -sd' ')"
}
for cfg in ${CONFIGS:-tiny small}; do
  EXTRA=""; [ $cfg = small ] && EXTRA="--steps 3 --warmup 1"
  for t in 1 2; do
    run $cfg $t fp32 fp32 peak,train
    run $cfg $t bf16kernel bf16 train SEEKR_BF16_GEMM=kernel
    run $cfg $t bf16sgemm bf16 train SEEKR_BF16_GEMM=sgemm
  done
  echo "  ($(( $(date +%s) - T0 ))s)"
done
echo "== done $(( $(date +%s) - T0 ))s"
