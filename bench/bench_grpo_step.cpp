// One GRPO step of the R1 pipeline at its real shapes, timed in its two halves:
//   rollout: generate() of 16 prompts x 8 samples (shared prefill, batched decode of all 128
//            sequences in one InferenceSession), 25-token prompts, 60 new tokens, no stop tokens;
//   update:  TrainGraph forward + loss gradient + backward on [128, 85], in micro-batches.
// The model is the pipeline's teacher (src/r1/pipeline.cpp kTeacherConfig) with random weights.
//
//   ./bench/bench_grpo_step [repeats=5] [micro_batch=32]
//
// Prints the median over `repeats` at 1 and 2 threads (OpenMP and OpenBLAS set alike). The
// machine is shared: read the printed load average before trusting a number.
#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "bench_util.h"
#include "core/rng.h"
#include "kernels/ops.h"
#include "model/model.h"
#include "r1/pipeline.h"
#include "serve/generate.h"

namespace seekr {
namespace {

using bench_util::Clock;
using bench_util::load_average;
using bench_util::median;
using bench_util::ms_since;

// The R1 pipeline's teacher (src/r1/pipeline.cpp).
const char* const kTeacherConfig = r1::r1_teacher_config_json();


constexpr int kPrompts = 16, kSamples = 8, kPromptLen = 25, kNewTokens = 60;
constexpr int kSequences = kPrompts * kSamples, kUpdateT = 85;

struct Result {
  double rollout_ms, update_fwd_ms, update_bwd_ms;
  uint64_t token_checksum;  // sum of sampled token ids: same seeds and numerics give the same
  double grad_norm;
};

Result run_once(Model& model, InferenceSession& session, TrainGraph& graph, int micro_batch,
                uint64_t seed) {
  const int V = model.config().vocab_size;
  Rng rng(seed);
  std::vector<GenerationRequest> requests(kPrompts);
  for (int i = 0; i < kPrompts; ++i) {
    GenerationRequest& r = requests[i];
    r.prompt.resize(kPromptLen);
    for (auto& t : r.prompt) t = static_cast<int32_t>(rng.next_u64() % V);
    r.max_new_tokens = kNewTokens;
    r.sampling.temperature = 1.0f;
    r.seed = seed * 1000 + i;
    r.n = kSamples;
  }
  Result res{};
  auto t0 = Clock::now();
  const GenerationOutput out = generate(model, session, requests);
  res.rollout_ms = ms_since(t0);

  // Update batch: prompt ++ completion, truncated/padded to kUpdateT.
  std::vector<int32_t> tokens(size_t(kSequences) * kUpdateT, 0);  // [S, T]
  std::vector<int32_t> targets(tokens.size(), -1);                // [S, T]
  for (int s = 0; s < kSequences; ++s) {
    const GenerationResult& g = out.results[s];
    for (int t : g.tokens) res.token_checksum += t;
    std::vector<int32_t> seq = requests[g.request].prompt;
    seq.insert(seq.end(), g.tokens.begin(), g.tokens.end());
    for (int t = 0; t < kUpdateT && t < int(seq.size()); ++t) {
      tokens[size_t(s) * kUpdateT + t] = seq[t];
      if (t + 1 < int(seq.size()) && t + 1 >= kPromptLen)
        targets[size_t(s) * kUpdateT + t] = seq[t + 1];
    }
  }
  model.zero_grads();
  TrainOptions opt;
  opt.mtp = false;
  for (int b0 = 0; b0 < kSequences; b0 += micro_batch) {
    const int B = std::min(micro_batch, kSequences - b0), N = B * kUpdateT;
    t0 = Clock::now();
    graph.forward(tokens.data() + size_t(b0) * kUpdateT, B, kUpdateT, opt);
    // The GRPO loss's cost at the logits is close to cross-entropy's: one softmax per row.
    cross_entropy_forward_backward(graph.logits(), targets.data() + size_t(b0) * kUpdateT,
                                   graph.logits(), N, V, 1.0f / (kSequences * kUpdateT));
    res.update_fwd_ms += ms_since(t0);
    t0 = Clock::now();
    graph.backward(graph.logits(), {});
    res.update_bwd_ms += ms_since(t0);
  }
  double sq = 0;
  for (float g : model.grads()) sq += double(g) * g;
  res.grad_norm = std::sqrt(sq);
  return res;
}

void bench(int threads, int repeats, int micro_batch) {
  omp_set_num_threads(threads);
  openblas_set_num_threads(threads);
  Model model(ModelConfig::from_json_text(kTeacherConfig, "bench teacher config"));
  model.init_weights(7);
  InferenceSession session(model, kSequences, kPromptLen + kNewTokens + 16);
  TrainGraph graph(model);
  run_once(model, session, graph, micro_batch, 1);  // warm-up: buffers reach their sizes
  std::vector<double> roll, fwd, bwd, total;
  Result last{};
  const double load_before = load_average();
  for (int r = 0; r < repeats; ++r) {
    last = run_once(model, session, graph, micro_batch, 2 + r);
    roll.push_back(last.rollout_ms);
    fwd.push_back(last.update_fwd_ms);
    bwd.push_back(last.update_bwd_ms);
    total.push_back(last.rollout_ms + last.update_fwd_ms + last.update_bwd_ms);
  }
  const double gen_tokens = double(kSequences) * kNewTokens;
  const double upd_tokens = double(kSequences) * kUpdateT;
  const double r = median(roll), f = median(fwd), b = median(bwd);
  std::printf(
      "threads %d  micro %3d | rollout %7.1f ms (%6.0f tok/s) | update %7.1f ms (fwd %6.1f + "
      "bwd %6.1f; %6.0f tok/s) | step %7.1f ms | load %.2f->%.2f | check %llu %.6g\n",
      threads, micro_batch, r, gen_tokens / r * 1e3, f + b, f, b, upd_tokens / (f + b) * 1e3,
      median(total), load_before, load_average(),
      static_cast<unsigned long long>(last.token_checksum), last.grad_norm);
  std::fflush(stdout);
}

}  // namespace
}  // namespace seekr

int main(int argc, char** argv) {
  const int repeats = argc > 1 ? std::atoi(argv[1]) : 5;
  const int micro_batch = argc > 2 ? std::atoi(argv[2]) : 32;
  const int max_threads = argc > 3 ? std::atoi(argv[3]) : 2;
  for (int threads = 1; threads <= max_threads; ++threads)
    seekr::bench(threads, std::max(repeats, 1), std::max(micro_batch, 1));
  return 0;
}
