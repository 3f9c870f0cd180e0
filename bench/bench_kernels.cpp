// Rates use wall-clock time (UseRealTime), so multi-threaded runs are not flattered; on a shared
// VM check the load average first.
//
// Kernel micro-benchmarks at the shapes of /work/shared/bench-configs/{tiny,small}.json, for
// N = 2048 token rows (e.g. 8 sequences × 256). Rates are in FLOP/s (matmul, attention) or
// bytes/s (row-wise ops), so "G/s" in the output reads as GFLOP/s or GB/s.
//
//   OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 ./bench_kernels --benchmark_filter=Matmul
#include <benchmark/benchmark.h>
#include <cblas.h>

#include <cmath>
#include <vector>

#include "core/rng.h"
#include "kernels/bf16.h"
#include "kernels/fp8.h"
#include "kernels/ops.h"

namespace seekr {
namespace {

constexpr int kRows = 2048;

std::vector<float> randn(size_t n, uint64_t seed, double stdev = 1.0) {
  Rng rng(seed);
  std::vector<float> v(n);
  for (auto& x : v) x = static_cast<float>(rng.normal() * stdev);
  return v;
}

void set_flops(benchmark::State& st, double flops_per_iter) {
  st.counters["FLOP/s"] =
      benchmark::Counter(flops_per_iter, benchmark::Counter::kIsIterationInvariantRate);
}

// Args: rows, in, out. Forward y = x·wᵀ.
void BM_MatmulXwt(benchmark::State& st) {
  const int N = st.range(0), in = st.range(1), out = st.range(2);
  const auto x = randn(size_t(N) * in, 1), w = randn(size_t(out) * in, 2);
  std::vector<float> y(size_t(N) * out);
  for (auto _ : st) {
    matmul_xwt(x.data(), w.data(), y.data(), N, in, out);
    benchmark::DoNotOptimize(y.data());
  }
  set_flops(st, 2.0 * N * in * out);
}

// Backward of the same layer: dx = dy·w and dw += dyᵀ·x (two products).
void BM_MatmulBackward(benchmark::State& st) {
  const int N = st.range(0), in = st.range(1), out = st.range(2);
  const auto x = randn(size_t(N) * in, 1), w = randn(size_t(out) * in, 2);
  const auto dy = randn(size_t(N) * out, 3);
  std::vector<float> dx(size_t(N) * in), dw(size_t(out) * in);
  for (auto _ : st) {
    matmul_dy_w(dy.data(), w.data(), dx.data(), N, in, out);
    matmul_dyt_x(dy.data(), x.data(), dw.data(), N, in, out);
    benchmark::DoNotOptimize(dx.data());
    benchmark::DoNotOptimize(dw.data());
  }
  set_flops(st, 4.0 * N * in * out);
}

// {in, out} of every projection (MLA without/with q LoRA, dense MLP, one routed expert over the
// ~N·k/E rows it receives, LM head).
void MatmulShapes(benchmark::internal::Benchmark* b) {
  const int tiny[][3] = {
      {kRows, 256, 384},           // q (no q LoRA): hidden → H·(nope+rope)
      {kRows, 256, 80},            // kv_a: hidden → kv_lora + rope
      {kRows, 64, 512},            // kv_b: kv_lora → H·(nope+v)
      {kRows, 256, 256},           // o: H·v → hidden
      {kRows, 256, 768},           // dense gate / up
      {kRows, 768, 256},           // dense down
      {kRows * 4 / 16, 256, 128},  // one routed expert, gate/up
      {kRows, 256, 4096},          // LM head
  };
  const int small[][3] = {
      {kRows, 512, 192},  {kRows, 192, 768},          {kRows, 512, 160},
      {kRows, 128, 1024}, {kRows, 512, 512},          {kRows, 512, 1536},
      {kRows, 1536, 512}, {kRows * 4 / 32, 512, 256}, {kRows, 512, 16384},
  };
  for (const auto& s : tiny) b->Args({s[0], s[1], s[2]});
  for (const auto& s : small) b->Args({s[0], s[1], s[2]});
  b->ArgNames({"N", "in", "out"})->Unit(benchmark::kMicrosecond)->UseRealTime();
}
BENCHMARK(BM_MatmulXwt)->Apply(MatmulShapes);
BENCHMARK(BM_MatmulBackward)->Apply(MatmulShapes);

void BM_RmsNorm(benchmark::State& st) {
  const int N = kRows, d = st.range(0);
  const auto x = randn(size_t(N) * d, 1), w = randn(d, 2), dy = randn(size_t(N) * d, 3);
  std::vector<float> y(x.size()), rstd(N), dx(x.size()), dw(d);
  const bool backward = st.range(1);
  for (auto _ : st) {
    if (backward) {
      rmsnorm_backward(dy.data(), x.data(), w.data(), rstd.data(), dx.data(), dw.data(), N, d);
    } else {
      rmsnorm_forward(x.data(), w.data(), y.data(), rstd.data(), N, d, 1e-6f);
    }
    benchmark::ClobberMemory();
  }
  st.SetBytesProcessed(int64_t(st.iterations()) * N * d * sizeof(float) * (backward ? 4 : 2));
}
BENCHMARK(BM_RmsNorm)
    ->ArgsProduct({{256, 512}, {0, 1}})
    ->ArgNames({"d", "bwd"})
    ->Unit(benchmark::kMicrosecond);

void BM_Swiglu(benchmark::State& st) {
  const int64_t n = int64_t(kRows) * st.range(0);
  const auto g = randn(n, 1), u = randn(n, 2), da = randn(n, 3);
  std::vector<float> a(n), dg(n), du(n);
  const bool backward = st.range(1);
  for (auto _ : st) {
    if (backward) {
      swiglu_backward(da.data(), g.data(), u.data(), dg.data(), du.data(), n);
    } else {
      swiglu_forward(g.data(), u.data(), a.data(), n);
    }
    benchmark::ClobberMemory();
  }
  st.SetBytesProcessed(int64_t(st.iterations()) * n * sizeof(float) * (backward ? 5 : 3));
}
BENCHMARK(BM_Swiglu)
    ->ArgsProduct({{768, 1536}, {0, 1}})
    ->ArgNames({"I", "bwd"})
    ->Unit(benchmark::kMicrosecond);

// Args: T, dqk, dv (H = 8, B = kRows / T). FLOPs counted for the causal half: QKᵀ and PV.
void BM_Attention(benchmark::State& st) {
  const int T = st.range(0), dqk = st.range(1), dv = st.range(2), H = 8, B = kRows / T;
  const bool backward = st.range(3);
  AttentionShape s{B, T, H, dqk, dv, H * dqk, H * dqk, H * dv, 1.0f / std::sqrt(float(dqk))};
  const auto q = randn(size_t(B) * T * s.q_stride, 1), k = randn(size_t(B) * T * s.k_stride, 2);
  const auto v = randn(size_t(B) * T * s.v_stride, 3), dout = randn(size_t(B) * T * H * dv, 4);
  std::vector<float> probs(size_t(B) * H * T * T), out(size_t(B) * T * H * dv);
  std::vector<float> dq(q.size()), dk(k.size()), dvv(v.size());
  attention_forward(s, q.data(), k.data(), v.data(), probs.data(), out.data());
  for (auto _ : st) {
    if (backward) {
      attention_backward(s, q.data(), k.data(), v.data(), probs.data(), dout.data(), dq.data(),
                         dk.data(), dvv.data());
    } else {
      attention_forward(s, q.data(), k.data(), v.data(), probs.data(), out.data());
    }
    benchmark::ClobberMemory();
  }
  const double causal_pairs = double(B) * H * T * (T + 1) / 2.0;
  set_flops(st, causal_pairs * 2.0 * (dqk + dv) * (backward ? 2.0 : 1.0));
}
BENCHMARK(BM_Attention)
    ->ArgsProduct({{256}, {48}, {32}, {0, 1}})
    ->ArgsProduct({{256}, {96}, {64}, {0, 1}})
    ->ArgNames({"T", "dqk", "dv", "bwd"})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

void BM_CrossEntropy(benchmark::State& st) {
  const int N = kRows, V = st.range(0);
  const auto logits = randn(size_t(N) * V, 1, 2.0);
  std::vector<int32_t> t(N);
  for (int n = 0; n < N; ++n) t[n] = (n * 7919) % V;
  std::vector<float> d(logits.size());
  for (auto _ : st) {
    benchmark::DoNotOptimize(
        cross_entropy_forward_backward(logits.data(), t.data(), d.data(), N, V, 1.0f / N));
  }
  st.SetBytesProcessed(int64_t(st.iterations()) * N * V * sizeof(float) * 2);
}
BENCHMARK(BM_CrossEntropy)
    ->Arg(4096)
    ->Arg(16384)
    ->ArgNames({"V"})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// ---- FP8 and BF16 (DeepSeek-V3 mixed precision) -------------------------------------------
// GEMM shapes (M, N, K) = (rows, out, in): the tiny config's dense MLP up and down projections
// at kRows rows, the same weights at batch-1 decode, and a decode against a 4096×4096 weight that
// no cache holds (where fewer bytes per weight pay).
constexpr int kLowPrecisionShapes[][3] = {{kRows, 768, 256}, {kRows, 256, 768}, {1, 768, 256},
                                          {1, 256, 768},     {16, 768, 256},    {1, 4096, 4096}};
void Fp8GemmShapes(benchmark::internal::Benchmark* b) {
  for (const auto& s : kLowPrecisionShapes) b->Args({s[0], s[1], s[2]});
  b->ArgNames({"M", "N", "K"})->Unit(benchmark::kMicrosecond)->UseRealTime();
}
// The same shapes, each once per implementation (the last argument, named `impl`).
void GemmShapesTwoImpls(benchmark::internal::Benchmark* b, const char* impl) {
  for (int i = 0; i < 2; ++i)
    for (const auto& s : kLowPrecisionShapes) b->Args({s[0], s[1], s[2], i});
  b->ArgNames({"M", "N", "K", impl})->Unit(benchmark::kMicrosecond)->UseRealTime();
}

struct Fp8Operands {
  std::vector<uint8_t> a, b;  // [M, K] activations (1×128), [N, K] weights (128×128)
  std::vector<float> a_s, b_s;
};
Fp8Operands fp8_operands(int M, int N, int K) {
  Fp8Operands o{std::vector<uint8_t>(size_t(M) * K), std::vector<uint8_t>(size_t(N) * K), {}, {}};
  const auto sa = fp8_scale_shape(Fp8Tiling::k1x128, M, K);
  const auto sb = fp8_scale_shape(Fp8Tiling::k128x128, N, K);
  o.a_s.resize(size_t(sa.rows) * sa.cols);
  o.b_s.resize(size_t(sb.rows) * sb.cols);
  fp8_quantize(randn(o.a.size(), 1).data(), o.a.data(), o.a_s.data(), M, K, Fp8Tiling::k1x128);
  fp8_quantize(randn(o.b.size(), 2, 0.02).data(), o.b.data(), o.b_s.data(), N, K,
               Fp8Tiling::k128x128);
  return o;
}

// Args: M, N, K, ref (1 = the scalar reference).
void BM_Fp8Gemm(benchmark::State& st) {
  const int M = st.range(0), N = st.range(1), K = st.range(2);
  const Fp8Operands o = fp8_operands(M, N, K);
  std::vector<float> c(size_t(M) * N);
  auto* gemm_fn = st.range(3) ? ref::fp8_gemm : fp8_gemm;
  for (auto _ : st) {
    gemm_fn(o.a.data(), o.a_s.data(), o.b.data(), o.b_s.data(), Fp8Tiling::k128x128, c.data(), M, N,
            K, 0.0f);
    benchmark::DoNotOptimize(c.data());
  }
  set_flops(st, 2.0 * M * N * K);
}
BENCHMARK(BM_Fp8Gemm)->Apply([](benchmark::internal::Benchmark* b) {
  GemmShapesTwoImpls(b, "ref");
});

// The alternative that fp8_gemm's fast path was measured against (and beat): every 128-long K
// block of A and B decoded to f32 panels, one cblas_sgemm per block into a scratch P[M, N], then
// C += P·sa·sb.
void BM_Fp8GemmSgemmPerBlock(benchmark::State& st) {
  const int M = st.range(0), N = st.range(1), K = st.range(2), KB = (K + 127) / 128;
  const Fp8Operands o = fp8_operands(M, N, K);
  std::vector<float> c(size_t(M) * N), p(c.size()), pa(size_t(M) * 128), pb(size_t(N) * 128);
  for (auto _ : st) {
    std::fill(c.begin(), c.end(), 0.0f);
    for (int kb = 0; kb < KB; ++kb) {
      const int len = std::min(128, K - kb * 128);
      for (int m = 0; m < M; ++m)
        decode_e4m3(o.a.data() + size_t(m) * K + kb * 128, pa.data() + size_t(m) * len, len);
      for (int n = 0; n < N; ++n)
        decode_e4m3(o.b.data() + size_t(n) * K + kb * 128, pb.data() + size_t(n) * len, len);
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, len, 1.0f, pa.data(), len,
                  pb.data(), len, 0.0f, p.data(), N);
      for (int m = 0; m < M; ++m) {
        const float sa = o.a_s[size_t(m) * KB + kb];
        for (int n = 0; n < N; ++n)
          c[size_t(m) * N + n] += p[size_t(m) * N + n] * sa * o.b_s[size_t(n / 128) * KB + kb];
      }
    }
    benchmark::DoNotOptimize(c.data());
  }
  set_flops(st, 2.0 * M * N * K);
}
BENCHMARK(BM_Fp8GemmSgemmPerBlock)->Apply(Fp8GemmShapes);

// FP8 training emulated: fake-quantise the activations (1×128) every step, then sgemm against
// weights fake-quantised once. The rate counts the GEMM's FLOPs.
void BM_Fp8FakeQuantSgemm(benchmark::State& st) {
  const int M = st.range(0), N = st.range(1), K = st.range(2);
  const auto x = randn(size_t(M) * K, 1);
  auto w = randn(size_t(N) * K, 2, 0.02);
  fp8_fake_quant(w.data(), N, K, Fp8Tiling::k128x128);
  std::vector<float> xq(x.size()), y(size_t(M) * N);
  for (auto _ : st) {
    xq = x;
    fp8_fake_quant(xq.data(), M, K, Fp8Tiling::k1x128);
    matmul_xwt(xq.data(), w.data(), y.data(), M, K, N);
    benchmark::DoNotOptimize(y.data());
  }
  set_flops(st, 2.0 * M * N * K);
}
BENCHMARK(BM_Fp8FakeQuantSgemm)->Apply(Fp8GemmShapes);

// Args: rows, cols, tiling (0 = 1×128, 1 = 128×1, 2 = 128×128), fake (1 = fp8_fake_quant in
// place). Bytes/s of f32 input.
void BM_Fp8Quantize(benchmark::State& st) {
  const int rows = st.range(0), cols = st.range(1);
  const auto tiling = static_cast<Fp8Tiling>(st.range(2));
  const auto x = randn(size_t(rows) * cols, 1);
  const auto ss = fp8_scale_shape(tiling, rows, cols);
  std::vector<uint8_t> q(x.size());
  std::vector<float> s(size_t(ss.rows) * ss.cols), y(x.size());
  for (auto _ : st) {
    if (st.range(3)) {
      st.PauseTiming();
      y = x;
      st.ResumeTiming();
      fp8_fake_quant(y.data(), rows, cols, tiling);
    } else {
      fp8_quantize(x.data(), q.data(), s.data(), rows, cols, tiling);
    }
    benchmark::ClobberMemory();
  }
  st.SetBytesProcessed(int64_t(st.iterations()) * rows * cols * sizeof(float));
}
BENCHMARK(BM_Fp8Quantize)
    ->ArgsProduct({{kRows}, {768}, {0, 1, 2}, {0, 1}})
    ->ArgNames({"rows", "cols", "tiling", "fake"})
    ->Unit(benchmark::kMicrosecond);

// Args: M, N, K, impl (0 = bf16_matmul_xwt on pre-packed weights, 1 = matmul_xwt in f32).
void BM_Bf16Gemm(benchmark::State& st) {
  const int M = st.range(0), N = st.range(1), K = st.range(2);
  const auto x = randn(size_t(M) * K, 1), w = randn(size_t(N) * K, 2);
  const Bf16Weights wp = bf16_pack_weights(w.data(), N, K);
  std::vector<float> y(size_t(M) * N);
  for (auto _ : st) {
    if (st.range(3)) {
      matmul_xwt(x.data(), w.data(), y.data(), M, K, N);
    } else {
      bf16_matmul_xwt(x.data(), wp, y.data(), M);
    }
    benchmark::DoNotOptimize(y.data());
  }
  set_flops(st, 2.0 * M * N * K);
}
BENCHMARK(BM_Bf16Gemm)->Apply([](benchmark::internal::Benchmark* b) {
  GemmShapesTwoImpls(b, "sgemm");
});

// The fixed price of one OpenMP fork/join (an empty parallel loop): on a loaded 2-core VM a
// thread that is not scheduled makes the other wait at the barrier, so this bounds how small a
// kernel can be before parallelising it loses.
void BM_OmpForkJoin(benchmark::State& st) {
  std::vector<float> sink(64);
  for (auto _ : st) {
#pragma omp parallel for schedule(static)
    for (int i = 0; i < 64; ++i) sink[i] += 1.0f;
    benchmark::ClobberMemory();
  }
}
BENCHMARK(BM_OmpForkJoin)->Unit(benchmark::kMicrosecond)->UseRealTime();

}  // namespace
}  // namespace seekr

BENCHMARK_MAIN();
