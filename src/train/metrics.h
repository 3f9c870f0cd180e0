// Training metrics: the per-step record, its JSONL log, the live progress line, the FLOP and
// expert-load formulas behind MFU and MaxVio, and the gnuplot loss/throughput plot.
#pragma once

#include <cstdint>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace seekr {

struct ModelConfig;

// Single-thread OpenBLAS sgemm (2048³) throughput measured on the development machine
// (AMD EPYC Zen 4: 67–69 GFLOP/s); the default MFU denominator is this times the thread count.
inline constexpr double kDefaultPeakGflopsPerThread = 70.0;

// Measures sgemm throughput in GFLOP/s with the BLAS's current thread settings (best of
// `repeats` n×n×n products). Takes about a second at n = 2048.
double measure_sgemm_gflops(int n = 2048, int repeats = 3);

// Training FLOPs per token (forward + backward) at sequence length T:
//   6 · (matmul params per token) + 6 · (L + D) · T · H · (dqk + dv)
// where matmul params = active params (routed experts counted K of E, in the MTP modules too)
// minus the input embedding (a lookup, unless tied to the head) plus D · V · d for the shared
// output head each MTP module applies again. The attention term counts QKᵀ and PV over the full
// T×T square (no causal halving), as PaLM's MFU does.
double train_flops_per_token(const ModelConfig& c, int T);

// Per MoE layer (in the order of `load`, dense layers skipped): MaxVio = max_e load_e /
// mean_e load_e − 1. A layer that routed no token has MaxVio 0.
struct LoadBalance {
  std::vector<int> layers;      // indices into load that are MoE layers
  std::vector<double> max_vio;  // same length
  double mean_max_vio = 0.0;    // mean over those layers (0 when none)
};
LoadBalance max_violation(const std::vector<std::vector<int64_t>>& load);

struct StepMetrics {
  int64_t step = 0;  // optimizer steps done, counting this one (1-based)
  int64_t total_steps = 0;
  int64_t tokens_seen = 0;
  double loss = 0, ce = 0, mtp = 0, balance = 0;
  double lr = 0, grad_norm = 0;
  double step_seconds = 0, tokens_per_second = 0, mfu = 0, eta_seconds = 0;
  LoadBalance balance_stats;
  nlohmann::json to_json() const;  // {"type": "train", ...}
};

// "1h02m", "4m05s", "12s".
std::string format_duration(double seconds);
// One line for the terminal: step, loss, lr, tok/s, MFU, ETA, MaxVio.
std::string progress_line(const StepMetrics& m);

// Appends one JSON object per line, flushed at once so a crash loses at most the last line.
class MetricsLog {
 public:
  explicit MetricsLog(std::string path);  // opens for append; throws seekr::Error
  ~MetricsLog();
  MetricsLog(const MetricsLog&) = delete;
  MetricsLog& operator=(const MetricsLog&) = delete;
  void append(const nlohmann::json& record);
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  FILE* f_ = nullptr;
};

// Searches PATH for an executable gnuplot.
bool have_gnuplot();
// Plots train loss, CE and validation loss against the step, and tokens/s below, from a
// metrics JSONL file into `out_base`.png (pngcairo) or, if that terminal is missing,
// `out_base`.svg. Returns the path written, or "" with *why set when gnuplot is missing or
// fails (the caller warns; training never depends on the plot).
std::string plot_metrics(const std::string& metrics_path, const std::string& out_base,
                         std::string* why);

}  // namespace seekr
