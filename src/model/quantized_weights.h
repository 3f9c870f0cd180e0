// FP8 Linear weights kept for inference as DeepSeek's release stores them (E4M3 codes and
// 128×128 block scale_inv), and the products that read them. This is weight-only FP8: the
// activations stay FP32, as with the official inference code's default gemm_impl "bf16", which
// dequantises each weight and runs an ordinary GEMM. Here the FP32 weight is never materialised
// whole, so resident weight memory is about a quarter of FP32. Format: docs/checkpoint-format.md.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace seekr {

// What a loader does with a checkpoint's F8_E4M3 Linear weights.
enum class Fp8WeightMode {
  kDequantize,  // to FP32 in Model::params() at load (training and every other consumer)
  kKeep,        // stay codes + scales (Fp8Matrix); InferenceSession dequantises on the fly
};
// "dequantize" | "keep"; anything else throws seekr::Error naming the value.
Fp8WeightMode parse_fp8_weight_mode(std::string_view s);
const char* fp8_weight_mode_name(Fp8WeightMode m);

// One Linear weight w [rows, cols] (HF [out, in]):
//   w[r, c] = e4m3(codes[r, c]) · scale_inv[r / 128, c / 128], one f32 rounding, as weight_dequant.
struct Fp8Matrix {
  std::vector<uint8_t> codes;    // [rows, cols]
  std::vector<float> scale_inv;  // [ceil(rows/128), ceil(cols/128)]
  int rows = 0, cols = 0;
  size_t bytes() const { return codes.size() + scale_inv.size() * sizeof(float); }
};

// y[n, w.rows] (=|+=) x[n, w.cols] · wᵀ with rows of x and y at strides ldx and ldy (beta 0
// overwrites, else y = product + beta·y). Every product term is the dequantised weight (exactly
// fp8_dequantize's value) times the FP32 activation, so this differs from matmul_xwt on the
// dequantised weight only in summation order.
//   n <= 3 (decode, MTP verify): each weight row is decoded in registers and FMA'd with all n
//     activation rows; each output is computed by the same operations whatever n is, so a
//     2-token verify pass equals two 1-token steps bit for bit.
//   n > 3 (prefill): 128-row blocks of w are dequantised into a per-thread panel and sgemm'd.
void fp8_linear(const float* x, int ldx, const Fp8Matrix& w, float* y, int ldy, int n,
                float beta = 0.0f);

// The fast decode path's forms (InferenceSession, as gemv_xwt and gemv_swiglu in
// kernels/gemv.h for FP32 weights): output rows [j0, j1) only, on the calling thread, for
// n <= 3 rows of x. Each output is computed exactly as fp8_linear computes it for those n rows,
// whatever the range, so threads can share the rows and a verify pass equals 1-row steps.
void fp8_gemv_rows(const float* x, int ldx, const Fp8Matrix& w, int j0, int j1, float* y, int ldy,
                   int n, float beta = 0.0f);
// a[i, j] = silu(x[i]·gate[j]) · (x[i]·up[j]) for j in [j0, j1), gate and up of one shape.
void fp8_gemv_swiglu(const float* x, int ldx, const Fp8Matrix& gate, const Fp8Matrix& up, int j0,
                     int j1, float* a, int lda, int n);

// The FP8-kept Linear weights of a model, keyed by the FP32 slot of Model::w() each one stands
// in for, so inference code finds a weight's FP8 form from the pointer it already holds.
class Fp8LinearWeights {
 public:
  void add(const float* slot, Fp8Matrix m);
  const Fp8Matrix* find(const float* slot) const;  // nullptr: that weight is FP32
  size_t size() const { return map_.size(); }
  size_t bytes() const { return bytes_; }          // codes + scales, all weights
  size_t f32_bytes() const { return f32_bytes_; }  // the same weights as FP32

 private:
  std::unordered_map<const float*, Fp8Matrix> map_;
  size_t bytes_ = 0, f32_bytes_ = 0;
};

}  // namespace seekr
