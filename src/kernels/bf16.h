// BF16 GEMM for the layers DeepSeek-V3 keeps in BF16 (and as the bf16 gemm_impl of its inference
// code): both operands rounded to bf16 (round-to-nearest-even, core/dtype.h f32_to_bf16), products
// exact in FP32, FP32 accumulation.
//
// Two implementations behind one runtime dispatch: AVX-512 BF16 (vdpbf16ps), chosen only when the
// CPU reports avx512bf16, and AVX2 (bf16 widened by a 16-bit shift, FMA in FP32) elsewhere. The
// AVX-512 instruction treats bf16 subnormals (|v| < 2^-126) as zero and sums each pair of
// products in its own order, so the two paths agree to FP32 rounding, not bit for bit.
#pragma once

#include <cstdint>
#include <vector>

namespace seekr {

// A read-only float matrix with any strides: element (r, c) at data[r·row_stride + c·col_stride].
// The GEMMs of a Linear layer read their operands transposed this way instead of copying them.
struct F32Matrix {
  const float* data;
  int rows, cols;
  int64_t row_stride, col_stride;
};

// Weights rounded to bf16 once and packed in tiles of 16 output rows: [ceil(out/16)][ceil(in/2)]
// [16] pairs — a 32-bit pair holds two consecutive inputs of one output row (the even one in
// the low 16 bits), the layout vdpbf16ps multiplies, and the 64 bytes of a tile's pair step are
// contiguous. Zero-padded.
struct Bf16Weights {
  int out = 0, in = 0;
  std::vector<uint32_t> data;
};
Bf16Weights bf16_pack_weights(const float* w, int out, int in);  // w [out, in]
// Packs w (out = w.rows, in = w.cols) into p, reusing p's storage (no allocation once it has
// grown to the size).
void bf16_pack_weights(const F32Matrix& w, Bf16Weights& p);
// w[out, in] = the packed bf16 values as floats.
void bf16_unpack_weights(const Bf16Weights& p, float* w);

// y[N, out] = bf16(x)[N, in] · bf16(w)ᵀ (+ beta·y). Outside a parallel region, products of at
// least a few MFLOP are split over the OpenMP threads (row blocks, or column tiles when rows
// are few); inside one (a worker) they run on the calling thread.
void bf16_matmul_xwt(const float* x, const Bf16Weights& w, float* y, int N, float beta = 0.0f);
// The same with x strided (x.rows = N, x.cols = w.in).
void bf16_matmul_xwt(const F32Matrix& x, const Bf16Weights& w, float* y, float beta = 0.0f);
// The same with float weights, packed on every call (convenient for one-off products).
void bf16_matmul_xwt(const float* x, const float* w, float* y, int N, int in, int out,
                     float beta = 0.0f);

// dst[i] = bf16(src[i]) as a float (round to nearest even, NaN kept quiet); dst may be src.
// Large arrays are split over the OpenMP threads outside a parallel region.
void bf16_round(const float* src, float* dst, int64_t n);

// The implementations behind the dispatch, for tests and benchmarks.
bool cpu_has_avx512bf16();
void bf16_matmul_xwt_avx2(const F32Matrix& x, const Bf16Weights& w, float* y, float beta);
// Only where cpu_has_avx512bf16() (SEEKR_CHECK otherwise).
void bf16_matmul_xwt_avx512(const F32Matrix& x, const Bf16Weights& w, float* y, float beta);

namespace ref {
// y[N, out] = Σ_k bf16(x[n, k])·bf16(w[o, k]) summed in f32 in k order (+ beta·y).
void bf16_matmul_xwt(const float* x, const float* w, float* y, int N, int in, int out, float beta);
}  // namespace ref

}  // namespace seekr
