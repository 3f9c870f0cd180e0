#include "train/schedule.h"

#include <algorithm>
#include <cmath>

#include "core/check.h"

namespace seekr {

ScheduleKind parse_schedule_kind(const std::string& name) {
  if (name == "cosine") return ScheduleKind::kCosine;
  if (name == "wsd") return ScheduleKind::kWsd;
  throw Error(str_cat("unknown learning-rate schedule '", name, "' (expected cosine or wsd)"));
}

const char* schedule_kind_name(ScheduleKind kind) {
  return kind == ScheduleKind::kCosine ? "cosine" : "wsd";
}

int64_t LrSchedule::decay_start() const {
  const auto decay_steps = std::max<int64_t>(
      1, static_cast<int64_t>(std::llround(decay_fraction * static_cast<double>(total_steps))));
  return std::max<int64_t>(0, total_steps - decay_steps);
}

double LrSchedule::lr(int64_t step) const {
  if (step < warmup_steps)
    return peak_lr * static_cast<double>(step + 1) / static_cast<double>(warmup_steps);
  if (kind == ScheduleKind::kCosine) {
    const int64_t span = total_steps - 1 - warmup_steps;
    const double p =
        span <= 0 ? 1.0 : std::clamp(static_cast<double>(step - warmup_steps) / span, 0.0, 1.0);
    return min_lr + (peak_lr - min_lr) * 0.5 * (1.0 + std::cos(M_PI * p));
  }
  const int64_t start = std::max(decay_start(), warmup_steps);
  if (step < start) return peak_lr;
  const int64_t span = total_steps - start;
  const double p =
      span <= 0 ? 1.0 : std::clamp(static_cast<double>(step - start + 1) / span, 0.0, 1.0);
  return peak_lr + (min_lr - peak_lr) * p;
}

void LrSchedule::validate() const {
  SEEKR_REQUIRE(peak_lr > 0 && std::isfinite(peak_lr), "--lr must be positive; got ", peak_lr);
  SEEKR_REQUIRE(min_lr >= 0 && min_lr <= peak_lr, "--min-lr must lie in [0, --lr]; got ", min_lr);
  SEEKR_REQUIRE(total_steps >= 1, "--steps must be at least 1; got ", total_steps);
  SEEKR_REQUIRE(warmup_steps >= 0 && warmup_steps <= total_steps,
                "--warmup must lie in [0, --steps]; got ", warmup_steps);
  SEEKR_REQUIRE(decay_fraction > 0 && decay_fraction <= 1,
                "--decay-fraction must lie in (0, 1]; got ", decay_fraction);
}

nlohmann::json LrSchedule::to_json() const {
  return {{"kind", schedule_kind_name(kind)},
          {"peak_lr", peak_lr},
          {"min_lr", min_lr},
          {"warmup_steps", warmup_steps},
          {"total_steps", total_steps},
          {"decay_fraction", decay_fraction}};
}

LrSchedule LrSchedule::from_json(const nlohmann::json& j) {
  LrSchedule s;
  try {
    s.kind = parse_schedule_kind(j.at("kind").get<std::string>());
    s.peak_lr = j.at("peak_lr").get<double>();
    s.min_lr = j.at("min_lr").get<double>();
    s.warmup_steps = j.at("warmup_steps").get<int64_t>();
    s.total_steps = j.at("total_steps").get<int64_t>();
    s.decay_fraction = j.at("decay_fraction").get<double>();
  } catch (const nlohmann::json::exception& e) {
    throw Error(str_cat("bad learning-rate schedule in trainer state: ", e.what()));
  }
  s.validate();
  return s;
}

}  // namespace seekr
