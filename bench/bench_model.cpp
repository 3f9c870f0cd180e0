// Whole-model throughput of seekr on one config, for bench/compare.py (which runs the peers
// beside it). Prints one JSON object per line:
//   {"mode":"peak", ...}       sgemm GFLOP/s and in-process read bandwidth at --threads
//   {"mode":"train", ...}      optimizer steps on random tokens: tok/s (median), MFU
//   {"mode":"decode", ...}     batch-1 prefill and greedy decode tok/s (medians), GB/s touched
//   {"mode":"save", ...}       writes the random model to --out DIR (config.json,
//                              model.safetensors) and the decode prompt and its greedy tokens
//                              to DIR/greedy.json, for the peers to load and check against
//
//   bench_model --config C.json [--modes peak,train,decode] [--threads N] [--batch B]
//               [--seq T] [--steps S] [--warmup W] [--precision fp32|bf16|fp8]
//               [--prompt P] [--tokens N] [--repeat R]
//   bench_model --model DIR [--fp8-weights keep|dequantize] --modes decode ...
//
// Weights are random (seed 1): throughput does not depend on them, except through routing,
// which random weights spread about evenly. With --model, decode runs on that checkpoint
// directory instead (config.json + safetensors; an FP8 one keeps its Linear weights FP8 unless
// --fp8-weights dequantize), e.g. one `seekr convert --dtype fp8` made of a saved model.
#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "bench_util.h"
#include "core/check.h"
#include "core/file_io.h"
#include "core/rng.h"
#include "core/safetensors.h"
#include "model/model.h"
#include "serve/generate.h"
#include "train/metrics.h"
#include "train/pretrain.h"

namespace seekr {
namespace {

using bench_util::Clock;
using bench_util::load_average;
using bench_util::median;
using bench_util::seconds_since;

struct Options {
  std::string config;
  std::string modes = "peak,train,decode";
  int threads = 1, batch = 8, seq = 256, steps = 5, warmup = 2;
  int prompt = 256, tokens = 128, repeat = 5;
  GemmPrecision precision = GemmPrecision::kF32;
  std::string out;
  std::string model;  // checkpoint directory for decode (default: random weights)
  Fp8WeightMode fp8_weights = Fp8WeightMode::kKeep;
};

// Read bandwidth of a buffer far larger than the caches: the best of a few full passes.
double read_bandwidth_gbs(int threads) {
  const size_t n = size_t(1) << 27;  // 512 MiB of floats
  std::vector<float> buf(n);
#pragma omp parallel for num_threads(threads) schedule(static)
  for (size_t i = 0; i < n; ++i) buf[i] = static_cast<float>(i & 1023);
  double best = 0, sink = 0;
  for (int rep = 0; rep < 4; ++rep) {
    const auto t0 = Clock::now();
    double total = 0;
#pragma omp parallel for num_threads(threads) schedule(static) reduction(+ : total)
    for (size_t b = 0; b < n; b += 4096) {
      float acc[16] = {};
      for (size_t i = b; i < b + 4096; i += 16)
        for (int j = 0; j < 16; ++j) acc[j] += buf[i + j];
      float s = 0;
      for (float a : acc) s += a;
      total += s;
    }
    const double dt = seconds_since(t0);
    sink += total;
    best = std::max(best, double(n) * sizeof(float) / dt / 1e9);
  }
  if (sink == 42) std::puts("");  // keep the sums alive
  return best;
}

// Bytes a batch-1 decode step reads: the weights of the embedding row, every main layer's
// attention and its dense MLP or (router + K routed + shared experts), the final norm and the
// head, plus the cache rows attended to (`context` positions per layer), all FP32.
// Bytes a decode step reads. With fp8_linear, the Linear weights a model keeps FP8 (every
// *_proj but kv_b_proj) count one byte each (their block scales are 4 bytes per 16384 weights).
double decode_bytes_per_token(const ModelConfig& c, double context, size_t cache_bytes,
                              bool fp8_linear = false) {
  const double d = c.hidden_size, H = c.num_attention_heads;
  const double dn = c.qk_nope_head_dim, dr = c.qk_rope_head_dim, dv = c.v_head_dim;
  const double rq = c.q_lora_rank, rkv = c.kv_lora_rank;
  const double q_linear = rq > 0 ? d * rq + rq * H * (dn + dr) : d * H * (dn + dr);
  const double attn_linear = q_linear + d * (rkv + dr) + H * dv * d;
  const double attn_other = (rq > 0 ? rq : 0) + rkv + rkv * H * (dn + dv) + 2 * d;
  double linear = 0, other = d + d + double(c.vocab_size) * d;  // embedding row, norm, head
  for (int l = 0; l < c.num_hidden_layers; ++l) {
    linear += attn_linear;
    other += attn_other;
    if (c.is_moe_layer(l)) {
      other += c.n_routed_experts * (d + 1);
      linear += 3.0 * d * c.moe_intermediate_size * (c.num_experts_per_tok + c.n_shared_experts);
    } else {
      linear += 3.0 * d * c.intermediate_size;
    }
  }
  const double weight_bytes = other * sizeof(float) + linear * (fp8_linear ? 1.0 : sizeof(float));
  return weight_bytes + context * double(cache_bytes);
}

nlohmann::json bench_peak(const Options& o) {
  return {{"mode", "peak"},
          {"threads", o.threads},
          {"sgemm_gflops", measure_sgemm_gflops()},
          {"read_gbs", read_bandwidth_gbs(o.threads)},
          {"read_gbs_1thread", read_bandwidth_gbs(1)}};
}

nlohmann::json bench_train(const Options& o, const ModelConfig& c, double peak_gflops) {
  Model model(c);
  model.init_weights(1);
  TrainHyper hp;
  hp.precision = o.precision;
  Trainer trainer(model, hp);
  Rng rng(1);
  std::vector<int32_t> tokens(size_t(o.batch) * (o.seq + 1));
  std::vector<double> times;
  double loss = 0;
  for (int s = 0; s < o.warmup + o.steps; ++s) {
    for (auto& t : tokens) t = static_cast<int32_t>(rng.next_u64() % c.vocab_size);
    const int32_t* micro[1] = {tokens.data()};
    const auto t0 = Clock::now();
    loss = trainer.step(micro, o.batch, o.seq, 1e-3).loss;
    if (s >= o.warmup) times.push_back(seconds_since(t0));
  }
  const double tok_s = double(o.batch) * o.seq / median(times);
  const double flops = train_flops_per_token(c, o.seq);
  return {{"mode", "train"},
          {"threads", o.threads},
          {"batch", o.batch},
          {"seq", o.seq},
          {"precision", precision_name(o.precision)},
          {"step_seconds", times},
          {"tok_per_s", tok_s},
          {"flops_per_token", flops},
          {"mfu", peak_gflops > 0 ? tok_s * flops / (peak_gflops * 1e9) : 0.0},
          {"last_loss", loss}};
}

int argmax(const float* x, int n) {
  return static_cast<int>(std::max_element(x, x + n) - x);
}

std::vector<int32_t> random_prompt(int n, int V) {
  Rng rng(2);
  std::vector<int32_t> prompt(n);
  for (auto& t : prompt) t = static_cast<int32_t>(rng.next_u64() % V);
  return prompt;
}

nlohmann::json bench_decode(const Options& o, const ModelConfig& config, double read_gbs) {
  std::unique_ptr<Model> owned;
  if (o.model.empty()) {
    owned = std::make_unique<Model>(config);
    owned->init_weights(1);
  } else {
    InferenceLoadOptions load;
    load.fp8_weights = o.fp8_weights;
    owned = load_inference_model(o.model, load).model;
  }
  const Model& model = *owned;
  const ModelConfig& c = model.config();
  const bool fp8 = model.fp8_weights() != nullptr;
  const int V = c.vocab_size;
  InferenceSession session(model, 1, o.prompt + o.tokens);
  const std::vector<int32_t> prompt = random_prompt(o.prompt, V);
  std::vector<int32_t> slots(o.prompt, 0), pos(o.prompt);
  for (int i = 0; i < o.prompt; ++i) pos[i] = i;
  std::vector<uint8_t> last_only(o.prompt, 0);
  last_only.back() = 1;
  std::vector<float> logits(V);
  std::vector<double> prefill, decode;
  std::vector<int32_t> out;
  for (int r = 0; r < o.repeat; ++r) {
    session.reset_slot(0);
    out.clear();
    auto t0 = Clock::now();
    session.forward(prompt.data(), slots.data(), pos.data(), o.prompt, logits.data(),
                    last_only.data());
    prefill.push_back(o.prompt / seconds_since(t0));
    out.push_back(argmax(logits.data(), V));
    t0 = Clock::now();
    for (int i = 0; i + 1 < o.tokens; ++i) {
      const int32_t tok = out.back(), slot = 0, p = o.prompt + i;
      session.forward(&tok, &slot, &p, 1, logits.data());
      out.push_back(argmax(logits.data(), V));
    }
    decode.push_back((o.tokens - 1) / seconds_since(t0));
  }
  const double tok_s = median(decode);
  const double bytes =
      decode_bytes_per_token(c, o.prompt + o.tokens / 2.0, session.cache_bytes_per_token(), fp8);
  if (!o.out.empty()) {  // the peers check their greedy tokens against these
    nlohmann::json g = {{"prompt", prompt}, {"greedy", out}};
    write_file_atomic(o.out + "/greedy.json", g.dump() + "\n");
  }
  out.resize(std::min<size_t>(out.size(), 16));
  return {{"mode", "decode"},
          {"model", o.model.empty() ? "random" : o.model},
          {"fp8_weights_kept", fp8},
          {"threads", o.threads},
          {"prompt", o.prompt},
          {"tokens", o.tokens},
          {"prefill_tok_per_s", median(prefill)},
          {"decode_tok_per_s", tok_s},
          {"bytes_per_token", bytes},
          {"achieved_gbs", tok_s * bytes / 1e9},
          {"bandwidth_bound_tok_per_s", read_gbs > 0 ? read_gbs * 1e9 / bytes : 0.0},
          {"first_tokens", out}};
}

int run(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    SEEKR_REQUIRE(i + 1 < argc, "bench_model: ", a, " needs a value");
    const char* v = argv[++i];
    if (a == "--config")
      o.config = v;
    else if (a == "--modes")
      o.modes = v;
    else if (a == "--threads")
      o.threads = std::atoi(v);
    else if (a == "--batch")
      o.batch = std::atoi(v);
    else if (a == "--seq")
      o.seq = std::atoi(v);
    else if (a == "--steps")
      o.steps = std::atoi(v);
    else if (a == "--warmup")
      o.warmup = std::atoi(v);
    else if (a == "--prompt")
      o.prompt = std::atoi(v);
    else if (a == "--tokens")
      o.tokens = std::atoi(v);
    else if (a == "--repeat")
      o.repeat = std::atoi(v);
    else if (a == "--precision")
      o.precision = parse_precision(v);
    else if (a == "--out")
      o.out = v;
    else if (a == "--model")
      o.model = v;
    else if (a == "--fp8-weights")
      o.fp8_weights = parse_fp8_weight_mode(v);
    else
      throw Error("bench_model: unknown option " + a);
  }
  if (o.config.empty() && !o.model.empty()) o.config = o.model + "/config.json";
  SEEKR_REQUIRE(!o.config.empty(), "bench_model: --config (or --model) is required");
  SEEKR_REQUIRE(o.model.empty() || o.modes == "decode",
                "bench_model: --model DIR is for --modes decode only");
  omp_set_num_threads(o.threads);
  openblas_set_num_threads(o.threads);
  const ModelConfig c = ModelConfig::from_file(o.config);
  auto want = [&](const char* m) { return o.modes.find(m) != std::string::npos; };
  double peak = 0, read_gbs = 0;
  if (want("peak")) {
    const nlohmann::json p = bench_peak(o);
    peak = p["sgemm_gflops"];
    read_gbs = p["read_gbs"];
    std::printf("%s\n", p.dump().c_str());
  }
  auto emit = [&](nlohmann::json j) {
    j["config"] = o.config;
    j["load_average"] = load_average();
    std::printf("%s\n", j.dump().c_str());
    std::fflush(stdout);
  };
  if (want("train")) emit(bench_train(o, c, peak));
  if (want("save")) {
    SEEKR_REQUIRE(!o.out.empty(), "bench_model: --modes save needs --out DIR");
    Model model(c);
    model.init_weights(1);
    std::filesystem::create_directories(o.out);
    write_file_atomic(o.out + "/config.json", read_file(o.config));
    SafetensorsWriter w;
    model.add_to(w);
    w.write(o.out + "/model.safetensors");
    emit({{"mode", "save"}, {"out", o.out}});
  }
  if (want("decode")) emit(bench_decode(o, c, read_gbs));
  return 0;
}

}  // namespace
}  // namespace seekr

int main(int argc, char** argv) {
  try {
    return seekr::run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
