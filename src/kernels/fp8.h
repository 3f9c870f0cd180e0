// FP8 numerics as DeepSeek-V3 trains and serves with them: the E4M3 / E5M2 element codecs, E8M0
// power-of-two scales, the fine-grained (1×128, 128×1, 128×128) quantisation of the official
// inference code (act_quant, weight_dequant) and its fp8_gemm, which sums each 128-long K block
// in FP32 and applies the two scales when it promotes the block into the FP32 result.
//
// Contract (as ops.h): row-major arrays, shapes in the comments; every fast kernel has a scalar
// reference in namespace seekr::ref with the same signature, compared in tests/test_fp8.cpp.
// Codes are raw bytes laid out as torch.float8_e4m3fn / float8_e5m2 store them.
#pragma once

#include <cstdint>

namespace seekr {

// ---- element codecs ------------------------------------------------------------------------
// E4M3 (float8_e4m3fn): bias 7, subnormals, no infinities, NaN = S.1111.111, max ±448.
// E5M2 (float8_e5m2): bias 15, IEEE-like with ±inf (S.11111.00) and NaNs, max finite ±57344.
inline constexpr float kE4M3Max = 448.0f;
inline constexpr float kE5M2Max = 57344.0f;

// f32 -> fp8 rounds to nearest, ties to even, and saturates like PTX cvt.rn.satfinite (what the
// Triton/CUDA casts of the official kernels compile to): every finite value beyond the largest
// finite code AND ±inf become ±max (so E5M2 encoding never yields its inf code). NaN gives NaN with
// the input's sign (E4M3 S.1111.111, E5M2 S.11111.10, the quiet pattern torch writes).
uint8_t f32_to_e4m3(float f);
uint8_t f32_to_e5m2(float f);
// fp8 -> f32 is exact for every code (NaN codes give NaN).
float e4m3_to_f32(uint8_t c);
float e5m2_to_f32(uint8_t c);

// Bulk versions (AVX2 + F16C): q[n] <- x[n] and back, element for element as the scalar calls.
void encode_e4m3(const float* x, uint8_t* q, int64_t n);
void decode_e4m3(const uint8_t* q, float* x, int64_t n);
void encode_e5m2(const float* x, uint8_t* q, int64_t n);
void decode_e5m2(const uint8_t* q, float* x, int64_t n);

// E8M0 (ue8m0): an unsigned power of two 2^(c-127) for c in 0..254; 0xFF is NaN. Encoding rounds
// UP (s -> 2^ceil(log2 s), exactly, where the official code evaluates log2 in floating point), so a
// scale never shrinks and x/s cannot leave the E4M3 range. Beyond the codes it saturates: s <=
// 2^-127 gives 2^-127, s > 2^127 (and +inf) gives 2^127. NaN, zero and negative s (no power of two)
// give 0xFF.
uint8_t f32_to_e8m0(float s);
float e8m0_to_f32(uint8_t c);
// The scale_fmt == "ue8m0" rounding of a scale: e8m0_to_f32(f32_to_e8m0(s)).
float ue8m0_round_up(float s);

// ---- fine-grained quantisation -----------------------------------------------------------
inline constexpr int kFp8Block = 128;
// amax of a tile is clamped to this before s = amax / 448 (all-zero tiles get a finite scale).
inline constexpr float kFp8AmaxFloor = 1e-4f;

// Tiles of x[rows, cols]:
//   k1x128:   one row × 128 consecutive columns (activations: per token per 128 channels);
//             scales [rows, ceil(cols/128)].
//   k128x1:   128 consecutive rows × one column (the same activations tiled along tokens, for the
//             weight-gradient GEMM whose K is the token dimension); scales [ceil(rows/128), cols].
//             It equals the 1×128 quantisation of xᵀ, transposed back.
//   k128x128: blocks (weights, as weight_scale_inv); scales [ceil(rows/128), ceil(cols/128)].
// Edge tiles are partial; the zero padding of the official code does not change their amax.
enum class Fp8Tiling { k1x128, k128x1, k128x128 };
// kF32: s = max(amax, 1e-4) / 448.  kUE8M0: that s rounded up to a power of two (ue8m0_round_up).
enum class Fp8ScaleFmt { kF32, kUE8M0 };

struct Fp8ScaleShape {
  int rows, cols;
};
Fp8ScaleShape fp8_scale_shape(Fp8Tiling tiling, int rows, int cols);

// q[rows, cols] = e4m3(x / s[tile]) with s[tile] as above (s shaped by fp8_scale_shape). The
// division is the official act_quant's `x / s`, not a multiplication by 1/s. NaNs in x are skipped
// by the amax and encode as NaN.
void fp8_quantize(const float* x, uint8_t* q, float* s, int rows, int cols, Fp8Tiling tiling,
                  Fp8ScaleFmt fmt = Fp8ScaleFmt::kF32);
// x[rows, cols] = float(q) · s[tile] (one f32 rounding of the product, as weight_dequant).
void fp8_dequantize(const uint8_t* q, const float* s, float* x, int rows, int cols,
                    Fp8Tiling tiling);
// In place x <- dequantize(quantize(x)), bit for bit, without the code and scale buffers. An FP8
// training mode can emulate an FP8 GEMM as fake_quant(A), fake_quant(B), sgemm: the operands are
// then exactly the fp8 values times their scales.
void fp8_fake_quant(float* x, int rows, int cols, Fp8Tiling tiling,
                    Fp8ScaleFmt fmt = Fp8ScaleFmt::kF32);

// ---- FP8 GEMM --------------------------------------------------------------------------------
// C[M, N] = A[M, K] · B[N, K]ᵀ  (+ beta·C): A and B are E4M3 codes; a_s [M, ceil(K/128)] holds A's
// 1×128 scales; b_s holds B's scales for b_tiling = k1x128 ([N, ceil(K/128)]) or k128x128
// ([ceil(N/128), ceil(K/128)], weights). For each 128-long K block the products of the exact fp8
// values are summed in FP32, and the block sum is promoted: acc += (sum · a_s) · b_s, as the
// official fp8_gemm_kernel does. Single-threaded. Fast path: M <= 4 (decode) reads B's codes in
// place, widening each once for all rows; larger M decodes packed panels for an AVX2 6×16 FMA
// micro-kernel that promotes every 128 along K. NaN codes propagate.
void fp8_gemm(const uint8_t* a, const float* a_s, const uint8_t* b, const float* b_s,
              Fp8Tiling b_tiling, float* c, int M, int N, int K, float beta = 0.0f);

namespace ref {
// Scalar references with identical contracts (see above): the plainest code for each formula.
void encode_e4m3(const float* x, uint8_t* q, int64_t n);
void decode_e4m3(const uint8_t* q, float* x, int64_t n);
void encode_e5m2(const float* x, uint8_t* q, int64_t n);
void decode_e5m2(const uint8_t* q, float* x, int64_t n);
void fp8_quantize(const float* x, uint8_t* q, float* s, int rows, int cols, Fp8Tiling tiling,
                  Fp8ScaleFmt fmt);
void fp8_dequantize(const uint8_t* q, const float* s, float* x, int rows, int cols,
                    Fp8Tiling tiling);
void fp8_gemm(const uint8_t* a, const float* a_s, const uint8_t* b, const float* b_s,
              Fp8Tiling b_tiling, float* c, int M, int N, int K, float beta);
}  // namespace ref

}  // namespace seekr
