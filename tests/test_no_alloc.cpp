// Steady-state loops must not allocate: once a training step's shapes have been seen, another
// step of the same shapes makes no heap allocation through operator new (std::vector and the
// like), nor does a decode step of an inference session. This binary replaces the global
// operator new to count them.
#include <execinfo.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <new>
#include <vector>

#include "core/rng.h"
#include "kernels/linear.h"
#include "model/model.h"
#include "train/pretrain.h"

namespace {
std::atomic<long> g_allocations{0};
// SEEKR_ALLOC_BACKTRACE=1 prints the call stack of every counted allocation while armed, to
// find the one a failure reports.
std::atomic<bool> g_armed{false};
thread_local bool t_in_trace = false;
}  // namespace

void* operator new(std::size_t n) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (g_armed.load(std::memory_order_relaxed) && !t_in_trace &&
      std::getenv("SEEKR_ALLOC_BACKTRACE")) {
    t_in_trace = true;
    void* frames[12];
    const int depth = backtrace(frames, 12);
    std::fprintf(stderr, "-- allocation of %zu bytes\n", n);
    backtrace_symbols_fd(frames, depth, 2);
    t_in_trace = false;
  }
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t n) {
  return operator new(n);
}
// GCC pairs operator new with free() in its -Wmismatched-new-delete check; both are ours here.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
void operator delete(void* p) noexcept {
  std::free(p);
}
void operator delete[](void* p) noexcept {
  std::free(p);
}
void operator delete(void* p, std::size_t) noexcept {
  std::free(p);
}
void operator delete[](void* p, std::size_t) noexcept {
  std::free(p);
}
#pragma GCC diagnostic pop

namespace seekr {
namespace {

ModelConfig tiny_config() {
  return ModelConfig::from_file(std::string(SEEKR_SHARED_DIR) + "/bench-configs/tiny.json");
}

std::vector<int32_t> random_tokens(size_t n, int V, uint64_t seed) {
  Rng rng(seed);
  std::vector<int32_t> t(n);
  for (auto& x : t) x = static_cast<int32_t>(rng.next_u64() % V);
  return t;
}

std::vector<float> mtp_logits_all(int V, int rows) {
  return std::vector<float>(size_t(V) * rows);
}

class NoAlloc : public ::testing::TestWithParam<GemmPrecision> {};

TEST_P(NoAlloc, TrainingStepAfterWarmUp) {
  const ModelConfig c = tiny_config();
  Model model(c);
  model.init_weights(1);
  TrainHyper hp;
  hp.precision = GetParam();
  // BF16 on the bf16 kernel (its packing buffers), whatever this CPU's default.
  const Bf16Gemm saved = bf16_gemm();
  set_bf16_gemm(Bf16Gemm::kKernel);
  Trainer trainer(model, hp);
  const int B = 2, T = 32;
  auto tokens = random_tokens(size_t(B) * (T + 1), c.vocab_size, 3);
  const int32_t* micro[1] = {tokens.data()};
  StepResult r;
  for (int s = 0; s < 2; ++s) trainer.step(micro, B, T, 1e-3, r);    // warm-up: buffers grow
  const auto other = random_tokens(tokens.size(), c.vocab_size, 4);  // other routing
  std::copy(other.begin(), other.end(), tokens.begin());             // same buffer
  const long before = g_allocations.load();
  g_armed = true;
  trainer.step(micro, B, T, 1e-3, r);
  g_armed = false;
  set_bf16_gemm(saved);
  EXPECT_EQ(g_allocations.load() - before, 0) << "allocations in a steady-state training step";
  EXPECT_TRUE(std::isfinite(r.loss));
}

TEST(NoAllocDecode, DecodeStepAfterWarmUp) {
  const ModelConfig c = tiny_config();
  Model model(c);
  model.init_weights(1);
  InferenceSession session(model, 1, 64);
  const int V = c.vocab_size, d = c.hidden_size;
  const auto prompt = random_tokens(8, V, 5);
  std::vector<int32_t> slots(8, 0), pos(8);
  for (int i = 0; i < 8; ++i) pos[i] = i;
  std::vector<float> logits(size_t(8) * V), hidden(size_t(8) * d), mtp_logits(V);
  session.forward(prompt.data(), slots.data(), pos.data(), 8, logits.data(), nullptr,
                  hidden.data());
  // MTP row p joins the hidden state at p with the token at p + 1: rows 0..6 of the prompt.
  session.mtp_forward(hidden.data(), prompt.data() + 1, slots.data(), pos.data(), 7,
                      mtp_logits_all(V, 7).data());
  std::vector<float> prev(hidden.begin() + 7 * d, hidden.begin() + 8 * d);  // hidden at 7
  // One decode step, as speculative decoding makes it: the main model on the token at p,
  // and the MTP module's row p - 1 (the previous hidden state with this token).
  auto step = [&](int32_t token, int32_t p) {
    const int32_t slot = 0, row = p - 1;
    session.mtp_forward(prev.data(), &token, &slot, &row, 1, mtp_logits.data());
    session.forward(&token, &slot, &p, 1, logits.data(), nullptr, prev.data());
  };
  for (int i = 8; i < 12; ++i) step(prompt[i % 8], i);  // warm-up
  const long before = g_allocations.load();
  g_armed = true;
  for (int i = 12; i < 16; ++i) step(prompt[i % 8], i);
  g_armed = false;
  EXPECT_EQ(g_allocations.load() - before, 0) << "allocations in steady-state decode steps";
}

INSTANTIATE_TEST_SUITE_P(Precisions, NoAlloc,
                         ::testing::Values(GemmPrecision::kF32, GemmPrecision::kBF16,
                                           GemmPrecision::kFP8),
                         [](const auto& info) { return std::string(precision_name(info.param)); });

}  // namespace
}  // namespace seekr
