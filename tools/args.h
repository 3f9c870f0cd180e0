// A small command-line parser shared by every subcommand: --name value, --name=value and
// boolean --flag. Unknown flags are errors that name the flag; --help prints the usage.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "core/check.h"

namespace seekr::cli {

class Args {
 public:
  // argv[0] is the subcommand name; usage is printed for --help. Options named in
  // `booleans` never take the next word as their value (so `--jsonl FILE` keeps FILE as a
  // positional argument); other options written without a value read as flags too.
  Args(int argc, char** argv, std::string usage, std::set<std::string> booleans = {})
      : usage_(std::move(usage)) {
    for (int i = 1; i < argc; ++i) {
      std::string a = argv[i];
      if (a == "--help" || a == "-h") {
        std::printf("%s", usage_.c_str());
        std::exit(0);
      }
      if (a.rfind("--", 0) == 0 && a.size() > 2) {
        auto eq = a.find('=');
        if (eq != std::string::npos) {
          values_[a.substr(2, eq - 2)] = a.substr(eq + 1);
        } else if (!booleans.count(a.substr(2)) && i + 1 < argc &&
                   std::string(argv[i + 1]).rfind("--", 0) != 0) {
          values_[a.substr(2)] = argv[++i];
        } else {
          values_[a.substr(2)] = "";  // boolean flag
        }
      } else {
        positional_.push_back(a);
      }
    }
  }

  bool has(const std::string& name) {
    used_.insert(name);
    return values_.count(name) > 0;
  }
  bool flag(const std::string& name) {
    if (!has(name)) return false;
    const std::string& v = values_[name];
    SEEKR_REQUIRE(v.empty() || v == "true" || v == "1" || v == "false" || v == "0",
                  "--", name, " is a flag; got value '", v, "'");
    return v.empty() || v == "true" || v == "1";
  }
  std::string str(const std::string& name, const std::string& def) {
    return has(name) ? values_[name] : def;
  }
  std::string required(const std::string& name) {
    SEEKR_REQUIRE(has(name) && !values_[name].empty(), "missing required option --", name);
    return values_[name];
  }
  long long i64(const std::string& name, long long def) {
    if (!has(name)) return def;
    const std::string& v = values_[name];
    char* end = nullptr;
    long long x = std::strtoll(v.c_str(), &end, 10);
    SEEKR_REQUIRE(!v.empty() && *end == 0, "--", name, " expects an integer; got '", v, "'");
    return x;
  }
  double f64(const std::string& name, double def) {
    if (!has(name)) return def;
    const std::string& v = values_[name];
    char* end = nullptr;
    double x = std::strtod(v.c_str(), &end);
    SEEKR_REQUIRE(!v.empty() && *end == 0, "--", name, " expects a number; got '", v, "'");
    return x;
  }
  const std::vector<std::string>& positional() const { return positional_; }

  // Call after reading every option: an option the command never asked for is a typo.
  void finish() {
    for (const auto& [k, v] : values_)
      SEEKR_REQUIRE(used_.count(k), "unknown option --", k, " (see --help)");
  }

 private:
  std::string usage_;
  std::map<std::string, std::string> values_;
  std::set<std::string> used_;
  std::vector<std::string> positional_;
};

}  // namespace seekr::cli
