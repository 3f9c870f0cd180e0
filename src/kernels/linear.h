// The three GEMMs of a Linear layer (forward, input gradient, weight gradient) at a chosen
// precision, for mixed-precision training as DeepSeek-V3 does it (§3.3):
// - kF32: plain FP32 products (matmul_xwt / matmul_dy_w / matmul_dyt_x).
// - kBF16: both operands rounded to BF16 (RNE), products accumulated in FP32 (see Bf16Gemm).
// - kFP8: both operands quantised to E4M3 with fine-grained scales, FP32 accumulation:
//     forward  y  = x·Wᵀ    x in 1×128 tiles along `in`,  W in 128×128 blocks;
//     dgrad    dx = dy·W    dy in 1×128 tiles along `out`, W in 128×128 blocks;
//     wgrad    dW += dyᵀ·x  dy and x in 128×1 tiles along the token dimension N (the GEMM's K).
// Quantised operands are exact FP8 values times their FP32 scales, so a product of the
// dequantised operands accumulated in FP32 is the FP8 GEMM with FP32 accumulation; this CPU
// has no FP8 arithmetic, so that is how it runs (fp8_gemm in fp8.h is the blockwise-promoted
// form, tested equal to this). Scratch buffers are per thread and only grow.
#pragma once

#include <string_view>

namespace seekr {

enum class GemmPrecision { kF32, kBF16, kFP8 };

const char* precision_name(GemmPrecision p);  // "fp32", "bf16", "fp8"
// Inverse of precision_name; throws seekr::Error naming the bad value.
GemmPrecision parse_precision(std::string_view name);

// How BF16 products run: on the bf16 kernel (kernels/bf16.h: vdpbf16ps where the CPU has
// AVX-512 BF16, else the AVX2 kernel), or as sgemm on operands rounded to bf16 — the same
// products, summed in another order. The default is the kernel only on AVX-512 BF16 CPUs:
// elsewhere the AVX2 bf16 kernel, which widens every weight to FP32, is no faster than
// OpenBLAS's sgemm (bench_kernels BM_Bf16Gemm at 2048×768×256, one AVX2 core: 68 against 73
// GFLOP/s; tiny's training step at 2 threads: 1,157–1,289 against 1,387–1,515 tok/s).
// SEEKR_BF16_GEMM=kernel|sgemm in the environment overrides the default (read at first use).
enum class Bf16Gemm { kKernel, kSgemm };
Bf16Gemm bf16_gemm();
void set_bf16_gemm(Bf16Gemm g);  // for tests and benchmarks

// y[N, out] (+)= x[N, in] · w[out, in]ᵀ   (beta 0 overwrites, 1 accumulates)
void linear_forward(GemmPrecision p, const float* x, const float* w, float* y, int N, int in,
                    int out, float beta = 0.0f);
// dx[N, in] (+)= dy[N, out] · w[out, in]  (beta 0 overwrites, 1 accumulates)
void linear_dgrad(GemmPrecision p, const float* dy, const float* w, float* dx, int N, int in,
                  int out, float beta = 0.0f);
// dw[out, in] += dy[N, out]ᵀ · x[N, in]
void linear_wgrad(GemmPrecision p, const float* dy, const float* x, float* dw, int N, int in,
                  int out);

}  // namespace seekr
