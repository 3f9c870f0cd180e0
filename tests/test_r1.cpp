// The whole R1 pipeline on the smoke preset: every stage runs, the report and summary hold the
// tables, a re-run resumes (skips finished stages), and a stage re-run with the same seed
// reproduces its numbers exactly.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

#include "core/check.h"
#include "core/file_io.h"
#include "r1/pipeline.h"

namespace fs = std::filesystem;
using nlohmann::json;
using namespace seekr;

namespace {

std::string fresh_dir(const std::string& name) {
  const std::string dir = (fs::temp_directory_path() / ("seekr_r1_" + name + "_" +
                                                         std::to_string(::getpid())))
                              .string();
  fs::remove_all(dir);
  return dir;
}

r1::R1RunOptions smoke(const std::string& dir) {
  r1::R1RunOptions opt;
  opt.run_dir = dir;
  opt.config = r1::r1_preset("smoke");
  opt.config.threads = 1;
  return opt;
}

// An evaluation's numbers without its wall-clock fields.
json without_times(json e) {
  for (const char* k : {"seconds", "generation_seconds", "tokens_per_second"}) e.erase(k);
  return e;
}

}  // namespace

TEST(R1Pipeline, SmokeRunsEveryStageResumesAndReproduces) {
  const std::string dir = fresh_dir("smoke");
  const json summary = r1::run_r1(smoke(dir));
  for (const std::string& s : r1::r1_stage_names()) {
    EXPECT_TRUE(fs::exists(dir + "/stages/" + s + "/done.json")) << s;
    if (s != "data" && s != "rejection") {
      EXPECT_TRUE(fs::exists(dir + "/stages/" + s + "/model/model.safetensors")) << s;
    }
  }
  const std::string report = read_file(dir + "/report.md");
  for (const char* section : {"## Held-out results per stage", "## R1-Zero", "forced to reason",
                              "## Language-consistency reward", "## Distillation vs RL",
                              "R1-Zero RL stage", "## Plots"})
    EXPECT_NE(report.find(section), std::string::npos) << section;
  const json on_disk = json::parse(read_file(dir + "/summary.json"));
  EXPECT_EQ(on_disk, summary);
  for (const char* key : {"r1zero", "language", "distillation", "speed", "stages"})
    EXPECT_TRUE(summary.contains(key)) << key;
  EXPECT_TRUE(summary["stages"]["base"]["eval"].contains("pass1_lenient"));
  // The R1-Zero stage logged every RL step and its held-out probe.
  const json r1zero = json::parse(read_file(dir + "/stages/r1zero/done.json"));
  EXPECT_EQ(r1zero["steps"].size(), 3u);
  EXPECT_GE(r1zero["heldout_curve"].size(), 2u);

  // Resume: everything is done, so nothing runs and the summary's numbers are unchanged.
  const json again = r1::run_r1(smoke(dir));
  EXPECT_EQ(again["stages"]["final_rl"]["eval"], summary["stages"]["final_rl"]["eval"]);
  EXPECT_EQ(again["r1zero"], summary["r1zero"]);

  // An interrupted stage (no done.json) runs again from its input model; same seed, same result.
  const json before = json::parse(read_file(dir + "/stages/final_rl/done.json"));
  fs::remove(dir + "/stages/final_rl/done.json");
  r1::R1RunOptions opt = smoke(dir);
  opt.stop_after = "final_rl";
  r1::run_r1(opt);
  const json after = json::parse(read_file(dir + "/stages/final_rl/done.json"));
  EXPECT_EQ(without_times(after["eval"]), without_times(before["eval"]));
  EXPECT_EQ(after["steps"], before["steps"]);

  // A run directory made with other settings is refused.
  r1::R1RunOptions other = smoke(dir);
  other.config.seed = 2;
  EXPECT_THROW(r1::run_r1(other), Error);
  fs::remove_all(dir);
}
