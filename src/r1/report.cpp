#include "r1/report.h"

#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <vector>

#include "core/file_io.h"
#include "r1/common.h"
#include "train/metrics.h"

namespace seekr::r1 {

using nlohmann::json;

namespace {

// The R1-Zero prototype (PyTorch, this machine): 120 GRPO steps of 16 prompts x 8 samples on a
// 0.8M-parameter model took 2.5 minutes (issue 3).
constexpr double kPrototypeRlSeconds = 150.0;

struct Interval {
  double mean = 0, lo = 0, hi = 0;
  bool ok = false;
};

Interval interval(const json& j) {
  Interval i;
  if (!j.is_object() || !j.contains("mean")) return i;
  i.mean = j["mean"].get<double>();
  i.lo = j["lo"].get<double>();
  i.hi = j["hi"].get<double>();
  i.ok = true;
  return i;
}

std::string pct(double x) {
  char b[32];
  std::snprintf(b, sizeof b, "%.1f%%", 100 * x);
  return b;
}
std::string pct_ci(const Interval& i) {
  if (!i.ok) return "–";
  char b[64];
  std::snprintf(b, sizeof b, "%.1f%% [%.1f, %.1f]", 100 * i.mean, 100 * i.lo, 100 * i.hi);
  return b;
}
std::string num(double x, int digits = 1) {
  char b[32];
  std::snprintf(b, sizeof b, "%.*f", digits, x);
  return b;
}
std::string points(double x) {
  char b[32];
  std::snprintf(b, sizeof b, "%+.1f", 100 * x);
  return b;
}

const json* eval_of(const std::map<std::string, json>& r, const std::string& stage,
                    const char* key = "eval") {
  auto it = r.find(stage);
  if (it == r.end() || !it->second.contains(key)) return nullptr;
  return &it->second[key];
}

double zh_mixed(const json& e) {
  if (e.contains("by_lang") && e["by_lang"].contains("zh"))
    return e["by_lang"]["zh"].value("mixed_rate", 0.0);
  return e.value("mixed_rate", 0.0);
}

// The key numbers of one evaluation, for summary.json.
json eval_summary(const json& e) {
  return {{"pass1_strict", e["pass1_strict"]},
          {"pass1_lenient", e["pass1_lenient"]},
          {"greedy_strict", e["greedy_strict"]},
          {"greedy_lenient", e["greedy_lenient"]},
          {"pass_at_k", e["pass_at_k"]},
          {"maj_at_k", e["maj_at_k"]},
          {"reasons_first_rate", e["reasons_first_rate"]},
          {"mean_reasoning_tokens", e["mean_reasoning_tokens"]},
          {"mean_response_tokens", e["mean_response_tokens"]},
          {"mixed_rate", e["mixed_rate"]},
          {"zh_mixed_rate", zh_mixed(e)},
          {"format_rate", e["format_rate"]}};
}

const char* kStageTitles[][2] = {
    {"base", "base (pretrained teacher)"},
    {"r1zero", "R1-Zero (GRPO, accuracy reward)"},
    {"r1zero_lang", "R1-Zero + language reward"},
    {"coldstart", "cold-start SFT"},
    {"reasoning_rl", "reasoning RL (accuracy, format, language)"},
    {"rs_sft", "rejection-sampling SFT (from base)"},
    {"final_rl", "final RL = R1"},
    {"student_base", "student base (dense, rarely reasons)"},
    {"student_rl", "student + RL alone"},
    {"student_distill", "student + distillation (SFT on R1's samples)"},
};

std::string eval_row(const std::string& label, const json& e) {
  std::ostringstream o;
  o << "| " << label << " | " << pct_ci(interval(e["pass1_lenient"])) << " | "
    << pct_ci(interval(e["pass1_strict"])) << " | " << pct_ci(interval(e["greedy_lenient"]))
    << " | " << pct_ci(interval(e["pass_at_k"])) << " | " << pct_ci(interval(e["maj_at_k"]))
    << " | " << pct(e.value("reasons_first_rate", 0.0)) << " | "
    << num(e.value("mean_reasoning_tokens", 0.0)) << " | " << pct(zh_mixed(e)) << " | "
    << num(e.value("mean_response_tokens", 0.0)) << " |\n";
  return o.str();
}

std::string gp_quote(const std::string& s) {
  std::string o = "'";
  for (char c : s) o += c == '\'' ? std::string("''") : std::string(1, c);
  return o + "'";
}

// Runs a gnuplot script that writes `png`; returns false when gnuplot fails or is missing.
bool run_gnuplot(const std::string& script_path, const std::string& script) {
  write_file_atomic(script_path, script);
  const std::string cmd = "gnuplot '" + script_path + "' >/dev/null 2>&1";
  return std::system(cmd.c_str()) == 0;
}

// Writes plots/<stage>.steps.dat (step reward accuracy reasons_first response reasoning
// mixed, plus 5-step moving averages of accuracy) and plots/<stage>.heldout.dat.
void write_rl_data(const std::string& dir, const std::string& stage, const json& r) {
  std::ofstream f(dir + "/" + stage + ".steps.dat");
  f << "# step reward accuracy reasons_first response_tokens reasoning_tokens mixed acc_ma5\n";
  const json& steps = r["steps"];
  for (size_t i = 0; i < steps.size(); ++i) {
    double ma = 0;
    int n = 0;
    for (size_t j = i >= 4 ? i - 4 : 0; j <= i; ++j, ++n) ma += steps[j]["accuracy"].get<double>();
    const json& s = steps[i];
    f << s["step"].get<int64_t>() << ' ' << s["reward"].get<double>() << ' '
      << s["accuracy"].get<double>() << ' ' << s["reasons_first"].get<double>() << ' '
      << s["response_tokens"].get<double>() << ' ' << s["reasoning_tokens"].get<double>() << ' '
      << s["language_mixed"].get<double>() << ' ' << ma / n << '\n';
  }
  std::ofstream h(dir + "/" + stage + ".heldout.dat");
  h << "# step pass1_lenient pass1_strict reasons_first response_tokens\n";
  if (r.contains("heldout_curve"))
    for (const json& p : r["heldout_curve"])
      h << p["step"].get<int64_t>() << ' ' << p["pass1_lenient"].get<double>() << ' '
        << p["pass1_strict"].get<double>() << ' ' << p["reasons_first"].get<double>() << ' '
        << p["response_tokens"].get<double>() << '\n';
}

// The plots; returns the markdown lines that show them (or say why there are none).
std::string write_plots(const std::string& run_dir, const std::map<std::string, json>& results) {
  const std::string dir = run_dir + "/plots";
  make_dirs(dir);
  std::vector<std::string> rl_stages;
  for (const char* s : {"r1zero", "r1zero_lang", "reasoning_rl", "final_rl", "student_rl"}) {
    auto it = results.find(s);
    if (it == results.end() || !it->second.contains("steps")) continue;
    write_rl_data(dir, s, it->second);
    rl_stages.push_back(s);
  }
  // Loss curves of the pretraining and SFT stages from metrics.jsonl.
  std::map<std::string, std::ofstream> loss_files;
  {
    std::ifstream in(run_dir + "/metrics.jsonl");
    std::string line;
    while (std::getline(in, line)) {
      json j = json::parse(line, nullptr, false);
      if (!j.is_object() || j.value("type", "") != "sft") continue;
      const std::string stage = j.value("stage", "sft");
      auto it = loss_files.find(stage);
      if (it == loss_files.end())
        it = loss_files.emplace(stage, std::ofstream(dir + "/" + stage + ".loss.dat")).first;
      it->second << j.value("step", 0) << ' ' << j.value("loss", 0.0) << '\n';
    }
  }
  for (auto& [k, f] : loss_files) f.close();
  if (!have_gnuplot()) return "Plots skipped: gnuplot is not installed (the .dat files are in plots/).\n";

  std::string md;
  auto dat = [&](const std::string& stage, const char* kind) {
    return gp_quote(dir + "/" + stage + "." + kind + ".dat");
  };
  // noenhanced: "pass@1" must print as written ('@' is markup in gnuplot's enhanced text).
  const char* head =
      "set terminal pngcairo size 1100,900 noenhanced\nset grid\nset key outside right\n";
  if (results.count("r1zero") && results.at("r1zero").contains("steps")) {
    std::ostringstream g;
    g << head << "set output " << gp_quote(dir + "/r1zero.png") << "\n"
      << "set multiplot layout 3,1 title 'R1-Zero: GRPO from the base model (accuracy reward)'\n"
      << "set xlabel 'RL step'\nset ylabel 'accuracy'\nset yrange [0:1]\n"
      << "plot " << dat("r1zero", "steps") << " using 1:8 with lines lw 2 title 'train batch (5-step mean)', "
      << dat("r1zero", "heldout") << " using 1:2 with linespoints lw 2 title 'held-out pass@1 (lenient)', "
      << dat("r1zero", "heldout") << " using 1:3 with linespoints title 'held-out pass@1 (strict)'";
    if (results.count("r1zero_lang"))
      g << ", " << dat("r1zero_lang", "heldout")
        << " using 1:2 with linespoints dt 2 title '+ language reward: held-out (lenient)'";
    g << "\nset ylabel 'share'\n"
      << "plot " << dat("r1zero", "steps") << " using 1:4 with lines lw 2 title 'responses that reason first', "
      << dat("r1zero", "steps") << " using 1:7 with lines title 'language-mixed responses'";
    if (results.count("r1zero_lang"))
      g << ", " << dat("r1zero_lang", "steps")
        << " using 1:7 with lines dt 2 title 'language-mixed (+ language reward)'";
    g << "\nset ylabel 'tokens'\nset yrange [0:*]\n"
      << "plot " << dat("r1zero", "steps") << " using 1:5 with lines lw 2 title 'response length', "
      << dat("r1zero", "steps") << " using 1:6 with lines title 'reasoning length (0 for direct answers)'\n"
      << "unset multiplot\n";
    if (run_gnuplot(dir + "/r1zero.gp", g.str()))
      md += "![R1-Zero: accuracy, reasoning share and length over RL steps](plots/r1zero.png)\n\n";
  }
  if (!rl_stages.empty()) {
    std::ostringstream g;
    g << head << "set output " << gp_quote(dir + "/rewards.png") << "\n"
      << "set multiplot layout 2,1 title 'RL stages'\nset xlabel 'RL step'\n"
      << "set ylabel 'mean reward'\nplot ";
    for (size_t i = 0; i < rl_stages.size(); ++i)
      g << (i ? ", " : "") << dat(rl_stages[i], "steps") << " using 1:2 with lines title '"
        << rl_stages[i] << "'";
    g << "\nset ylabel 'train accuracy (5-step mean)'\nset yrange [0:1]\nplot ";
    for (size_t i = 0; i < rl_stages.size(); ++i)
      g << (i ? ", " : "") << dat(rl_stages[i], "steps") << " using 1:8 with lines title '"
        << rl_stages[i] << "'";
    g << "\nunset multiplot\n";
    if (run_gnuplot(dir + "/rewards.gp", g.str()))
      md += "![Reward and accuracy of every RL stage](plots/rewards.png)\n\n";
  }
  if (!loss_files.empty()) {
    std::ostringstream g;
    g << "set terminal pngcairo size 1100,600 noenhanced\nset grid\nset key outside right\n"
      << "set output " << gp_quote(dir + "/loss.png") << "\n"
      << "set title 'Pretraining and SFT loss (CE over counted tokens)'\nset xlabel 'step'\n"
      << "set ylabel 'loss'\nset logscale y\nplot ";
    size_t i = 0;
    for (const auto& [stage, f] : loss_files)
      g << (i++ ? ", " : "") << dat(stage, "loss") << " using 1:2 with lines title '" << stage
        << "'";
    g << "\n";
    if (run_gnuplot(dir + "/loss.gp", g.str()))
      md += "![Loss curves of the pretraining and SFT stages](plots/loss.png)\n\n";
  }
  return md;
}

}  // namespace

json write_report(const std::string& run_dir, const json& config,
                  const std::map<std::string, json>& r) {
  json summary;
  summary["config"] = config;
  json stages = json::object();
  for (const auto& [name, res] : r) {
    json s;
    if (res.contains("eval")) s["eval"] = eval_summary(res["eval"]);
    if (res.contains("eval_forced")) s["eval_forced"] = eval_summary(res["eval_forced"]);
    s["seconds"] = res.value("seconds", 0.0);
    stages[name] = s;
  }
  summary["stages"] = stages;

  std::ostringstream md;
  md << "# seekr r1 report\n\n"
     << "Preset `" << config.value("preset", "") << "`, seed " << config.value("seed", 0)
     << ", task mix `" << config.value("mix", "") << "`, "
     << config.value("eval_problems", 0) << " held-out problems (disjoint from all training "
     << "data by hash), " << config.value("eval_k", 0)
     << " samples per problem at temperature 1 plus one greedy sample. Pass@1 is the mean "
        "fraction of correct samples per problem with a 95% interval; *strict* needs the "
        "`<answer>` tag, *lenient* takes the last number anywhere. Metric definitions: "
        "docs/eval.md; pipeline: docs/r1.md.\n\n";

  // Per-stage table.
  md << "## Held-out results per stage\n\n"
     << "| stage | pass@1 lenient | pass@1 strict | greedy lenient | pass@k | maj@k | "
        "reasons first | reasoning tokens | zh mixed | response tokens |\n"
     << "|---|---|---|---|---|---|---|---|---|---|\n";
  for (const auto& st : kStageTitles) {
    if (const json* e = eval_of(r, st[0])) md << eval_row(st[1], *e);
    if (std::string(st[0]) == "base")
      if (const json* e = eval_of(r, "base", "eval_forced"))
        md << eval_row("base, forced to reason", *e);
    if (std::string(st[0]) == "r1zero")
      if (const json* e = eval_of(r, "r1zero", "eval_forced"))
        md << eval_row("R1-Zero, forced to reason", *e);
  }
  md << "\n*zh mixed*: share of reasoning responses to Chinese prompts whose reasoning has "
        "English words.\n\n";

  // R1-Zero signature.
  const json* base = eval_of(r, "base");
  const json* zero = eval_of(r, "r1zero");
  if (base && zero) {
    json z;
    const Interval b_l = interval((*base)["pass1_lenient"]), z_l = interval((*zero)["pass1_lenient"]);
    const Interval b_s = interval((*base)["pass1_strict"]), z_s = interval((*zero)["pass1_strict"]);
    z["pass1_lenient_start"] = b_l.mean;
    z["pass1_lenient_end"] = z_l.mean;
    z["pass1_strict_start"] = b_s.mean;
    z["pass1_strict_end"] = z_s.mean;
    z["rise_lenient_points"] = 100 * (z_l.mean - b_l.mean);
    z["rise_strict_points"] = 100 * (z_s.mean - b_s.mean);
    z["intervals_overlap_lenient"] = !(z_l.lo > b_l.hi || b_l.lo > z_l.hi);
    z["intervals_overlap_strict"] = !(z_s.lo > b_s.hi || b_s.lo > z_s.hi);
    z["reasons_first_start"] = (*base)["reasons_first_rate"];
    z["reasons_first_end"] = (*zero)["reasons_first_rate"];
    z["reasoning_tokens_start"] = (*base)["mean_reasoning_tokens"];
    z["reasoning_tokens_end"] = (*zero)["mean_reasoning_tokens"];
    z["response_tokens_start"] = (*base)["mean_response_tokens"];
    z["response_tokens_end"] = (*zero)["mean_response_tokens"];
    md << "## R1-Zero: what pure RL did to the base model\n\n"
       << "| | base | after R1-Zero RL | change |\n|---|---|---|---|\n"
       << "| pass@1 lenient | " << pct_ci(b_l) << " | " << pct_ci(z_l) << " | "
       << points(z_l.mean - b_l.mean) << " points" << (z["intervals_overlap_lenient"] ? "" : ", intervals disjoint")
       << " |\n| pass@1 strict | " << pct_ci(b_s) << " | " << pct_ci(z_s) << " | "
       << points(z_s.mean - b_s.mean) << " points" << (z["intervals_overlap_strict"] ? "" : ", intervals disjoint")
       << " |\n| responses that reason first | " << pct((*base)["reasons_first_rate"].get<double>())
       << " | " << pct((*zero)["reasons_first_rate"].get<double>()) << " | |\n"
       << "| mean reasoning length (tokens) | " << num((*base)["mean_reasoning_tokens"].get<double>())
       << " | " << num((*zero)["mean_reasoning_tokens"].get<double>()) << " | |\n"
       << "| mean response length (tokens) | " << num((*base)["mean_response_tokens"].get<double>())
       << " | " << num((*zero)["mean_response_tokens"].get<double>()) << " | |\n";
    if (const json* forced = eval_of(r, "base", "eval_forced")) {
      const Interval f_l = interval((*forced)["pass1_lenient"]);
      z["pass1_lenient_base_forced"] = f_l.mean;
      z["gain_over_forced_points"] = 100 * (z_l.mean - f_l.mean);
      md << "| pass@1 lenient against the base **forced to reason** | " << pct_ci(f_l) << " | "
         << pct_ci(z_l) << " | " << points(z_l.mean - f_l.mean) << " points |\n";
      const json* zero_forced = eval_of(r, "r1zero", "eval_forced");
      if (zero_forced) {
        const Interval zf_l = interval((*zero_forced)["pass1_lenient"]);
        z["pass1_lenient_r1zero_forced"] = zf_l.mean;
        z["forced_gain_points"] = 100 * (zf_l.mean - f_l.mean);
        md << "| pass@1 lenient, both **forced to reason** | " << pct_ci(f_l) << " | "
           << pct_ci(zf_l) << " | " << points(zf_l.mean - f_l.mean) << " points |\n";
      }
      md << "\nChoosing to reason is worth " << points(f_l.mean - b_l.mean)
         << " points to the base (base → base forced to reason)";
      if (zero_forced)
        md << "; reasoning better shows when both models are forced to reason ("
           << points(interval((*zero_forced)["pass1_lenient"]).mean - f_l.mean) << " points)";
      md << ". R1-Zero against the forced base (" << points(z_l.mean - f_l.mean)
         << " points) is what RL adds beyond a prompt that makes the base reason.\n";
    }
    md << "\n";
    summary["r1zero"] = z;
  }

  // Language consistency.
  const json* lang = eval_of(r, "r1zero_lang");
  if (base && zero && lang) {
    json l;
    l["zh_mixed_base"] = zh_mixed(*base);
    l["zh_mixed_without_reward"] = zh_mixed(*zero);
    l["zh_mixed_with_reward"] = zh_mixed(*lang);
    const Interval a = interval((*zero)["pass1_lenient"]), b = interval((*lang)["pass1_lenient"]);
    l["pass1_lenient_without"] = a.mean;
    l["pass1_lenient_with"] = b.mean;
    l["accuracy_change_points"] = 100 * (b.mean - a.mean);
    md << "## Language-consistency reward\n\n"
       << "Both runs start from the same base with the same seed and steps; the second adds the "
          "language reward (weight "
       << config.value("language_weight", 0.0)
       << ": the share of the reasoning's words in the prompt's language).\n\n"
       << "| | zh responses with mixed reasoning | all reasoning responses mixed | pass@1 lenient |\n"
       << "|---|---|---|---|\n"
       << "| base | " << pct(zh_mixed(*base)) << " | " << pct((*base)["mixed_rate"].get<double>())
       << " | " << pct_ci(interval((*base)["pass1_lenient"])) << " |\n"
       << "| R1-Zero (accuracy reward) | " << pct(zh_mixed(*zero)) << " | "
       << pct((*zero)["mixed_rate"].get<double>()) << " | " << pct_ci(a) << " |\n"
       << "| R1-Zero + language reward | " << pct(zh_mixed(*lang)) << " | "
       << pct((*lang)["mixed_rate"].get<double>()) << " | " << pct_ci(b) << " |\n\n"
       << "Accuracy change from the language reward: " << points(b.mean - a.mean)
       << " points (lenient pass@1).\n\n";
    summary["language"] = l;
  }

  // Distillation vs RL.
  const json* sb = eval_of(r, "student_base");
  const json* srl = eval_of(r, "student_rl");
  const json* sd = eval_of(r, "student_distill");
  if (sb && srl && sd) {
    const double rl_s = r.at("student_rl").value("rl_seconds", 0.0);
    const double sft_s = r.at("student_distill")["train"].value("seconds", 0.0);
    md << "## Distillation vs RL for a small student\n\n"
       << "The student is a dense model about a third of the teacher's size, pretrained on the "
          "same tasks where only "
       << pct(config.value("student_reasoning_share", 0.0))
       << " of the documents reason. From that same checkpoint: RL alone (GRPO, accuracy "
          "reward), or SFT on the final R1 model's verified samples for about as many tokens as "
          "the RL generated and trained on (the same compute, counted in tokens).\n\n"
       << "| student | pass@1 lenient | pass@1 strict | greedy lenient | reasons first | "
          "training seconds |\n|---|---|---|---|---|---|\n";
    auto row = [&](const char* label, const json& e, double secs) {
      md << "| " << label << " | " << pct_ci(interval(e["pass1_lenient"])) << " | "
         << pct_ci(interval(e["pass1_strict"])) << " | " << pct_ci(interval(e["greedy_lenient"]))
         << " | " << pct(e["reasons_first_rate"].get<double>()) << " | "
         << (secs > 0 ? num(secs) : std::string("–")) << " |\n";
    };
    row("base", *sb, 0);
    row("RL alone", *srl, rl_s);
    row("distilled from R1", *sd, sft_s);
    md << "\n";
    summary["distillation"] = {{"base", eval_summary(*sb)},
                               {"rl", eval_summary(*srl)},
                               {"distill", eval_summary(*sd)},
                               {"rl_seconds", rl_s},
                               {"distill_seconds", sft_s}};
  }

  // Speed (varies from run to run, unlike everything above).
  md << "## Time (varies from run to run; every number above is deterministic for a seed)\n\n";
  if (r.count("r1zero")) {
    const json& z = r.at("r1zero");
    const double rl_s = z.value("rl_seconds", 0.0);
    const json& rl = z["rl"];
    summary["speed"] = {{"r1zero_rl_seconds", rl_s},
                        {"prototype_rl_seconds", kPrototypeRlSeconds},
                        {"speedup_vs_prototype", rl_s > 0 ? kPrototypeRlSeconds / rl_s : 0},
                        {"rollout_tok_s", z.value("rollout_tok_s", 0.0)},
                        {"update_tok_s", z.value("update_tok_s", 0.0)},
                        {"rollout_seconds", rl.value("rollout_seconds", 0.0)},
                        {"update_seconds", rl.value("update_seconds", 0.0)}};
    md << "R1-Zero RL stage (" << config.value("r1zero_steps", 0) << " steps of "
       << config.value("prompts_per_step", 0) << " prompts x G = " << config.value("group", 0)
       << "): " << num(rl_s) << " s of rollout and update ("
       << num(rl.value("rollout_seconds", 0.0)) << " s rollout at "
       << human_count(z.value("rollout_tok_s", 0.0)) << " tok/s, "
       << num(rl.value("update_seconds", 0.0)) << " s update at "
       << human_count(z.value("update_tok_s", 0.0)) << " tok/s), against "
       << kPrototypeRlSeconds << " s for the PyTorch prototype: "
       << num(rl_s > 0 ? kPrototypeRlSeconds / rl_s : 0) << "x faster.\n\n";
  }
  md << "| stage | seconds |\n|---|---|\n";
  double total = 0;
  json secs = json::object();
  for (const auto& [name, res] : r) {
    (void)name;
    total += res.value("seconds", 0.0);
  }
  for (const auto& name : {"data", "base", "r1zero", "r1zero_lang", "coldstart", "reasoning_rl",
                           "rejection", "rs_sft", "final_rl", "student_base", "student_rl",
                           "student_distill"}) {
    auto it = r.find(name);
    if (it == r.end()) continue;
    md << "| " << name << " | " << num(it->second.value("seconds", 0.0)) << " |\n";
    secs[name] = it->second.value("seconds", 0.0);
  }
  md << "| **total** | " << num(total) << " |\n\n";
  summary["stage_seconds"] = secs;
  summary["total_seconds"] = total;

  md << "## Plots\n\n" << write_plots(run_dir, r);
  write_file_atomic(run_dir + "/report.md", md.str());
  write_file_atomic(run_dir + "/summary.json", summary.dump(2) + "\n");
  return summary;
}

}  // namespace seekr::r1
