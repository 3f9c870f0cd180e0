#include "train/metrics.h"

#include <cblas.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>

#include "core/check.h"
#include "model/config.h"

namespace seekr {

double measure_sgemm_gflops(int n, int repeats) {
  std::vector<float> a(static_cast<size_t>(n) * n, 1.0f), b(a.size(), 0.5f), c(a.size());
  double best = 0.0;
  for (int r = 0; r < repeats; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a.data(), n, b.data(), n,
                0.0f, c.data(), n);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::max(best, 2.0 * n * n * static_cast<double>(n) / s / 1e9);
  }
  return best;
}

double train_flops_per_token(const ModelConfig& c, int T) {
  const double d = c.hidden_size, V = c.vocab_size;
  const int L = c.num_hidden_layers, D = c.num_nextn_predict_layers;
  double params = static_cast<double>(c.num_parameters());
  const double inactive_per_layer =
      3.0 * d * c.moe_intermediate_size * (c.n_routed_experts - c.num_experts_per_tok);
  for (int l = 0; l < L + D; ++l)
    if (c.is_moe_layer(l)) params -= inactive_per_layer;
  if (!c.tie_word_embeddings) params -= V * d;
  params += D * V * d;
  const double attention = 6.0 * (L + D) * static_cast<double>(T) * c.num_attention_heads *
                           (c.qk_head_dim() + c.v_head_dim);
  return 6.0 * params + attention;
}

LoadBalance max_violation(const std::vector<std::vector<int64_t>>& load) {
  LoadBalance out;
  for (size_t l = 0; l < load.size(); ++l) {
    if (load[l].empty()) continue;
    int64_t total = 0, most = 0;
    for (int64_t x : load[l]) {
      total += x;
      most = std::max(most, x);
    }
    const double mean = static_cast<double>(total) / static_cast<double>(load[l].size());
    out.layers.push_back(static_cast<int>(l));
    out.max_vio.push_back(total == 0 ? 0.0 : static_cast<double>(most) / mean - 1.0);
  }
  if (!out.max_vio.empty()) {
    double s = 0.0;
    for (double v : out.max_vio) s += v;
    out.mean_max_vio = s / static_cast<double>(out.max_vio.size());
  }
  return out;
}

nlohmann::json StepMetrics::to_json() const {
  nlohmann::json j = {{"type", "train"},
                      {"step", step},
                      {"tokens", tokens_seen},
                      {"loss", loss},
                      {"ce", ce},
                      {"mtp_loss", mtp},
                      {"balance_loss", balance},
                      {"lr", lr},
                      {"grad_norm", grad_norm},
                      {"step_seconds", step_seconds},
                      {"tokens_per_second", tokens_per_second},
                      {"mfu", mfu},
                      {"eta_seconds", eta_seconds}};
  if (!balance_stats.layers.empty()) {
    j["max_vio"] = balance_stats.max_vio;
    j["max_vio_layers"] = balance_stats.layers;
    j["max_vio_mean"] = balance_stats.mean_max_vio;
  }
  return j;
}

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const auto s = static_cast<int64_t>(std::llround(seconds));
  char buf[64];
  if (s >= 3600)
    std::snprintf(buf, sizeof buf, "%lldh%02lldm", static_cast<long long>(s / 3600),
                  static_cast<long long>(s / 60 % 60));
  else if (s >= 60)
    std::snprintf(buf, sizeof buf, "%lldm%02llds", static_cast<long long>(s / 60),
                  static_cast<long long>(s % 60));
  else
    std::snprintf(buf, sizeof buf, "%llds", static_cast<long long>(s));
  return buf;
}

std::string progress_line(const StepMetrics& m) {
  char buf[256];
  std::snprintf(buf, sizeof buf,
                "step %lld/%lld  loss %.4f (ce %.4f)  lr %.3g  |g| %.3g  %.0f tok/s  MFU %.1f%%"
                "  ETA %s",
                static_cast<long long>(m.step), static_cast<long long>(m.total_steps), m.loss, m.ce,
                m.lr, m.grad_norm, m.tokens_per_second, 100.0 * m.mfu,
                format_duration(m.eta_seconds).c_str());
  std::string line = buf;
  if (!m.balance_stats.layers.empty()) {
    std::snprintf(buf, sizeof buf, "  MaxVio %.3f", m.balance_stats.mean_max_vio);
    line += buf;
  }
  return line;
}

MetricsLog::MetricsLog(std::string path) : path_(std::move(path)) {
  f_ = std::fopen(path_.c_str(), "a");
  SEEKR_REQUIRE(f_, "cannot open ", path_, " for appending");
}

MetricsLog::~MetricsLog() {
  if (f_) std::fclose(f_);
}

void MetricsLog::append(const nlohmann::json& record) {
  const std::string line = record.dump() + "\n";
  SEEKR_REQUIRE(std::fwrite(line.data(), 1, line.size(), f_) == line.size() && !std::fflush(f_),
                "cannot write to ", path_);
}

bool have_gnuplot() {
  const char* path = std::getenv("PATH");
  if (!path) return false;
  std::stringstream dirs(path);
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    if (dir.empty()) dir = ".";
    if (access((dir + "/gnuplot").c_str(), X_OK) == 0) return true;
  }
  return false;
}

namespace {
// A gnuplot single-quoted string: only ' needs escaping, by doubling it.
std::string gp_quote(const std::string& s) {
  std::string out = "'";
  for (char ch : s) out += ch == '\'' ? std::string("''") : std::string(1, ch);
  return out + "'";
}
std::string sh_quote(const std::string& s) {
  std::string out = "'";
  for (char ch : s) out += ch == '\'' ? std::string("'\\''") : std::string(1, ch);
  return out + "'";
}
}  // namespace

std::string plot_metrics(const std::string& metrics_path, const std::string& out_base,
                         std::string* why) {
  if (!have_gnuplot()) {
    *why = "gnuplot not found on PATH";
    return "";
  }
  // A resumed run may log steps again that the crashed run had logged after its last
  // checkpoint: the later record of a step wins.
  std::map<int64_t, nlohmann::json> train, valid;
  {
    std::ifstream in(metrics_path);
    if (!in) {
      *why = "cannot read " + metrics_path;
      return "";
    }
    std::string line;
    while (std::getline(in, line)) {
      const auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
      if (!j.is_object() || !j.contains("step")) continue;
      const auto type = j.value("type", std::string());
      if (type == "train") train[j["step"].get<int64_t>()] = j;
      if (type == "eval") valid[j["step"].get<int64_t>()] = j;
    }
  }
  if (train.empty()) {
    *why = "no training records in " + metrics_path;
    return "";
  }
  const std::string train_dat = out_base + ".train.dat", valid_dat = out_base + ".valid.dat",
                    script = out_base + ".gp";
  {
    std::ofstream t(train_dat), v(valid_dat);
    for (const auto& [step, j] : train)
      t << step << ' ' << j.value("loss", 0.0) << ' ' << j.value("ce", 0.0) << ' '
        << j.value("tokens_per_second", 0.0) << '\n';
    for (const auto& [step, j] : valid) v << step << ' ' << j.value("valid_loss", 0.0) << '\n';
  }
  std::string written;
  for (const char* term : {"pngcairo size 1000,750", "svg size 1000,750"}) {
    const std::string out = out_base + (term[0] == 'p' ? ".png" : ".svg");
    {
      std::ofstream gp(script);
      gp << "set terminal " << term << "\nset output " << gp_quote(out) << "\n"
         << "set multiplot layout 2,1\nset grid\nset key top right\nset xlabel 'step'\n"
         << "set ylabel 'loss'\nset title 'loss'\n"
         << "plot " << gp_quote(train_dat) << " using 1:2 with lines title 'train loss', "
         << gp_quote(train_dat) << " using 1:3 with lines title 'train CE'";
      if (!valid.empty())
        gp << ", " << gp_quote(valid_dat) << " using 1:2 with linespoints title 'valid CE'";
      gp << "\nset ylabel 'tokens/s'\nset title 'throughput'\n"
         << "plot " << gp_quote(train_dat) << " using 1:4 with lines title 'tokens/s'\n"
         << "unset multiplot\n";
    }
    const std::string cmd = "gnuplot " + sh_quote(script) + " >/dev/null 2>&1";
    if (std::system(cmd.c_str()) == 0) {
      written = out;
      break;
    }
    std::remove(out.c_str());
  }
  std::remove(train_dat.c_str());
  std::remove(valid_dat.c_str());
  std::remove(script.c_str());
  if (written.empty()) *why = "gnuplot failed to draw " + out_base + ".png or .svg";
  return written;
}

}  // namespace seekr
