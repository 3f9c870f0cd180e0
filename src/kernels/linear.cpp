#include "kernels/linear.h"

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "core/check.h"
#include "core/scratch.h"
#include "kernels/bf16.h"
#include "kernels/fp8.h"
#include "kernels/ops.h"

namespace seekr {

const char* precision_name(GemmPrecision p) {
  switch (p) {
    case GemmPrecision::kF32:
      return "fp32";
    case GemmPrecision::kBF16:
      return "bf16";
    case GemmPrecision::kFP8:
      return "fp8";
  }
  return "?";
}

GemmPrecision parse_precision(std::string_view name) {
  for (GemmPrecision p : {GemmPrecision::kF32, GemmPrecision::kBF16, GemmPrecision::kFP8})
    if (name == precision_name(p)) return p;
  throw Error("unknown precision '" + std::string(name) + "' (expected fp32, bf16 or fp8)");
}

namespace {

// Per-thread operand copies: workers run Linear layers concurrently, and a step reuses them.
struct Operands {
  std::vector<float> a, b;
  Bf16Weights packed;  // the bf16 kernel's packed right-hand operand
};
Operands& scratch() {
  thread_local Operands ops;
  return ops;
}

// The operand [rows, cols] as the precision defines it, in buf: BF16 rounds every element to
// the nearest BF16 value (ties to even); FP8 gives the E4M3 values times their scales for the
// tiling.
const float* operand(GemmPrecision p, std::vector<float>& buf, const float* src, int rows, int cols,
                     Fp8Tiling tiling) {
  const size_t n = size_t(rows) * cols;
  float* dst = grown(buf, n);
  if (p == GemmPrecision::kBF16) {
    bf16_round(src, dst, int64_t(n));
  } else {
    std::memcpy(dst, src, n * sizeof(float));
    fp8_fake_quant(dst, rows, cols, tiling);
  }
  return dst;
}

std::atomic<int> bf16_gemm_choice{-1};  // a Bf16Gemm, or -1 before the first use

}  // namespace

Bf16Gemm bf16_gemm() {
  int c = bf16_gemm_choice.load(std::memory_order_relaxed);
  if (c < 0) {
    Bf16Gemm g = cpu_has_avx512bf16() ? Bf16Gemm::kKernel : Bf16Gemm::kSgemm;
    if (const char* env = std::getenv("SEEKR_BF16_GEMM"); env != nullptr && *env != '\0') {
      const std::string_view v(env);
      if (v == "kernel")
        g = Bf16Gemm::kKernel;
      else if (v == "sgemm")
        g = Bf16Gemm::kSgemm;
      else
        throw Error("SEEKR_BF16_GEMM='" + std::string(v) + "' (expected kernel or sgemm)");
    }
    c = int(g);
    bf16_gemm_choice.store(c, std::memory_order_relaxed);
  }
  return Bf16Gemm(c);
}

void set_bf16_gemm(Bf16Gemm g) {
  bf16_gemm_choice.store(int(g), std::memory_order_relaxed);
}

void linear_forward(GemmPrecision p, const float* x, const float* w, float* y, int N, int in,
                    int out, float beta) {
  if (p == GemmPrecision::kF32) return matmul_xwt(x, w, y, N, in, out, beta);
  if (p == GemmPrecision::kBF16 && bf16_gemm() == Bf16Gemm::kKernel) {
    Bf16Weights& wp = scratch().packed;
    bf16_pack_weights(F32Matrix{w, out, in, in, 1}, wp);  // [out, in]
    return bf16_matmul_xwt(F32Matrix{x, N, in, in, 1}, wp, y, beta);
  }
  Operands& s = scratch();
  x = operand(p, s.a, x, N, in, Fp8Tiling::k1x128);      // [N, in]
  w = operand(p, s.b, w, out, in, Fp8Tiling::k128x128);  // [out, in]
  matmul_xwt(x, w, y, N, in, out, beta);
}

void linear_dgrad(GemmPrecision p, const float* dy, const float* w, float* dx, int N, int in,
                  int out, float beta) {
  if (p == GemmPrecision::kF32) return matmul_dy_w(dy, w, dx, N, in, out, beta);
  if (p == GemmPrecision::kBF16 && bf16_gemm() == Bf16Gemm::kKernel) {
    Bf16Weights& wp = scratch().packed;
    bf16_pack_weights(F32Matrix{w, in, out, 1, in}, wp);  // wᵀ [in, out]
    return bf16_matmul_xwt(F32Matrix{dy, N, out, out, 1}, wp, dx, beta);
  }
  Operands& s = scratch();
  dy = operand(p, s.a, dy, N, out, Fp8Tiling::k1x128);   // [N, out]: K = out
  w = operand(p, s.b, w, out, in, Fp8Tiling::k128x128);  // [out, in]
  matmul_dy_w(dy, w, dx, N, in, out, beta);
}

void linear_wgrad(GemmPrecision p, const float* dy, const float* x, float* dw, int N, int in,
                  int out) {
  if (p == GemmPrecision::kF32) return matmul_dyt_x(dy, x, dw, N, in, out);
  if (p == GemmPrecision::kBF16 && bf16_gemm() == Bf16Gemm::kKernel) {
    Bf16Weights& xp = scratch().packed;
    bf16_pack_weights(F32Matrix{x, in, N, 1, in}, xp);                    // xᵀ [in, N]
    return bf16_matmul_xwt(F32Matrix{dy, out, N, 1, out}, xp, dw, 1.0f);  // dyᵀ [out, N]
  }
  Operands& s = scratch();
  // K is the token dimension here, so FP8 tiles both operands 128×1 along it.
  dy = operand(p, s.a, dy, N, out, Fp8Tiling::k128x1);  // [N, out]
  x = operand(p, s.b, x, N, in, Fp8Tiling::k128x1);     // [N, in]
  matmul_dyt_x(dy, x, dw, N, in, out);
}

}  // namespace seekr
