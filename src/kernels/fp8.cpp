// FP8 codecs, fine-grained quantisation and the FP8 GEMM (contracts in fp8.h), followed by their
// scalar references. The vector paths need F16C besides AVX2 (every AVX2 CPU has it): a code
// widens exactly through half precision, which shares E5M2's layout and contains every E4M3 value
// divided by 2^8.
#include "kernels/fp8.h"

#include <omp.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <limits>
#include <vector>

#include "core/check.h"
#include "core/scratch.h"
#include "kernels/simd.h"

#if SEEKR_AVX2 && defined(__F16C__)
#define SEEKR_FP8_SIMD 1
#else
#define SEEKR_FP8_SIMD 0
#endif

namespace seekr {
namespace {

// The two element formats, as the encoder and the tables need them.
struct E4M3 {
  static constexpr int kMant = 3, kBias = 7;
  static constexpr bool kHasInf = false;
  static constexpr uint32_t kMaxCode = 0x7E, kNanCode = 0x7F;  // 448 = 1.110b·2^8
  static constexpr float kHalfScale = 256.0f;                  // value = half(code) · 2^8
};
struct E5M2 {
  static constexpr int kMant = 2, kBias = 15;
  static constexpr bool kHasInf = true;
  static constexpr uint32_t kMaxCode = 0x7B, kNanCode = 0x7E;  // 57344 = 1.11b·2^15
  static constexpr float kHalfScale = 1.0f;                    // a code is the top byte of a half
};

constexpr float pow2(int e) {
  float r = 1.0f;
  for (; e > 0; --e) r *= 2.0f;
  for (; e < 0; ++e) r *= 0.5f;
  return r;
}

// The value of a code from the format's definition (the tables and the references use this).
template <class F>
constexpr float fp8_value(uint32_t code) {
  const uint32_t mag = code & 0x7F, e = mag >> F::kMant, f = mag & ((1u << F::kMant) - 1);
  float v;
  if (F::kHasInf && e == (0x7Fu >> F::kMant)) {
    v = f == 0 ? std::numeric_limits<float>::infinity() : std::numeric_limits<float>::quiet_NaN();
  } else if (!F::kHasInf && mag == 0x7F) {
    v = std::numeric_limits<float>::quiet_NaN();
  } else if (e == 0) {
    v = static_cast<float>(f) * pow2(1 - F::kBias - F::kMant);
  } else {
    v = static_cast<float>((1u << F::kMant) + f) * pow2(static_cast<int>(e) - F::kBias - F::kMant);
  }
  return code & 0x80 ? -v : v;
}

template <class F>
constexpr std::array<float, 256> make_table() {
  std::array<float, 256> t{};
  for (uint32_t c = 0; c < 256; ++c) t[c] = fp8_value<F>(c);
  return t;
}
template <class F>
constexpr std::array<float, 256> kTable = make_table<F>();

// Round to nearest even on the f32 bits. A normal result keeps kMant of the 23 mantissa bits
// (adding half-minus-one plus the kept LSB rounds ties to even, and a carry moves into the
// exponent as it should); below the smallest normal the code is the value counted in units of
// the smallest subnormal, which a power-of-two scaling and one rounding give exactly. Codes past
// the largest finite one (including inf's) clamp to it: satfinite.
template <class F>
uint8_t encode(float x) {
  constexpr int kShift = 23 - F::kMant;
  constexpr uint32_t kMinNormal = static_cast<uint32_t>(127 + 1 - F::kBias) << 23;
  constexpr float kSubScale = pow2(F::kMant + F::kBias - 1);
  const uint32_t u = std::bit_cast<uint32_t>(x);
  const uint32_t sign = (u >> 24) & 0x80, a = u & 0x7fffffff;
  if (a > 0x7f800000) return static_cast<uint8_t>(sign | F::kNanCode);
  uint32_t c;
  if (a >= kMinNormal) {
    const uint32_t r = a + ((1u << (kShift - 1)) - 1) + ((a >> kShift) & 1);
    c = (r >> kShift) - (static_cast<uint32_t>(127 - F::kBias) << F::kMant);
  } else {
    c = static_cast<uint32_t>(std::nearbyint(std::bit_cast<float>(a) * kSubScale));
  }
  return static_cast<uint8_t>(sign | std::min(c, F::kMaxCode));
}

#if SEEKR_FP8_SIMD
// encode() on 8 lanes: the codes in the low byte of each 32-bit lane.
template <class F>
inline __m256i encode8(__m256 x) {
  constexpr int kShift = 23 - F::kMant;
  constexpr int kMinNormal = (127 + 1 - F::kBias) << 23;
  const __m256i u = _mm256_castps_si256(x);
  const __m256i a = _mm256_and_si256(u, _mm256_set1_epi32(0x7fffffff));
  const __m256i sign = _mm256_and_si256(_mm256_srli_epi32(u, 24), _mm256_set1_epi32(0x80));
  const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(a, kShift), _mm256_set1_epi32(1));
  const __m256i r =
      _mm256_add_epi32(_mm256_add_epi32(a, _mm256_set1_epi32((1 << (kShift - 1)) - 1)), lsb);
  const __m256i normal = _mm256_sub_epi32(_mm256_srli_epi32(r, kShift),
                                          _mm256_set1_epi32((127 - F::kBias) << F::kMant));
  const __m256 t =
      _mm256_mul_ps(_mm256_castsi256_ps(a), _mm256_set1_ps(pow2(F::kMant + F::kBias - 1)));
  const __m256i sub =
      _mm256_cvttps_epi32(_mm256_round_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  __m256i c = _mm256_blendv_epi8(normal, sub, _mm256_cmpgt_epi32(_mm256_set1_epi32(kMinNormal), a));
  c = _mm256_min_epi32(c, _mm256_set1_epi32(F::kMaxCode));
  const __m256i nan = _mm256_cmpgt_epi32(a, _mm256_set1_epi32(0x7f800000));
  c = _mm256_blendv_epi8(c, _mm256_set1_epi32(F::kNanCode), nan);
  return _mm256_or_si256(c, sign);
}

// Four vectors of 32-bit codes (each < 256) to 32 bytes in order. The packs work within 128-bit
// lanes, leaving 4-byte groups in the order 0 4 1 5 2 6 3 7, which the permute undoes.
inline __m256i pack_codes(__m256i c0, __m256i c1, __m256i c2, __m256i c3) {
  const __m256i b = _mm256_packus_epi16(_mm256_packs_epi32(c0, c1), _mm256_packs_epi32(c2, c3));
  return _mm256_permutevar8x32_epi32(b, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

// 16 codes as half-precision bit patterns whose values are the codes' values / F::kHalfScale.
template <class F>
inline __m256i to_half16(const uint8_t* p) {
  const __m256i c = _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  if constexpr (F::kHasInf) {
    return _mm256_slli_epi16(c, 8);
  } else {
    // S.EEEE.MMM shifted to bits 14..7 is already the half's exponent and mantissa; adding the
    // sign bit to itself moves it from bit 14 to 15. The one NaN pattern needs the half's
    // all-ones exponent.
    const __m256i t = _mm256_slli_epi16(c, 7);
    const __m256i h = _mm256_add_epi16(t, _mm256_and_si256(t, _mm256_set1_epi16(0x4000)));
    const __m256i mag = _mm256_set1_epi16(0x3f80);
    const __m256i nan = _mm256_cmpeq_epi16(_mm256_and_si256(t, mag), mag);
    return _mm256_or_si256(h, _mm256_and_si256(nan, _mm256_set1_epi16(0x7c00)));
  }
}
inline __m256 half_lo(__m256i h) {
  return _mm256_cvtph_ps(_mm256_castsi256_si128(h));
}
inline __m256 half_hi(__m256i h) {
  return _mm256_cvtph_ps(_mm256_extracti128_si256(h, 1));
}
#endif

// q[i] = encode(x[i] / s[i]); without s (nullptr), encode(x[i]).
template <class F>
void encode_span(const float* x, const float* s, uint8_t* q, int64_t n) {
  int64_t i = 0;
#if SEEKR_FP8_SIMD
  const auto load = [&](int64_t j) {
    const __m256 v = _mm256_loadu_ps(x + j);
    return s ? _mm256_div_ps(v, _mm256_loadu_ps(s + j)) : v;
  };
  for (; i + 32 <= n; i += 32) {
    const __m256i c = pack_codes(encode8<F>(load(i)), encode8<F>(load(i + 8)),
                                 encode8<F>(load(i + 16)), encode8<F>(load(i + 24)));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + i), c);
  }
#endif
  for (; i < n; ++i) q[i] = encode<F>(s ? x[i] / s[i] : x[i]);
}

// x[i] = value(q[i]) · s[i]; without s, value(q[i]).
template <class F>
void decode_span(const uint8_t* q, const float* s, float* x, int64_t n) {
  int64_t i = 0;
#if SEEKR_FP8_SIMD
  const __m256 k = _mm256_set1_ps(F::kHalfScale);
  for (; i + 16 <= n; i += 16) {
    const __m256i h = to_half16<F>(q + i);
    __m256 lo = _mm256_mul_ps(half_lo(h), k), hi = _mm256_mul_ps(half_hi(h), k);
    if (s) {
      lo = _mm256_mul_ps(lo, _mm256_loadu_ps(s + i));
      hi = _mm256_mul_ps(hi, _mm256_loadu_ps(s + i + 8));
    }
    _mm256_storeu_ps(x + i, lo);
    _mm256_storeu_ps(x + i + 8, hi);
  }
#endif
  for (; i < n; ++i) x[i] = s ? kTable<F>[q[i]] * s[i] : kTable<F>[q[i]];
}

// ---- quantisation ------------------------------------------------------------------------

int ceil_div(int a, int b) {
  return (a + b - 1) / b;
}

int tile_rows(Fp8Tiling t) {
  return t == Fp8Tiling::k1x128 ? 1 : kFp8Block;
}

float tile_scale(float amax, Fp8ScaleFmt fmt) {
  const float s = std::max(amax, kFp8AmaxFloor) / kE4M3Max;
  return fmt == Fp8ScaleFmt::kUE8M0 ? ue8m0_round_up(s) : s;
}

// max |x[j]| over j < n; NaNs are skipped (max_ps returns its second operand, the running max,
// when either is NaN, and the scalar comparison is false).
float abs_max(const float* x, int n) {
  float m = 0.0f;
  int j = 0;
#if SEEKR_AVX2
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  __m256 vm = _mm256_setzero_ps();
  for (; j + 8 <= n; j += 8)
    vm = _mm256_max_ps(_mm256_and_ps(_mm256_loadu_ps(x + j), abs_mask), vm);
  m = simd::hmax(vm);
#endif
  for (; j < n; ++j) m = std::fabs(x[j]) > m ? std::fabs(x[j]) : m;
  return m;
}

// colmax[j] = max over the rows of |x[i, j]|, NaNs skipped as above (x has row stride cols).
void abs_max_cols(const float* x, int rows, int cols, float* colmax) {
  std::fill(colmax, colmax + cols, 0.0f);
  for (int i = 0; i < rows; ++i) {
    const float* xr = x + static_cast<int64_t>(i) * cols;
    int j = 0;
#if SEEKR_AVX2
    const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    for (; j + 8 <= cols; j += 8) {
      const __m256 a = _mm256_and_ps(_mm256_loadu_ps(xr + j), abs_mask);
      _mm256_storeu_ps(colmax + j, _mm256_max_ps(a, _mm256_loadu_ps(colmax + j)));
    }
#endif
    for (; j < cols; ++j) colmax[j] = std::fabs(xr[j]) > colmax[j] ? std::fabs(xr[j]) : colmax[j];
  }
}

// srow[j] = the scale of column j in scale row sr (one row of fp8_scale_shape's array).
void expand_scales(const float* sr, Fp8Tiling tiling, int cols, float* srow) {
  if (tiling == Fp8Tiling::k128x1) {
    std::copy(sr, sr + cols, srow);
  } else {
    // 8-wide stores: the encoder reads srow 8 floats at a time, and a load that spans several
    // scalar stores cannot be forwarded from the store buffer (it stalls until they retire).
    for (int j0 = 0; j0 < cols; j0 += kFp8Block) {
      const int j1 = std::min(cols, j0 + kFp8Block);
      int j = j0;
#if SEEKR_AVX2
      const __m256 v = _mm256_set1_ps(sr[j0 / kFp8Block]);
      for (; j + 8 <= j1; j += 8) _mm256_storeu_ps(srow + j, v);
#endif
      for (; j < j1; ++j) srow[j] = sr[j0 / kFp8Block];
    }
  }
}

// Below this many elements an operand is quantised on one thread (a fork/join costs more).
constexpr int64_t kParallelMinElems = int64_t{1} << 16;

// Visits x's row blocks (tile height): computes the block's scales into s (its rows of the
// scale array, or scratch when s is null) and calls row_fn(r, srow) for each row r of the block,
// srow[j] being the scale of (r, j). row_fn may run on several threads at once, for different r.

template <class RowFn>
void quantize_rows(const float* x, float* s, int rows, int cols, Fp8Tiling tiling, Fp8ScaleFmt fmt,
                   RowFn row_fn) {
  const int h = tile_rows(tiling);
  const Fp8ScaleShape ss = fp8_scale_shape(tiling, rows, cols);
  const int blocks = (rows + h - 1) / h;
  // Tile rows are independent: large operands split them over the threads (a training step
  // quantises both operands of every GEMM), unless this already runs on a worker.
  const bool parallel = !omp_in_parallel() && int64_t(rows) * cols >= kParallelMinElems &&
                        blocks > 1 && omp_get_max_threads() > 1;
#pragma omp parallel if (parallel)
  {
    // Per-thread scratch, grown once: the training step quantises on every GEMM.
    thread_local std::vector<float> colmax_buf, srow_buf, scratch_buf;
    float* colmax = grown(colmax_buf, cols);
    float* srow = grown(srow_buf, cols);
    float* scratch = grown(scratch_buf, ss.cols);
#pragma omp for schedule(static)
    for (int b = 0; b < blocks; ++b) {
      const int r0 = b * h, r1 = std::min(rows, r0 + h);
      float* sr = s ? s + static_cast<int64_t>(b) * ss.cols : scratch;
      // One-row tiles reduce x directly; taller ones first reduce their rows to column maxima.
      const float* amax_src = x + static_cast<int64_t>(r0) * cols;
      if (h > 1) {
        abs_max_cols(amax_src, r1 - r0, cols, colmax);
        amax_src = colmax;
      }
      if (tiling == Fp8Tiling::k128x1) {
        for (int j = 0; j < cols; ++j) sr[j] = tile_scale(colmax[j], fmt);
      } else {
        for (int c = 0; c < ss.cols; ++c) {
          const int j0 = c * kFp8Block, j1 = std::min(cols, j0 + kFp8Block);
          sr[c] = tile_scale(abs_max(amax_src + j0, j1 - j0), fmt);
        }
      }
      expand_scales(sr, tiling, cols, srow);
      for (int r = r0; r < r1; ++r) row_fn(r, srow);
    }
  }
}

// ---- FP8 GEMM fast path ---------------------------------------------------------------------

#if SEEKR_FP8_SIMD
// Sets C[M, N] to beta·C (0 when beta is 0, whatever C held) before the kernels add into it.
void scale_c(float* c, int64_t n, float beta) {
  if (beta == 0.0f) {
    std::fill(c, c + n, 0.0f);
  } else if (beta != 1.0f) {
    simd::scale(c, n, beta);
  }
}

constexpr int kMR = 6, kNR = 16;  // micro-tile: 12 accumulators + 2 B vectors + 1 broadcast
constexpr int kKC = 256;          // K depth of a packed panel: a multiple of the 128 block
constexpr int kMC = 96;           // A block rows (stays in L2)
constexpr int kNC = 1024;         // B panel rows (stays in L3)

// Few rows of A against B read as codes: each 16·NA codes of a row of B widen once (as halves,
// i.e. value / 2^8; the 2^8 returns exactly at promotion) and meet the MM rows of A. NA
// accumulators per row hide the FMA latency: 4 for one or two rows, 2 where the rows
// themselves give enough independent chains (16 registers in all).
template <int MM, int NA = (MM <= 2 ? 4 : 2)>
void gemm_rows(const uint8_t* a, const float* a_s, const uint8_t* b, const float* b_s, int b_div,
               float* c, int N, int K) {
  constexpr int kStep = 8 * NA;
  const int KB = ceil_div(K, kFp8Block);
  thread_local std::vector<float> af;  // [MM, K] A's values
  af.resize(static_cast<size_t>(MM) * K);
  decode_span<E4M3>(a, nullptr, af.data(), static_cast<int64_t>(MM) * K);
  for (int n = 0; n < N; ++n) {
    const uint8_t* br = b + static_cast<int64_t>(n) * K;
    const float* sb = b_s + static_cast<int64_t>(n / b_div) * KB;
    float out[MM] = {};
    for (int kb = 0; kb < KB; ++kb) {
      const int k0 = kb * kFp8Block, len = std::min(kFp8Block, K - k0);
      __m256 acc[MM][NA];
#pragma GCC unroll 4
      for (auto& r : acc)
#pragma GCC unroll 4
        for (auto& v : r) v = _mm256_setzero_ps();
      int k = 0;
      for (; k + kStep <= len; k += kStep) {
        __m256 bv[NA];
#pragma GCC unroll 2
        for (int h = 0; h < NA / 2; ++h) {
          const __m256i half = to_half16<E4M3>(br + k0 + k + 16 * h);
          bv[2 * h] = half_lo(half);
          bv[2 * h + 1] = half_hi(half);
        }
#pragma GCC unroll 4
        for (int m = 0; m < MM; ++m) {
          const float* ar = af.data() + static_cast<int64_t>(m) * K + k0 + k;
#pragma GCC unroll 4
          for (int v = 0; v < NA; ++v)
            acc[m][v] = _mm256_fmadd_ps(_mm256_loadu_ps(ar + 8 * v), bv[v], acc[m][v]);
        }
      }
#pragma GCC unroll 4
      for (int m = 0; m < MM; ++m) {
        const float* ar = af.data() + static_cast<int64_t>(m) * K + k0;
        __m256 sum = acc[m][0];
#pragma GCC unroll 4
        for (int v = 1; v < NA; ++v) sum = _mm256_add_ps(sum, acc[m][v]);
        float blk = simd::hsum(sum);
        for (int t = k; t < len; ++t) blk += ar[t] * (kTable<E4M3>[br[k0 + t]] / 256.0f);
        out[m] += blk * 256.0f * a_s[static_cast<int64_t>(m) * KB + kb] * sb[kb];
      }
    }
    for (int m = 0; m < MM; ++m) c[static_cast<int64_t>(m) * N + n] += out[m];
  }
}

// In place: v[c] becomes column c of the 8×8 matrix whose rows were v[0..7].
inline void transpose8x8(__m256 v[8]) {
  __m256 t[8], u[8];
#pragma GCC unroll 8
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_ps(v[i], v[i + 1]);
    t[i + 1] = _mm256_unpackhi_ps(v[i], v[i + 1]);
  }
  // u[j] (and u[4 + j] for rows 4..7) holds column j in its low half, j + 4 in its high half.
#pragma GCC unroll 8
  for (int h = 0; h < 8; h += 4) {
    u[h] = _mm256_shuffle_ps(t[h], t[h + 2], 0x44);
    u[h + 1] = _mm256_shuffle_ps(t[h], t[h + 2], 0xEE);
    u[h + 2] = _mm256_shuffle_ps(t[h + 1], t[h + 3], 0x44);
    u[h + 3] = _mm256_shuffle_ps(t[h + 1], t[h + 3], 0xEE);
  }
#pragma GCC unroll 8
  for (int j = 0; j < 4; ++j) {
    v[j] = _mm256_permute2f128_ps(u[j], u[j + 4], 0x20);
    v[j + 4] = _mm256_permute2f128_ps(u[j], u[j + 4], 0x31);
  }
}

// Packs rows [r0, r0 + nr) of codes x[*, K], columns [k0, k0 + kc), as values in tiles of W rows:
// p[tile][k][W] (rows past nr are zero). Their scales go to ps[tile][kc/128 blocks][W]: the
// scale of (row r, K block kb) is s[(r / div) · KB + kb] (div 128 for block-scaled weights).
// Eight rows at a time are decoded contiguously and transposed in registers.
template <int W>
void pack_panel(const uint8_t* x, const float* s, int div, int K, int r0, int nr, int k0, int kc,
                std::vector<float>& p, std::vector<float>& ps) {
  const int tiles = ceil_div(nr, W), kcb = ceil_div(kc, kFp8Block);
  const int KB = ceil_div(K, kFp8Block), kb0 = k0 / kFp8Block;
  p.resize(static_cast<size_t>(tiles) * kc * W);
  ps.resize(static_cast<size_t>(tiles) * kcb * W);
  alignas(32) float rows[8][kKC] = {};  // rows past `lanes` stay zero for the transposes
  for (int t = 0; t < tiles; ++t) {
    for (int l0 = 0; l0 < W; l0 += 8) {
      const int lanes = std::min(8, W - l0);
      const __m256i mask =
          _mm256_cmpgt_epi32(_mm256_set1_epi32(lanes), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
      for (int j = 0; j < lanes; ++j) {
        const int i = t * W + l0 + j;
        if (i < nr) {
          decode_span<E4M3>(x + static_cast<int64_t>(r0 + i) * K + k0, nullptr, rows[j], kc);
        } else {
          std::fill(rows[j], rows[j] + kc, 0.0f);
        }
        for (int kb = 0; kb < kcb; ++kb)
          ps[(static_cast<size_t>(t) * kcb + kb) * W + l0 + j] =
              i < nr ? s[static_cast<int64_t>((r0 + i) / div) * KB + kb0 + kb] : 0.0f;
      }
      float* pt = p.data() + static_cast<size_t>(t) * kc * W + l0;
      int k = 0;
      for (; k + 8 <= kc; k += 8) {
        __m256 v[8];
#pragma GCC unroll 8
        for (int j = 0; j < 8; ++j) v[j] = _mm256_load_ps(rows[j] + k);
        transpose8x8(v);
#pragma GCC unroll 8
        for (int c = 0; c < 8; ++c) {
          if (lanes == 8) {
            _mm256_storeu_ps(pt + (k + c) * W, v[c]);
          } else {
            _mm256_maskstore_ps(pt + (k + c) * W, mask, v[c]);
          }
        }
      }
      for (; k < kc; ++k)
        for (int j = 0; j < lanes; ++j) pt[k * W + j] = rows[j][k];
    }
  }
}

// C tile [mr ≤ 6, nr ≤ 16] (row stride ldc) += Σ over the 128-blocks of the packed depth kc of
// ((Σ_k a·b) · a_s) · b_s: the block sums stay in registers, the promotion reads and writes C.
void micro_kernel(const float* ap, const float* as, const float* bp, const float* bs, int kc,
                  float* c, int64_t ldc, int mr, int nr) {
  for (int k0 = 0; k0 < kc; k0 += kFp8Block) {
    const int len = std::min(kFp8Block, kc - k0);
    __m256 acc[kMR][2];
#pragma GCC unroll 6
    for (auto& r : acc) r[0] = r[1] = _mm256_setzero_ps();
    for (int k = 0; k < len; ++k, ap += kMR, bp += kNR) {
      const __m256 b0 = _mm256_loadu_ps(bp), b1 = _mm256_loadu_ps(bp + 8);
#pragma GCC unroll 6
      for (int i = 0; i < kMR; ++i) {
        const __m256 av = _mm256_broadcast_ss(ap + i);
        acc[i][0] = _mm256_fmadd_ps(av, b0, acc[i][0]);
        acc[i][1] = _mm256_fmadd_ps(av, b1, acc[i][1]);
      }
    }
    const __m256 sb[2] = {_mm256_loadu_ps(bs), _mm256_loadu_ps(bs + 8)};
#pragma GCC unroll 6
    for (int i = 0; i < kMR; ++i) {
      if (i >= mr) break;
      const __m256 sa = _mm256_broadcast_ss(as + i);
      float* ci = c + i * ldc;
#pragma GCC unroll 2
      for (int v = 0; v < 2; ++v) {
        const __m256 t = _mm256_mul_ps(acc[i][v], sa);
        if (nr == kNR) {
          _mm256_storeu_ps(ci + 8 * v, _mm256_fmadd_ps(t, sb[v], _mm256_loadu_ps(ci + 8 * v)));
        } else {
          // Edge tile: built here, not before the loop, where it would cost the loop a register.
          const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(nr - 8 * v),
                                                  _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
          const __m256 cv = _mm256_maskload_ps(ci + 8 * v, mask);
          _mm256_maskstore_ps(ci + 8 * v, mask, _mm256_fmadd_ps(t, sb[v], cv));
        }
      }
    }
    as += kMR;
    bs += kNR;
  }
}

void gemm_packed(const uint8_t* a, const float* a_s, const uint8_t* b, const float* b_s, int b_div,
                 float* c, int M, int N, int K) {
  thread_local std::vector<float> ap, as, bp, bs;
  for (int k0 = 0; k0 < K; k0 += kKC) {
    const int kc = std::min(kKC, K - k0), kcb = ceil_div(kc, kFp8Block);
    for (int n0 = 0; n0 < N; n0 += kNC) {
      const int nc = std::min(kNC, N - n0);
      pack_panel<kNR>(b, b_s, b_div, K, n0, nc, k0, kc, bp, bs);
      for (int m0 = 0; m0 < M; m0 += kMC) {
        const int mc = std::min(kMC, M - m0);
        pack_panel<kMR>(a, a_s, 1, K, m0, mc, k0, kc, ap, as);
        for (int j = 0; j * kNR < nc; ++j) {
          for (int i = 0; i * kMR < mc; ++i) {
            float* ct = c + static_cast<int64_t>(m0 + i * kMR) * N + n0 + j * kNR;
            micro_kernel(ap.data() + static_cast<size_t>(i) * kc * kMR,
                         as.data() + static_cast<size_t>(i) * kcb * kMR,
                         bp.data() + static_cast<size_t>(j) * kc * kNR,
                         bs.data() + static_cast<size_t>(j) * kcb * kNR, kc, ct, N,
                         std::min(kMR, mc - i * kMR), std::min(kNR, nc - j * kNR));
          }
        }
      }
    }
  }
}
#endif

}  // namespace

// ---- codecs ------------------------------------------------------------------------------

uint8_t f32_to_e4m3(float f) {
  return encode<E4M3>(f);
}
uint8_t f32_to_e5m2(float f) {
  return encode<E5M2>(f);
}
float e4m3_to_f32(uint8_t c) {
  return kTable<E4M3>[c];
}
float e5m2_to_f32(uint8_t c) {
  return kTable<E5M2>[c];
}

void encode_e4m3(const float* x, uint8_t* q, int64_t n) {
  encode_span<E4M3>(x, nullptr, q, n);
}
void decode_e4m3(const uint8_t* q, float* x, int64_t n) {
  decode_span<E4M3>(q, nullptr, x, n);
}
void encode_e5m2(const float* x, uint8_t* q, int64_t n) {
  encode_span<E5M2>(x, nullptr, q, n);
}
void decode_e5m2(const uint8_t* q, float* x, int64_t n) {
  decode_span<E5M2>(q, nullptr, x, n);
}

uint8_t f32_to_e8m0(float s) {
  if (!(s > 0.0f)) return 0xFF;
  if (s > 0x1p127f) return 254;
  if (s <= 0x1p-127f) return 0;
  int e;
  // s = f·2^e with f in [0.5, 1): log2 s lies in [e - 1, e), and is e - 1 only for f = 0.5.
  const float f = std::frexp(s, &e);
  return static_cast<uint8_t>((f == 0.5f ? e - 1 : e) + 127);
}

float e8m0_to_f32(uint8_t c) {
  return c == 0xFF ? std::numeric_limits<float>::quiet_NaN() : std::ldexp(1.0f, c - 127);
}

float ue8m0_round_up(float s) {
  return e8m0_to_f32(f32_to_e8m0(s));
}

// ---- quantisation ------------------------------------------------------------------------

Fp8ScaleShape fp8_scale_shape(Fp8Tiling tiling, int rows, int cols) {
  const int br = ceil_div(rows, kFp8Block), bc = ceil_div(cols, kFp8Block);
  switch (tiling) {
    case Fp8Tiling::k1x128:
      return {rows, bc};
    case Fp8Tiling::k128x1:
      return {br, cols};
    case Fp8Tiling::k128x128:
      return {br, bc};
  }
  SEEKR_CHECK(false, "bad Fp8Tiling ", static_cast<int>(tiling));
}

void fp8_quantize(const float* x, uint8_t* q, float* s, int rows, int cols, Fp8Tiling tiling,
                  Fp8ScaleFmt fmt) {
  quantize_rows(x, s, rows, cols, tiling, fmt, [&](int r, const float* srow) {
    const int64_t off = static_cast<int64_t>(r) * cols;
    encode_span<E4M3>(x + off, srow, q + off, cols);
  });
}

void fp8_dequantize(const uint8_t* q, const float* s, float* x, int rows, int cols,
                    Fp8Tiling tiling) {
  const int h = tile_rows(tiling);
  const Fp8ScaleShape ss = fp8_scale_shape(tiling, rows, cols);
  thread_local std::vector<float> srow_buf;
  float* srow = grown(srow_buf, cols);
  for (int r = 0; r < rows; ++r) {
    if (r % h == 0) expand_scales(s + static_cast<int64_t>(r / h) * ss.cols, tiling, cols, srow);
    const int64_t off = static_cast<int64_t>(r) * cols;
    decode_span<E4M3>(q + off, srow, x + off, cols);
  }
}

void fp8_fake_quant(float* x, int rows, int cols, Fp8Tiling tiling, Fp8ScaleFmt fmt) {
  // Rows are visited after their block's scales are computed, so they can be overwritten.
  quantize_rows(x, nullptr, rows, cols, tiling, fmt, [&](int r, const float* srow) {
    float* xr = x + static_cast<int64_t>(r) * cols;
    constexpr int kChunk = 512;
    uint8_t codes[kChunk];
    for (int j = 0; j < cols; j += kChunk) {
      const int len = std::min(kChunk, cols - j);
      encode_span<E4M3>(xr + j, srow + j, codes, len);
      decode_span<E4M3>(codes, srow + j, xr + j, len);
    }
  });
}

// ---- FP8 GEMM ----------------------------------------------------------------------------

void fp8_gemm(const uint8_t* a, const float* a_s, const uint8_t* b, const float* b_s,
              Fp8Tiling b_tiling, float* c, int M, int N, int K, float beta) {
  SEEKR_CHECK(M >= 0 && N >= 0 && K >= 0, "M=", M, " N=", N, " K=", K);
  SEEKR_CHECK(b_tiling != Fp8Tiling::k128x1, "B's scales are 1x128 or 128x128");
#if SEEKR_FP8_SIMD
  scale_c(c, static_cast<int64_t>(M) * N, beta);
  if (M == 0 || N == 0 || K == 0) return;
  const int b_div = b_tiling == Fp8Tiling::k128x128 ? kFp8Block : 1;
  switch (M) {
    case 1:
      return gemm_rows<1>(a, a_s, b, b_s, b_div, c, N, K);
    case 2:
      return gemm_rows<2>(a, a_s, b, b_s, b_div, c, N, K);
    case 3:
      return gemm_rows<3>(a, a_s, b, b_s, b_div, c, N, K);
    case 4:
      return gemm_rows<4>(a, a_s, b, b_s, b_div, c, N, K);
    default:
      gemm_packed(a, a_s, b, b_s, b_div, c, M, N, K);
  }
#else
  ref::fp8_gemm(a, a_s, b, b_s, b_tiling, c, M, N, K, beta);
#endif
}

// ---- scalar references -------------------------------------------------------------------

namespace ref {
namespace {

// Rounds |x| to a multiple of its binade's quantum (the subnormal quantum below the smallest
// normal) with nearbyint's ties-to-even, in double, then finds the code holding that value.
template <class F>
uint8_t ref_encode(float x) {
  const uint8_t sign = std::signbit(x) ? 0x80 : 0;
  if (std::isnan(x)) return sign | F::kNanCode;
  const double a = std::fabs(static_cast<double>(x));
  if (a >= fp8_value<F>(F::kMaxCode)) return sign | F::kMaxCode;
  if (a == 0.0) return sign;
  int e;
  std::frexp(a, &e);  // a in [2^(e-1), 2^e)
  const double quantum = std::ldexp(1.0, std::max(e - 1, 1 - F::kBias) - F::kMant);
  const double v = std::nearbyint(a / quantum) * quantum;
  for (uint32_t c = 0; c <= F::kMaxCode; ++c)
    if (static_cast<double>(fp8_value<F>(c)) == v) return static_cast<uint8_t>(sign | c);
  SEEKR_CHECK(false, "no code for ", x);
}

}  // namespace

void encode_e4m3(const float* x, uint8_t* q, int64_t n) {
  for (int64_t i = 0; i < n; ++i) q[i] = ref_encode<E4M3>(x[i]);
}
void decode_e4m3(const uint8_t* q, float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] = fp8_value<E4M3>(q[i]);
}
void encode_e5m2(const float* x, uint8_t* q, int64_t n) {
  for (int64_t i = 0; i < n; ++i) q[i] = ref_encode<E5M2>(x[i]);
}
void decode_e5m2(const uint8_t* q, float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] = fp8_value<E5M2>(q[i]);
}

// Tile by tile: amax, scale, then every element of the tile.
void fp8_quantize(const float* x, uint8_t* q, float* s, int rows, int cols, Fp8Tiling tiling,
                  Fp8ScaleFmt fmt) {
  const Fp8ScaleShape ss = fp8_scale_shape(tiling, rows, cols);
  const int th = tiling == Fp8Tiling::k1x128 ? 1 : kFp8Block;
  const int tw = tiling == Fp8Tiling::k128x1 ? 1 : kFp8Block;
  for (int ti = 0; ti < ss.rows; ++ti) {
    for (int tj = 0; tj < ss.cols; ++tj) {
      const int i1 = std::min(rows, (ti + 1) * th), j1 = std::min(cols, (tj + 1) * tw);
      float amax = 0.0f;
      for (int i = ti * th; i < i1; ++i)
        for (int j = tj * tw; j < j1; ++j)
          amax = std::max(amax, std::fabs(x[static_cast<int64_t>(i) * cols + j]));
      float sc = std::max(amax, kFp8AmaxFloor) / kE4M3Max;
      if (fmt == Fp8ScaleFmt::kUE8M0) sc = ue8m0_round_up(sc);
      s[static_cast<int64_t>(ti) * ss.cols + tj] = sc;
      for (int i = ti * th; i < i1; ++i)
        for (int j = tj * tw; j < j1; ++j)
          q[static_cast<int64_t>(i) * cols + j] =
              ref_encode<E4M3>(x[static_cast<int64_t>(i) * cols + j] / sc);
    }
  }
}

void fp8_dequantize(const uint8_t* q, const float* s, float* x, int rows, int cols,
                    Fp8Tiling tiling) {
  const Fp8ScaleShape ss = fp8_scale_shape(tiling, rows, cols);
  const int th = tiling == Fp8Tiling::k1x128 ? 1 : kFp8Block;
  const int tw = tiling == Fp8Tiling::k128x1 ? 1 : kFp8Block;
  for (int i = 0; i < rows; ++i) {
    for (int j = 0; j < cols; ++j) {
      const int64_t at = static_cast<int64_t>(i) * cols + j;
      x[at] = fp8_value<E4M3>(q[at]) * s[static_cast<int64_t>(i / th) * ss.cols + j / tw];
    }
  }
}

void fp8_gemm(const uint8_t* a, const float* a_s, const uint8_t* b, const float* b_s,
              Fp8Tiling b_tiling, float* c, int M, int N, int K, float beta) {
  const int KB = ceil_div(K, kFp8Block);
  const int b_div = b_tiling == Fp8Tiling::k128x128 ? kFp8Block : 1;
  for (int m = 0; m < M; ++m) {
    for (int n = 0; n < N; ++n) {
      float acc = 0.0f;
      for (int kb = 0; kb < KB; ++kb) {
        float blk = 0.0f;  // sums of products that are exact in f32 (4-bit × 4-bit significands)
        for (int k = kb * kFp8Block; k < std::min(K, (kb + 1) * kFp8Block); ++k)
          blk += kTable<E4M3>[a[static_cast<int64_t>(m) * K + k]] *
                 kTable<E4M3>[b[static_cast<int64_t>(n) * K + k]];
        acc += blk * a_s[static_cast<int64_t>(m) * KB + kb] *
               b_s[static_cast<int64_t>(n / b_div) * KB + kb];
      }
      float& cv = c[static_cast<int64_t>(m) * N + n];
      cv = beta == 0.0f ? acc : acc + beta * cv;
    }
  }
}

}  // namespace ref

}  // namespace seekr
