// BF16 GEMM (contract in bf16.h): the packed-weight format, the AVX2 and AVX-512 BF16 kernels
// behind one driver, and the scalar reference.
//
// Each kernel owns an MR×(NT·16) block of y and sums the whole of `in` in registers, in k order,
// so the AVX2 result is the reference's bit for bit (the products are exact in f32 and both add
// them one by one). The driver walks 48-row blocks of x against one weight tile at a time: the
// tile (in/2 · 64 bytes) stays in L1 while the block's rows, in L2, stream past it. Large
// products split their row blocks (or, when rows are few, their tiles) over the OpenMP threads.
//
// Both operands of the AVX-512 kernel and the packed weights share one layout, "interleaved
// pairs": rows in groups of G, and for each group the pairs (bf16(m[r][2p]), bf16(m[r][2p+1])),
// one 32-bit lane each, stored pair by pair: lane (r / G)·G·pairs + p·G + r % G. pack_pairs
// builds it from row-major or transposed floats with AVX2 rounding.
#include "kernels/bf16.h"

#include <omp.h>

#include <algorithm>

#include "core/check.h"
#include "core/dtype.h"
#include "kernels/simd.h"

#if defined(__x86_64__) && (defined(__clang__) || __GNUC__ >= 10)
#define SEEKR_HAVE_AVX512BF16 1
#include <immintrin.h>  // also without -mavx2: the kernel carries its own target attribute
#else
#define SEEKR_HAVE_AVX512BF16 0
#endif

namespace seekr {
namespace {

constexpr int kTile = 16;  // output rows per packed tile
constexpr int kRowBlock = 48;

int ceil_div(int a, int b) {
  return (a + b - 1) / b;
}

float round_bf16(float v) {
  return bf16_to_f32(f32_to_bf16(v));
}

// What a kernel reads: the converted activations and the packed weight tiles. The activations
// are interleaved in groups of `group` rows (the kernel's MR), so that a kernel's broadcasts for
// one k are adjacent: element k of row r is at x[(r / group) · group · len + k · group + r %
// group].
template <class X>
struct Operands {
  const X* x;
  int64_t len;  // elements per row (padded)
  int group;
  const uint32_t* w;  // packed tiles (pairs), tile_stride pairs apart
  int64_t tile_stride;
  int pairs;  // ceil(in / 2)
  float* y;   // [N, out]
  int out, tiles;
  bool accumulate;  // y += the sums (beta != 0), else y = the sums

  // Row r's element k is row(r)[k · group]; the next rows of its group follow it.
  const X* row(int r) const { return x + int64_t(r / group) * group * len + r % group; }
};

// Rows [m0, m1) against tiles [t0, t1).
template <class K>
void run_block(const Operands<typename K::X>& g, int m0, int m1, int t0, int t1) {
  const int full = m0 + (m1 - m0) / K::kMR * K::kMR;
  for (int t = t0; t < t1; t += K::kNT) {
    if (t + K::kNT <= t1) {
      for (int m = m0; m < full; m += K::kMR) K::template kernel<K::kMR, K::kNT>(g, m, t);
    } else {
      for (int tt = t; tt < t1; ++tt)
        for (int m = m0; m < full; m += K::kMR) K::template kernel<K::kMR, 1>(g, m, tt);
    }
  }
  for (int m = full; m < m1; ++m) {
    int t = t0;
    for (; t + K::kRowNT <= t1; t += K::kRowNT) K::template kernel<1, K::kRowNT>(g, m, t);
    for (; t < t1; ++t) K::template kernel<1, 1>(g, m, t);
  }
}

// Below this many flops one thread does the product: a fork/join on this VM's cores can cost
// tens of microseconds.
constexpr double kParallelMinFlops = 8e6;

template <class K>
void run_kernels(const Operands<typename K::X>& g, int N) {
  // Blocks start on group boundaries, so that a kernel's MR rows share one group.
  constexpr int kBlock = kRowBlock / K::kMR * K::kMR;
  const int blocks = ceil_div(N, kBlock);
  const double flops = 4.0 * N * g.out * g.pairs;
  const int threads =
      omp_in_parallel() || flops < kParallelMinFlops ? 1 : std::max(1, omp_get_max_threads());
  // With few row blocks the tiles are split too, in whole kernel widths, so every thread works.
  const int widths = ceil_div(g.tiles, K::kNT);
  const int chunks = blocks >= 4 * threads ? 1 : std::min(widths, ceil_div(4 * threads, blocks));
  const int items = blocks * chunks;
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
  for (int it = 0; it < items; ++it) {
    const int b = it / chunks, c = it % chunks;
    const int t0 = int(int64_t(widths) * c / chunks) * K::kNT;
    const int t1 = std::min(g.tiles, int(int64_t(widths) * (c + 1) / chunks) * K::kNT);
    run_block<K>(g, b * kBlock, std::min(N, (b + 1) * kBlock), t0, t1);
  }
}

template <class K>
Operands<typename K::X> operands(const std::vector<typename K::X>& x, int64_t len,
                                 const Bf16Weights& w, float* y, float beta) {
  const int pairs = ceil_div(w.in, 2);
  return {x.data(), len, K::kMR, w.data.data(),          int64_t(pairs) * kTile,
          pairs,    y,   w.out,  ceil_div(w.out, kTile), beta != 0.0f};
}

// The kernels write y = sum (beta = 0, whatever y held) or y += sum; other betas scale y first.
void prescale(float* y, int64_t n, float beta) {
  if (beta != 0.0f && beta != 1.0f) simd::scale(y, n, beta);
}

#if SEEKR_AVX2
// f32_to_bf16 on 8 lanes, returned widened back to f32.
inline __m256 round_bf16_8(__m256 x) {
  const __m256i u = _mm256_castps_si256(x), hi = _mm256_set1_epi32(int(0xffff0000u));
  const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
  const __m256i r =
      _mm256_and_si256(_mm256_add_epi32(_mm256_add_epi32(u, _mm256_set1_epi32(0x7fff)), lsb), hi);
  const __m256i quiet = _mm256_and_si256(_mm256_or_si256(u, _mm256_set1_epi32(0x400000)), hi);
  const __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(u, _mm256_set1_epi32(0x7fffffff)),
                                         _mm256_set1_epi32(0x7f800000));
  return _mm256_castsi256_ps(_mm256_blendv_epi8(r, quiet, nan));
}

// Rounds rows [0, rows) of x (row stride ld, `in` columns) to bf16 into one group of the
// interleaved layout: dst[k · group + i] = bf16(x[i][k]).
inline void interleave_rows(const float* x, int64_t ld, int rows, int in, int group, float* dst) {
  for (int i = 0; i < rows; ++i) {
    const float* xr = x + i * ld;
    int k = 0;
    alignas(32) float r[8];
    for (; k + 8 <= in; k += 8) {
      _mm256_store_ps(r, round_bf16_8(_mm256_loadu_ps(xr + k)));
      for (int j = 0; j < 8; ++j) dst[(k + j) * group + i] = r[j];
    }
    for (; k < in; ++k) dst[k * group + i] = round_bf16(xr[k]);
  }
}

// The AVX2 kernel: a pair lane widens to two floats (low half shifted up 16 bits, high half with
// its low 16 bits shifted out), each multiplied by a broadcast input. MR = 5 rows × 16 outputs
// take all 16 registers (10 accumulators, 4 weight vectors, 2 broadcasts) and give 20 FMAs per
// pair, enough to cover each accumulator's chain of two dependent FMAs; single rows take 4 tiles
// for the same reason.
struct Avx2 {
  using X = float;
  static constexpr int kMR = 5, kNT = 1, kRowNT = 4;

  template <int MR, int NT>
  static void kernel(const Operands<float>& g, int m, int t) {
    const float* x = g.row(m);
    const uint32_t* w = g.w + int64_t(t) * g.tile_stride;
    __m256 acc[MR][2 * NT];
#pragma GCC unroll 16
    for (auto& r : acc)
#pragma GCC unroll 16
      for (auto& v : r) v = _mm256_setzero_ps();
    for (int p = 0; p < g.pairs; ++p) {
      __m256 we[2 * NT], wo[2 * NT];
#pragma GCC unroll 16
      for (int v = 0; v < 2 * NT; ++v) {
        const __m256i pw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(
            w + (v / 2) * g.tile_stride + int64_t(p) * kTile + (v % 2) * (kTile / 2)));
        we[v] = _mm256_castsi256_ps(_mm256_slli_epi32(pw, 16));
        // Two shifts rather than an AND: a mask constant would need the one free register.
        wo[v] = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_srli_epi32(pw, 16), 16));
      }
#pragma GCC unroll 16
      for (int i = 0; i < MR; ++i) {
        const __m256 xe = _mm256_broadcast_ss(x + 2 * p * g.group + i);
        const __m256 xo = _mm256_broadcast_ss(x + (2 * p + 1) * g.group + i);
#pragma GCC unroll 16
        for (int v = 0; v < 2 * NT; ++v) {
          acc[i][v] = _mm256_fmadd_ps(xe, we[v], acc[i][v]);
          acc[i][v] = _mm256_fmadd_ps(xo, wo[v], acc[i][v]);
        }
      }
    }
    const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
#pragma GCC unroll 16
    for (int v = 0; v < 2 * NT; ++v) {
      const int col = t * kTile + 8 * v, valid = g.out - col;
      if (valid <= 0) break;
      const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(valid), lanes);
#pragma GCC unroll 16
      for (int i = 0; i < MR; ++i) {
        float* yr = g.y + int64_t(m + i) * g.out + col;
        if (valid >= 8) {
          _mm256_storeu_ps(
              yr, g.accumulate ? _mm256_add_ps(_mm256_loadu_ps(yr), acc[i][v]) : acc[i][v]);
        } else {
          _mm256_maskstore_ps(
              yr, mask,
              g.accumulate ? _mm256_add_ps(_mm256_maskload_ps(yr, mask), acc[i][v]) : acc[i][v]);
        }
      }
    }
  }
};
#endif

#if SEEKR_HAVE_AVX512BF16
#define SEEKR_AVX512BF16 __attribute__((target("avx512f,avx512bf16")))

// The AVX-512 BF16 kernel: one vdpbf16ps multiplies a broadcast input pair with the pairs of
// 16 outputs and adds both products. MR = 8 rows × 32 outputs hold 16 of the 32 registers in
// accumulators.
struct Avx512 {
  using X = uint32_t;  // an input pair: bf16(x[2p]) low, bf16(x[2p + 1]) high
  static constexpr int kMR = 8, kNT = 2, kRowNT = 4;

  template <int MR, int NT>
  SEEKR_AVX512BF16 static void kernel(const Operands<uint32_t>& g, int m, int t) {
    const uint32_t* x = g.row(m);
    const uint32_t* w = g.w + int64_t(t) * g.tile_stride;
    __m512 acc[MR][NT];
#pragma GCC unroll 16
    for (auto& r : acc)
#pragma GCC unroll 16
      for (auto& v : r) v = _mm512_setzero_ps();
    for (int p = 0; p < g.pairs; ++p) {
      __m512bh wv[NT];
#pragma GCC unroll 16
      for (int v = 0; v < NT; ++v)
        wv[v] = (__m512bh)_mm512_loadu_si512(w + v * g.tile_stride + int64_t(p) * kTile);
#pragma GCC unroll 16
      for (int i = 0; i < MR; ++i) {
        const __m512bh xv = (__m512bh)_mm512_set1_epi32(int(x[p * g.group + i]));
#pragma GCC unroll 16
        for (int v = 0; v < NT; ++v) acc[i][v] = _mm512_dpbf16_ps(acc[i][v], xv, wv[v]);
      }
    }
#pragma GCC unroll 16
    for (int v = 0; v < NT; ++v) {
      const int col = t * kTile + kTile * v, valid = g.out - col;
      if (valid <= 0) break;
      const __mmask16 mask = valid >= kTile ? __mmask16(0xffff) : __mmask16((1u << valid) - 1);
#pragma GCC unroll 16
      for (int i = 0; i < MR; ++i) {
        float* yr = g.y + int64_t(m + i) * g.out + col;
        _mm512_mask_storeu_ps(
            yr, mask,
            g.accumulate ? _mm512_add_ps(_mm512_maskz_loadu_ps(mask, yr), acc[i][v]) : acc[i][v]);
      }
    }
  }
};
#endif

// bf16(v) as its 16 bits.
inline uint32_t bf16_bits(float v) {
  return f32_to_bf16(v);
}

// The interleaved-pairs layout (top of the file) of m in groups of G rows, zero-padded to whole
// pairs and whole groups: dst holds ceil(rows / G)·G·ceil(cols / 2) lanes.
void pack_pairs(const F32Matrix& m, int G, uint32_t* dst) {
  const int pairs = ceil_div(m.cols, 2);
  // std::fill, not memset: dst is null for an empty matrix, which memset may not be given.
  std::fill_n(dst, size_t(ceil_div(m.rows, G)) * G * pairs, 0u);
  auto at = [&](int r, int k) { return m.data[r * m.row_stride + k * m.col_stride]; };
  auto lane = [&](int r, int p) -> uint32_t& {
    return dst[(int64_t(r / G) * pairs + p) * G + r % G];
  };
#if SEEKR_AVX2
  if (m.row_stride == 1 && G % 8 == 0) {
    // Transposed source: a group's rows are adjacent in memory, 8 at a time for each k.
    const int full_rows = m.rows / 8 * 8, full_pairs = m.cols / 2;
    const __m256i hi = _mm256_set1_epi32(int(0xffff0000u));
    for (int p = 0; p < full_pairs; ++p) {
      const float* even = m.data + 2 * p * m.col_stride;
      const float* odd = even + m.col_stride;
      for (int r = 0; r < full_rows; r += 8) {
        const __m256i e = _mm256_castps_si256(round_bf16_8(_mm256_loadu_ps(even + r)));
        const __m256i o = _mm256_castps_si256(round_bf16_8(_mm256_loadu_ps(odd + r)));
        const __m256i pair = _mm256_or_si256(_mm256_srli_epi32(e, 16), _mm256_and_si256(o, hi));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(&lane(r, p)), pair);
      }
    }
    for (int p = 0; p < pairs; ++p)
      for (int r = p < full_pairs ? full_rows : 0; r < m.rows; ++r)
        lane(r, p) =
            bf16_bits(at(r, 2 * p)) | (2 * p + 1 < m.cols ? bf16_bits(at(r, 2 * p + 1)) << 16 : 0u);
    return;
  }
  if (m.col_stride == 1) {
    // Row-major source: 16 inputs of a row become 8 pairs, stored G lanes apart.
    const int full = m.cols / 16 * 16;
    for (int r = 0; r < m.rows; ++r) {
      const float* row = m.data + r * m.row_stride;
      for (int k = 0; k < full; k += 16) {
        const __m256i a =
            _mm256_srli_epi32(_mm256_castps_si256(round_bf16_8(_mm256_loadu_ps(row + k))), 16);
        const __m256i b =
            _mm256_srli_epi32(_mm256_castps_si256(round_bf16_8(_mm256_loadu_ps(row + k + 8))), 16);
        // packus interleaves 128-bit halves: [a0-3 b0-3 | a4-7 b4-7] → reorder to a0-7 b0-7.
        const __m256i bits = _mm256_permute4x64_epi64(_mm256_packus_epi32(a, b), 0xd8);
        alignas(32) uint32_t out[8];
        _mm256_store_si256(reinterpret_cast<__m256i*>(out), bits);
        for (int j = 0; j < 8; ++j) lane(r, k / 2 + j) = out[j];
      }
      for (int k = full; k < m.cols; k += 2)
        lane(r, k / 2) = bf16_bits(row[k]) | (k + 1 < m.cols ? bf16_bits(row[k + 1]) << 16 : 0u);
    }
    return;
  }
#endif
  for (int r = 0; r < m.rows; ++r)
    for (int p = 0; p < pairs; ++p)
      lane(r, p) =
          bf16_bits(at(r, 2 * p)) | (2 * p + 1 < m.cols ? bf16_bits(at(r, 2 * p + 1)) << 16 : 0u);
}

}  // namespace

void bf16_pack_weights(const F32Matrix& w, Bf16Weights& p) {
  SEEKR_CHECK(w.rows >= 0 && w.cols >= 0, "rows=", w.rows, " cols=", w.cols);
  p.out = w.rows;
  p.in = w.cols;
  p.data.resize(size_t(ceil_div(w.rows, kTile)) * kTile * ceil_div(w.cols, 2));
  pack_pairs(w, kTile, p.data.data());
}

Bf16Weights bf16_pack_weights(const float* w, int out, int in) {
  Bf16Weights p;
  bf16_pack_weights(F32Matrix{w, out, in, in, 1}, p);
  return p;
}

void bf16_unpack_weights(const Bf16Weights& p, float* w) {
  const int pairs = ceil_div(p.in, 2);
  for (int o = 0; o < p.out; ++o)
    for (int k = 0; k < p.in; ++k) {
      const uint32_t pair = p.data[(size_t(o / kTile) * pairs + k / 2) * kTile + o % kTile];
      w[int64_t(o) * p.in + k] = bf16_to_f32(uint16_t(pair >> (16 * (k % 2))));
    }
}

void bf16_round(const float* src, float* dst, int64_t n) {
  constexpr int64_t kChunk = int64_t{1} << 14;  // floats per parallel work item
  const int64_t chunks = (n + kChunk - 1) / kChunk;
#pragma omp parallel for schedule(static) if (chunks > 4 && !omp_in_parallel())
  for (int64_t c = 0; c < chunks; ++c) {
    int64_t i = c * kChunk;
    const int64_t end = std::min(n, i + kChunk);
#if SEEKR_AVX2
    for (; i + 8 <= end; i += 8) _mm256_storeu_ps(dst + i, round_bf16_8(_mm256_loadu_ps(src + i)));
#endif
    for (; i < end; ++i) dst[i] = round_bf16(src[i]);
  }
}

bool cpu_has_avx512bf16() {
#if SEEKR_HAVE_AVX512BF16
  static const bool has = __builtin_cpu_supports("avx512bf16");
  return has;
#else
  return false;
#endif
}

void bf16_matmul_xwt_avx2(const F32Matrix& x, const Bf16Weights& w, float* y, float beta) {
  const int N = x.rows;
  SEEKR_CHECK(N >= 0 && x.cols == w.in, "x [", N, ", ", x.cols, "] against w.in ", w.in);
#if SEEKR_AVX2
  prescale(y, int64_t(N) * w.out, beta);
  if (N == 0 || w.out == 0) return;  // in = 0 still writes y = beta·y (sums of nothing)
  // x rounded to bf16 once (kept as floats) in the interleaved layout, rows padded with zeros to
  // whole pairs and the last group with zero rows.
  const int len = 2 * ceil_div(w.in, 2), groups = ceil_div(N, Avx2::kMR);
  thread_local std::vector<float> xr;
  xr.assign(size_t(groups) * Avx2::kMR * len, 0.0f);
  const Operands<float> g = operands<Avx2>(xr, len, w, y, beta);
  for (int r0 = 0; r0 < N; r0 += Avx2::kMR) {
    const int rows = std::min(Avx2::kMR, N - r0);
    float* dst = const_cast<float*>(g.row(r0));
    if (x.col_stride == 1) {
      interleave_rows(x.data + int64_t(r0) * x.row_stride, x.row_stride, rows, w.in, Avx2::kMR,
                      dst);
    } else {
      for (int i = 0; i < rows; ++i)
        for (int k = 0; k < w.in; ++k)
          dst[k * Avx2::kMR + i] = round_bf16(x.data[(r0 + i) * x.row_stride + k * x.col_stride]);
    }
  }
  run_kernels<Avx2>(g, N);
#else
  // Without AVX2 the reference computes the same sums in the same order.
  std::vector<float> xf(size_t(N) * w.in), wf(size_t(w.out) * w.in);
  for (int n = 0; n < N; ++n)
    for (int k = 0; k < w.in; ++k)
      xf[size_t(n) * w.in + k] = x.data[n * x.row_stride + k * x.col_stride];
  bf16_unpack_weights(w, wf.data());
  ref::bf16_matmul_xwt(xf.data(), wf.data(), y, N, w.in, w.out, beta);
#endif
}

void bf16_matmul_xwt_avx512(const F32Matrix& x, const Bf16Weights& w, float* y, float beta) {
  SEEKR_CHECK(cpu_has_avx512bf16(), "this CPU has no AVX-512 BF16");
  const int N = x.rows;
  SEEKR_CHECK(N >= 0 && x.cols == w.in, "x [", N, ", ", x.cols, "] against w.in ", w.in);
#if SEEKR_HAVE_AVX512BF16
  prescale(y, int64_t(N) * w.out, beta);
  if (N == 0 || w.out == 0) return;  // in = 0 still writes y = beta·y (sums of nothing)
  const int pairs = ceil_div(w.in, 2);
  thread_local std::vector<uint32_t> xp;  // input pairs in the interleaved layout
  xp.resize(size_t(ceil_div(N, Avx512::kMR)) * Avx512::kMR * pairs);
  pack_pairs(x, Avx512::kMR, xp.data());
  run_kernels<Avx512>(operands<Avx512>(xp, pairs, w, y, beta), N);
#else
  (void)y, (void)beta;
#endif
}

void bf16_matmul_xwt(const F32Matrix& x, const Bf16Weights& w, float* y, float beta) {
  if (cpu_has_avx512bf16()) return bf16_matmul_xwt_avx512(x, w, y, beta);
  bf16_matmul_xwt_avx2(x, w, y, beta);
}

void bf16_matmul_xwt(const float* x, const Bf16Weights& w, float* y, int N, float beta) {
  bf16_matmul_xwt(F32Matrix{x, N, w.in, w.in, 1}, w, y, beta);
}

void bf16_matmul_xwt(const float* x, const float* w, float* y, int N, int in, int out, float beta) {
  bf16_matmul_xwt(x, bf16_pack_weights(w, out, in), y, N, beta);
}

namespace ref {

void bf16_matmul_xwt(const float* x, const float* w, float* y, int N, int in, int out, float beta) {
  for (int n = 0; n < N; ++n) {
    for (int o = 0; o < out; ++o) {
      float acc = 0.0f;
      for (int k = 0; k < in; ++k)
        acc += round_bf16(x[int64_t(n) * in + k]) * round_bf16(w[int64_t(o) * in + k]);
      float& yv = y[int64_t(n) * out + o];
      yv = beta == 0.0f ? acc : acc + beta * yv;
    }
  }
}

}  // namespace ref

}  // namespace seekr
