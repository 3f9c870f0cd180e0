#include "r1/common.h"

#include <unistd.h>

#include <cstdio>

#include "train/metrics.h"

namespace seekr::r1 {

std::vector<int32_t> encode_prompt(const Tokenizer& tokenizer, const rl::Problem& p,
                                   rl::Template tmpl) {
  return tokenizer.encode(rl::apply_template(tmpl, p.prompt), /*add_special_tokens=*/true);
}

std::vector<int32_t> stop_tokens(const ModelConfig& config, const Tokenizer& tokenizer) {
  std::vector<int32_t> out;
  if (config.eos_token_id >= 0 && config.eos_token_id < config.vocab_size)
    out.push_back(config.eos_token_id);
  if (auto id = tokenizer.token_to_id("<｜end▁of▁sentence｜>")) {
    bool have = false;
    for (int32_t t : out) have |= t == *id;
    if (!have && *id < config.vocab_size) out.push_back(*id);
  }
  return out;
}

Progress::Progress(std::string stage, int64_t total_steps, double interval_seconds)
    : stage_(std::move(stage)),
      total_(total_steps),
      interval_(interval_seconds),
      tty_(::isatty(STDERR_FILENO) != 0),
      start_(std::chrono::steady_clock::now()),
      last_print_(start_) {}

double Progress::elapsed_seconds() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

void Progress::update(int64_t step, const std::string& fields) {
  auto now = std::chrono::steady_clock::now();
  if (first_step_ < 0) first_step_ = step - 1;
  double since = std::chrono::duration<double>(now - last_print_).count();
  bool last = step >= total_;
  if (!tty_ && !last && since < interval_ && step != first_step_ + 1) return;
  last_print_ = now;
  double elapsed = elapsed_seconds();
  int64_t done = step - first_step_;
  double eta = done > 0 ? elapsed / done * double(total_ - step) : 0.0;
  char head[160];
  std::snprintf(head, sizeof head, "[%s] step %lld/%lld", stage_.c_str(),
                static_cast<long long>(step), static_cast<long long>(total_));
  std::string line = std::string(head) + (fields.empty() ? "" : " · " + fields) +
                     " · ETA " + format_duration(eta);
  if (tty_) {
    std::fprintf(stderr, "\r\033[K%s", line.c_str());
    open_line_ = true;
  } else {
    std::fprintf(stderr, "%s\n", line.c_str());
  }
  std::fflush(stderr);
}

void Progress::finish() {
  if (open_line_) std::fprintf(stderr, "\n");
  open_line_ = false;
}

std::string human_count(double x) {
  char buf[32];
  if (x >= 1e6)
    std::snprintf(buf, sizeof buf, "%.1fM", x / 1e6);
  else if (x >= 1e4)
    std::snprintf(buf, sizeof buf, "%.1fk", x / 1e3);
  else
    std::snprintf(buf, sizeof buf, "%.0f", x);
  return buf;
}

}  // namespace seekr::r1
