// The R1 run's report: summary.json (every number, for scripts), report.md (the tables a person
// reads) and plots/ (gnuplot PNGs of the RL and loss curves), built from the stages' done.json.
#pragma once

#include <map>
#include <nlohmann/json.hpp>
#include <string>

namespace seekr::r1 {

// `results` maps stage name -> that stage's done.json (missing stages are left out of the
// tables). Writes RUN/summary.json, RUN/report.md and RUN/plots/*; returns the summary. Plots
// are skipped, with a note in the report, when gnuplot is missing.
nlohmann::json write_report(const std::string& run_dir, const nlohmann::json& config,
                            const std::map<std::string, nlohmann::json>& results);

}  // namespace seekr::r1
