#include "kernels/linear.h"

#include <cstring>
#include <vector>

#include "core/check.h"
#include "core/dtype.h"
#include "core/scratch.h"
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
    for (size_t i = 0; i < n; ++i) dst[i] = bf16_to_f32(f32_to_bf16(src[i]));
  } else {
    std::memcpy(dst, src, n * sizeof(float));
    fp8_fake_quant(dst, rows, cols, tiling);
  }
  return dst;
}

}  // namespace

void linear_forward(GemmPrecision p, const float* x, const float* w, float* y, int N, int in,
                    int out, float beta) {
  if (p == GemmPrecision::kF32) return matmul_xwt(x, w, y, N, in, out, beta);
  Operands& s = scratch();
  x = operand(p, s.a, x, N, in, Fp8Tiling::k1x128);      // [N, in]
  w = operand(p, s.b, w, out, in, Fp8Tiling::k128x128);  // [out, in]
  matmul_xwt(x, w, y, N, in, out, beta);
}

void linear_dgrad(GemmPrecision p, const float* dy, const float* w, float* dx, int N, int in,
                  int out, float beta) {
  if (p == GemmPrecision::kF32) return matmul_dy_w(dy, w, dx, N, in, out, beta);
  Operands& s = scratch();
  dy = operand(p, s.a, dy, N, out, Fp8Tiling::k1x128);   // [N, out]: K = out
  w = operand(p, s.b, w, out, in, Fp8Tiling::k128x128);  // [out, in]
  matmul_dy_w(dy, w, dx, N, in, out, beta);
}

void linear_wgrad(GemmPrecision p, const float* dy, const float* x, float* dw, int N, int in,
                  int out) {
  if (p == GemmPrecision::kF32) return matmul_dyt_x(dy, x, dw, N, in, out);
  Operands& s = scratch();
  // K is the token dimension here, so FP8 tiles both operands 128×1 along it.
  dy = operand(p, s.a, dy, N, out, Fp8Tiling::k128x1);  // [N, out]
  x = operand(p, s.b, x, N, in, Fp8Tiling::k128x1);     // [N, in]
  matmul_dyt_x(dy, x, dw, N, in, out);
}

}  // namespace seekr
