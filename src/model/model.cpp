#include "model/model.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/check.h"
#include "core/rng.h"
#include "core/safetensors.h"
#include "model/convert.h"

namespace seekr {
namespace {
std::string shape_string(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

// The MTP modules' own copies of the embedding and output head, when a checkpoint stores them
// (README_WEIGHTS: they share parameters with the main model): each must equal the main tensor,
// which is the one seekr keeps.
void check_mtp_shared_copies(const TensorSource& src, const ModelConfig& c, const ModelWeights& w) {
  const int64_t n = int64_t{c.vocab_size} * c.hidden_size;
  const std::vector<int64_t> shape{c.vocab_size, c.hidden_size};
  for (int k = 0; k < c.num_nextn_predict_layers; ++k) {
    const std::string p = "model.layers." + std::to_string(c.num_hidden_layers + k);
    struct Copy {
      std::string name;
      const char* main;
      const float* data;
    };
    const Copy copies[] = {
        {p + ".embed_tokens.weight", "model.embed_tokens.weight", w.embed},
        {p + ".shared_head.head.weight",
         c.tie_word_embeddings ? "model.embed_tokens.weight" : "lm_head.weight", w.lm_head}};
    for (const auto& [name, main, mine] : copies) {
      const TensorView* t = src.find(name);
      if (!t) continue;
      SEEKR_REQUIRE(t->shape == shape, src.path(), ": tensor '", name, "' has shape ",
                    shape_string(t->shape), ", the config needs ", shape_string(shape));
      std::vector<float> copy(static_cast<size_t>(n));
      read_tensor_f32(src, *t, copy.data());
      for (int64_t j = 0; j < n; ++j)
        SEEKR_REQUIRE(std::memcmp(&copy[j], &mine[j], sizeof(float)) == 0, src.path(), ": tensor '",
                      name, "' differs from '", main, "' at element ", j, " (", copy[j], " vs ",
                      mine[j], "); the MTP module shares the main model's ",
                      "embedding and output head, and seekr keeps one copy");
    }
  }
}

// The FP32 slot of a weight kept as FP8 is never read. The block was zero-filled (so touched)
// at construction; handing the slot's whole pages back makes the process's resident size what
// inference really uses. Private anonymous pages read back as zeros after MADV_DONTNEED, so the
// block stays valid memory; the partial pages at the slot's ends are kept.
void release_pages(float* p, int64_t n) {
  const auto page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  const uintptr_t begin = (reinterpret_cast<uintptr_t>(p) + page - 1) & ~(page - 1);
  const uintptr_t end = reinterpret_cast<uintptr_t>(p + n) & ~(page - 1);
  if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);
}

// Whether load(..., kKeep) keeps tensor `t` named `name` as FP8 (see model.h for kv_b_proj).
bool keeps_fp8(const std::string& name, const TensorView& t) {
  return t.dtype == DType::F8_E4M3 && is_fp8_linear_name(name) &&
         !name.ends_with(".kv_b_proj.weight");
}
}  // namespace

Model::Model(const ModelConfig& config) : config_(config), layout_(config) {
  params_.assign(layout_.param_count(), 0.0f);
  buffers_.assign(layout_.buffer_count(), 0.0f);
  w_ = layout_.bind(params_.data(), buffers_.data());
}

std::vector<float>& Model::grads() {
  std::call_once(grads_once_, [this] {
    grads_.assign(layout_.param_count(), 0.0f);
    g_ = layout_.bind(grads_.data(), nullptr);
  });
  return grads_;
}

const ModelWeights& Model::g() {
  grads();
  return g_;
}

void Model::init_weights(uint64_t seed) {
  Rng rng(seed);
  const auto& specs = layout_.specs();
  for (size_t i = 0; i < specs.size(); ++i) {
    const TensorSpec& s = specs[i];
    float* p =
        (s.kind == TensorKind::kParam ? params_.data() : buffers_.data()) + layout_.offsets()[i];
    const int64_t n = s.numel();
    switch (s.init) {
      case TensorInit::kNormal:
        for (int64_t j = 0; j < n; ++j)
          p[j] = static_cast<float>(rng.normal() * config_.initializer_range);
        break;
      case TensorInit::kOnes:
        std::fill(p, p + n, 1.0f);
        break;
      case TensorInit::kZeros:
        std::fill(p, p + n, 0.0f);
        break;
    }
  }
}

void Model::zero_grads() {
  std::fill(grads().begin(), grads().end(), 0.0f);
}

void Model::load(const TensorSource& src, bool allow_missing_mtp) {
  load(src, allow_missing_mtp, Fp8WeightMode::kDequantize);
}

void Model::load(const TensorSource& src, bool allow_missing_mtp, Fp8WeightMode fp8) {
  check_checkpoint_quantization(src);
  fp8_.reset();
  const auto& specs = layout_.specs();
  for (size_t i = 0; i < specs.size(); ++i) {
    const TensorSpec& s = specs[i];
    const TensorView* t = src.find(s.name);
    if (!t) {
      bool is_mtp = false;
      for (int k = 0; k < config_.num_nextn_predict_layers; ++k)
        if (s.name.rfind("model.layers." + std::to_string(config_.num_hidden_layers + k) + ".",
                         0) == 0)
          is_mtp = true;
      SEEKR_REQUIRE(allow_missing_mtp && is_mtp, src.path(), ": missing tensor '", s.name, "'");
      continue;
    }
    SEEKR_REQUIRE(t->shape == s.shape, src.path(), ": tensor '", s.name, "' has shape ",
                  shape_string(t->shape), ", the config needs ", shape_string(s.shape));
    float* p =
        (s.kind == TensorKind::kParam ? params_.data() : buffers_.data()) + layout_.offsets()[i];
    if (fp8 == Fp8WeightMode::kKeep && keeps_fp8(s.name, *t)) {
      // Own copies of the codes: the source's mapping is closed after loading.
      const Fp8Weight q = fp8_weight(src, *t);
      Fp8Matrix m{std::vector<uint8_t>(q.codes, q.codes + size_t(q.rows) * q.cols), q.scale_inv,
                  q.rows, q.cols};
      if (!fp8_) fp8_ = std::make_unique<Fp8LinearWeights>();
      fp8_->add(p, std::move(m));
      std::fill(p, p + s.numel(), 0.0f);  // no stale values from an earlier load
      release_pages(p, s.numel());
      continue;
    }
    read_tensor_f32(src, *t, p);
  }
  check_mtp_shared_copies(src, config_, w_);
}

void Model::add_to(SafetensorsWriter& out) const {
  SEEKR_REQUIRE(!fp8_,
                "cannot save a model whose FP8 weights were kept as codes for inference "
                "(their FP32 slots are empty); load it with the FP8 weights dequantised");
  const auto& specs = layout_.specs();
  for (size_t i = 0; i < specs.size(); ++i) {
    const TensorSpec& s = specs[i];
    const float* p =
        (s.kind == TensorKind::kParam ? params_.data() : buffers_.data()) + layout_.offsets()[i];
    out.add(s.name, DType::F32, s.shape, p);
  }
}

void Model::update_correction_bias(const std::vector<std::vector<int64_t>>& load, float gamma) {
  if (!config_.has_correction_bias() || gamma == 0.0f) return;
  SEEKR_CHECK(load.size() == w_.layers.size());
  for (size_t l = 0; l < w_.layers.size(); ++l) {
    float* bias = w_.layers[l].correction_bias;
    if (!bias) continue;
    const auto& ld = load[l];
    if (ld.empty()) continue;  // layer not run this step (e.g. MTP modules switched off)
    SEEKR_CHECK(static_cast<int>(ld.size()) == config_.n_routed_experts);
    double mean = 0;
    for (auto c : ld) mean += static_cast<double>(c);
    mean /= static_cast<double>(ld.size());
    for (size_t e = 0; e < ld.size(); ++e) {
      const double diff = static_cast<double>(ld[e]) - mean;
      bias[e] -= gamma * static_cast<float>((diff > 0) - (diff < 0));
    }
  }
}

}  // namespace seekr
