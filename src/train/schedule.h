// Learning-rate schedules, as pure functions of the optimizer step so a resumed run recomputes
// exactly the rates an uninterrupted run would have used.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

namespace seekr {

enum class ScheduleKind {
  kCosine,  // linear warmup, then cosine decay from peak_lr to min_lr at the last step
  kWsd,     // warmup-stable-decay: warmup, hold peak_lr, then linear decay to min_lr
};

// "cosine" | "wsd"; throws seekr::Error for anything else.
ScheduleKind parse_schedule_kind(const std::string& name);
const char* schedule_kind_name(ScheduleKind kind);

struct LrSchedule {
  ScheduleKind kind = ScheduleKind::kCosine;
  double peak_lr = 3e-4;
  double min_lr = 3e-5;
  int64_t warmup_steps = 0;
  int64_t total_steps = 1;
  double decay_fraction = 0.2;  // WSD: share of total_steps spent decaying

  // Rate for the optimizer step with 0-based index `step` (the step-th update):
  //   warmup    step < W:           peak · (step + 1) / W
  //   cosine    W ≤ step:           min + (peak − min) · ½(1 + cos(π·p)),
  //                                 p = (step − W) / (N − 1 − W) clamped to [0, 1]
  //   WSD       W ≤ step < N − Dn:  peak           (Dn = max(1, round(decay_fraction · N)))
  //             N − Dn ≤ step:      peak + (min − peak) · (step − (N − Dn) + 1) / Dn, clamped
  // so the first update already moves (rate > 0), and the last (step N − 1) runs at min_lr.
  double lr(int64_t step) const;
  // Index of the first WSD decay step (N − Dn).
  int64_t decay_start() const;

  // Throws seekr::Error naming the bad field.
  void validate() const;
  nlohmann::json to_json() const;
  static LrSchedule from_json(const nlohmann::json& j);
};

}  // namespace seekr
