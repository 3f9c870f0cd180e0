#include "train/optimizer.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/check.h"
#include "core/dtype.h"
#include "core/scratch.h"
#include "core/safetensors.h"
#include "model/weights.h"

namespace seekr {

namespace {
// Work is cut into chunks of at most this many floats so that many small tensors and a few
// large ones spread evenly over the threads.
constexpr size_t kChunk = 1 << 14;
}  // namespace

std::vector<ParamSegment> param_segments(const ModelLayout& layout) {
  std::vector<ParamSegment> out;
  const auto& specs = layout.specs();
  for (size_t i = 0; i < specs.size(); ++i) {
    if (specs[i].kind != TensorKind::kParam) continue;
    out.push_back({specs[i].name, specs[i].shape, layout.offsets()[i],
                   static_cast<size_t>(specs[i].numel()), specs[i].weight_decay});
  }
  return out;
}

AdamW::AdamW(std::vector<ParamSegment> segments, size_t total, const AdamWConfig& config)
    : segments_(std::move(segments)),
      config_(config),
      total_(total) {
  if (config_.bf16_moments) {
    exp_avg_bf16_.assign(total, 0);
    exp_avg_sq_bf16_.assign(total, 0);
  } else {
    exp_avg_.assign(total, 0.0f);
    exp_avg_sq_.assign(total, 0.0f);
  }
  std::vector<std::pair<size_t, size_t>> ranges;
  for (const auto& s : segments_) {
    SEEKR_CHECK(s.offset + s.numel <= total, s.name, " exceeds the block");
    ranges.emplace_back(s.offset, s.offset + s.numel);
  }
  // The step's work list, cut once: a step must not allocate.
  for (const auto& s : segments_)
    for (size_t b = s.offset; b < s.offset + s.numel; b += kChunk)
      chunks_.push_back({b, std::min(b + kChunk, s.offset + s.numel), s.decay});
  std::sort(ranges.begin(), ranges.end());
  for (size_t i = 1; i < ranges.size(); ++i)
    SEEKR_CHECK(ranges[i].first >= ranges[i - 1].second, "overlapping parameter segments");
}

void AdamW::step(float* params, const float* grads, double lr) {
  ++steps_;
  // Scalars as torch computes them: Python doubles, rounded to float when the op applies them.
  const double bc1 = 1.0 - std::pow(config_.beta1, static_cast<double>(steps_));
  const double bc2 = 1.0 - std::pow(config_.beta2, static_cast<double>(steps_));
  const float neg_step_size = static_cast<float>(-(lr / bc1));
  const float bc2_sqrt = static_cast<float>(std::sqrt(bc2));
  const float b1 = static_cast<float>(config_.beta1);
  const float one_minus_b1 = static_cast<float>(1.0 - config_.beta1);
  const float b2 = static_cast<float>(config_.beta2);
  const float one_minus_b2 = static_cast<float>(1.0 - config_.beta2);
  const float eps = static_cast<float>(config_.eps);
  const float decay_mul = static_cast<float>(1.0 - lr * config_.weight_decay);

  const std::vector<Chunk>& work = chunks_;

  // Purely elementwise: the result does not depend on the thread count. The BF16 variant
  // widens, updates in FP32 exactly as above, and rounds the moments back (RNE).
  auto update = [&](size_t i, float mw, float vw, float& mi, float& vi, float mul) {
    const float g = grads[i];
    const float p = params[i] * mul;
    mi = mw * b1 + one_minus_b1 * g;
    vi = vw * b2 + one_minus_b2 * g * g;
    const float denom = std::sqrt(vi) / bc2_sqrt + eps;
    params[i] = p + neg_step_size * (mi / denom);
  };
  if (config_.bf16_moments) {
    uint16_t* m = exp_avg_bf16_.data();
    uint16_t* v = exp_avg_sq_bf16_.data();
#pragma omp parallel for schedule(static)
    for (size_t w = 0; w < work.size(); ++w) {
      const Chunk wk = work[w];
      const float mul = wk.decay ? decay_mul : 1.0f;
      for (size_t i = wk.begin; i < wk.end; ++i) {
        float mi, vi;
        update(i, bf16_to_f32(m[i]), bf16_to_f32(v[i]), mi, vi, mul);
        m[i] = f32_to_bf16(mi);
        v[i] = f32_to_bf16(vi);
      }
    }
    return;
  }
  float* m = exp_avg_.data();
  float* v = exp_avg_sq_.data();
#pragma omp parallel for schedule(static)
  for (size_t w = 0; w < work.size(); ++w) {
    const Chunk wk = work[w];
    const float mul = wk.decay ? decay_mul : 1.0f;
#pragma omp simd
    for (size_t i = wk.begin; i < wk.end; ++i) update(i, m[i], v[i], m[i], v[i], mul);
  }
}

std::vector<float>& AdamW::exp_avg() {
  SEEKR_CHECK(!config_.bf16_moments, "FP32 moments asked of a BF16-moment optimizer");
  return exp_avg_;
}
std::vector<float>& AdamW::exp_avg_sq() {
  SEEKR_CHECK(!config_.bf16_moments, "FP32 moments asked of a BF16-moment optimizer");
  return exp_avg_sq_;
}
const std::vector<float>& AdamW::exp_avg() const {
  return const_cast<AdamW*>(this)->exp_avg();
}
const std::vector<float>& AdamW::exp_avg_sq() const {
  return const_cast<AdamW*>(this)->exp_avg_sq();
}
float AdamW::exp_avg_at(size_t i) const {
  return config_.bf16_moments ? bf16_to_f32(exp_avg_bf16_[i]) : exp_avg_[i];
}
float AdamW::exp_avg_sq_at(size_t i) const {
  return config_.bf16_moments ? bf16_to_f32(exp_avg_sq_bf16_[i]) : exp_avg_sq_[i];
}

void AdamW::add_to(SafetensorsWriter& out) const {
  for (const auto& s : segments_) {
    if (config_.bf16_moments) {
      out.add("exp_avg." + s.name, DType::BF16, s.shape, exp_avg_bf16_.data() + s.offset);
      out.add("exp_avg_sq." + s.name, DType::BF16, s.shape, exp_avg_sq_bf16_.data() + s.offset);
    } else {
      out.add("exp_avg." + s.name, DType::F32, s.shape, exp_avg_.data() + s.offset);
      out.add("exp_avg_sq." + s.name, DType::F32, s.shape, exp_avg_sq_.data() + s.offset);
    }
  }
  out.add("step", DType::I64, {}, &steps_);
}

void AdamW::load(const TensorSource& src) {
  // Either storage loads from either saved type (F32 moments narrow to BF16 with RNE).
  std::vector<float> tmp;
  auto restore = [&](const std::string& name, const ParamSegment& s, std::vector<float>& f32,
                     std::vector<uint16_t>& bf16) {
    const TensorView* t = src.find(name);
    SEEKR_REQUIRE(t, src.path(), ": optimizer state lacks tensor ", name);
    SEEKR_REQUIRE(t->shape == s.shape, src.path(), ": tensor ", name,
                  " has a shape different from the model's");
    if (!config_.bf16_moments) {
      copy_to_f32(*t, f32.data() + s.offset);
      return;
    }
    tmp.resize(s.numel);
    copy_to_f32(*t, tmp.data());
    from_f32(DType::BF16, tmp.data(), bf16.data() + s.offset, s.numel);
  };
  for (const auto& s : segments_) {
    restore("exp_avg." + s.name, s, exp_avg_, exp_avg_bf16_);
    restore("exp_avg_sq." + s.name, s, exp_avg_sq_, exp_avg_sq_bf16_);
  }
  const TensorView* st = src.find("step");
  SEEKR_REQUIRE(st && st->dtype == DType::I64 && st->nbytes == sizeof(int64_t), src.path(),
                ": optimizer state lacks the I64 scalar 'step'");
  std::memcpy(&steps_, st->data, sizeof(int64_t));
  SEEKR_REQUIRE(steps_ >= 0, src.path(), ": negative optimizer step ", steps_);
}

double sum_of_squares(const float* x, size_t n) {
  const size_t chunks = (n + kChunk - 1) / kChunk;
  thread_local std::vector<double> partial_buf;  // grows once; a step must not allocate
  double* partial = grown(partial_buf, chunks);
#pragma omp parallel for schedule(static)
  for (size_t c = 0; c < chunks; ++c) {
    const size_t end = std::min(n, (c + 1) * kChunk);
    double s = 0.0;
#pragma omp simd reduction(+ : s)
    for (size_t i = c * kChunk; i < end; ++i) s += static_cast<double>(x[i]) * x[i];
    partial[c] = s;
  }
  double total = 0.0;
  for (size_t c = 0; c < chunks; ++c) total += partial[c];
  return total;
}

double clip_grad_norm(float* grads, size_t n, double max_norm) {
  const double norm = std::sqrt(sum_of_squares(grads, n));
  if (!std::isfinite(norm)) return norm;
  const double coef = max_norm / (norm + 1e-6);
  if (coef < 1.0) {
    const float c = static_cast<float>(coef);
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; ++i) grads[i] *= c;
  }
  return norm;
}

}  // namespace seekr
