// AdamW over the model's flat parameter block, and global-norm gradient clipping.
//
// The moments live in flat blocks with the same layout as the parameters, so a tensor's moments
// sit at the tensor's offset and save under the tensor's HF name (exp_avg.<name>,
// exp_avg_sq.<name>). The update follows torch.optim.AdamW (single-tensor path of torch 1.13)
// operation for operation, in float32, with bias corrections in double as Python computes them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace seekr {

class ModelLayout;
class SafetensorsWriter;
class TensorSource;

struct AdamWConfig {
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
  double weight_decay = 0.1;  // decoupled; applied only to segments with decay = true
  // Keep both moments in BF16 (rounded to nearest even after every update, as the V3 recipe
  // stores them); the update itself still runs in FP32. Saved as BF16 tensors.
  bool bf16_moments = false;
};

// One trainable tensor inside the flat block.
struct ParamSegment {
  std::string name;
  std::vector<int64_t> shape;
  size_t offset = 0;
  size_t numel = 0;
  bool decay = false;
};

// The trainable tensors of a model layout (buffers excluded), with their weight-decay flags.
std::vector<ParamSegment> param_segments(const ModelLayout& layout);

class AdamW {
 public:
  // `segments` must lie inside [0, total) without overlapping (checked); `total` is the block
  // size. Elements outside every segment (alignment padding) are never touched.
  AdamW(std::vector<ParamSegment> segments, size_t total, const AdamWConfig& config);

  // One update of params[total] from grads[total] at learning rate lr; increments steps().
  void step(float* params, const float* grads, double lr);

  int64_t steps() const { return steps_; }
  const AdamWConfig& config() const { return config_; }
  const std::vector<ParamSegment>& segments() const { return segments_; }
  size_t total() const { return total_; }
  // The FP32 moment blocks; only with bf16_moments off (checked).
  std::vector<float>& exp_avg();
  std::vector<float>& exp_avg_sq();
  const std::vector<float>& exp_avg() const;
  const std::vector<float>& exp_avg_sq() const;
  // Moment i as a float, whichever the storage.
  float exp_avg_at(size_t i) const;
  float exp_avg_sq_at(size_t i) const;

  // Adds exp_avg.<name> and exp_avg_sq.<name> (F32) for every segment and `step` (I64 scalar).
  // The optimizer must outlive out's write.
  void add_to(SafetensorsWriter& out) const;
  // Restores moments and step; throws seekr::Error naming a missing or mis-shaped tensor.
  void load(const TensorSource& src);

 private:
  std::vector<ParamSegment> segments_;
  AdamWConfig config_;
  size_t total_ = 0;
  struct Chunk {  // a stretch of one segment: [begin, end), weight decay or not
    size_t begin, end;
    bool decay;
  };
  std::vector<Chunk> chunks_;
  std::vector<float> exp_avg_, exp_avg_sq_;                 // FP32 moments, or empty
  std::vector<uint16_t> exp_avg_bf16_, exp_avg_sq_bf16_;    // BF16 moments, or empty
  int64_t steps_ = 0;
};

// Sum of squares of x[n] in double, reduced in a fixed order so the result does not depend on
// the number of threads.
double sum_of_squares(const float* x, size_t n);

// torch.nn.utils.clip_grad_norm_ with the 2-norm over one flat block: norm = ||g||₂,
// coef = max_norm / (norm + 1e-6) clamped to at most 1, g *= coef. Returns the norm before
// clipping (a non-finite norm leaves g untouched; the caller decides what to do).
double clip_grad_norm(float* grads, size_t n, double max_norm);

}  // namespace seekr
