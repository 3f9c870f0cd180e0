// seekr: one CLI, one subcommand per stage. Subcommands live in tools/cmd_*.cpp.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <unistd.h>
#include <exception>

#include "command.h"
#include "core/check.h"

namespace seekr::cli {
std::vector<Command>& registry() {
  static std::vector<Command> commands;
  return commands;
}
}  // namespace seekr::cli

static void print_usage() {
  auto commands = seekr::cli::registry();
  std::sort(commands.begin(), commands.end(),
            [](const auto& a, const auto& b) { return std::strcmp(a.name, b.name) < 0; });
  std::printf(
      "seekr: build, train and serve DeepSeek-V3-architecture models; run the R1 pipeline.\n\n"
      "usage: seekr <command> [options]   (seekr <command> --help for details)\n\ncommands:\n");
  for (const auto& c : commands) std::printf("  %-12s %s\n", c.name, c.summary);
}

int main(int argc, char** argv) {
  // OpenMP threads that spin between parallel regions steal the core OpenBLAS and the other
  // thread need (measured: 2-thread decode 14x slower with spinning on this 2-core VM). GOMP
  // reads the policy only at start-up, so set it and restart once unless the user chose one.
  if (!std::getenv("OMP_WAIT_POLICY")) {
    setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
    execv("/proc/self/exe", argv);  // returns only on failure: then run with the default
  }
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h") ||
      !std::strcmp(argv[1], "help")) {
    print_usage();
    return argc < 2 ? 2 : 0;
  }
  for (const auto& c : seekr::cli::registry()) {
    if (!std::strcmp(c.name, argv[1])) {
      try {
        return c.run(argc - 1, argv + 1);
      } catch (const seekr::Error& e) {
        std::fprintf(stderr, "seekr %s: error: %s\n", c.name, e.what());
        return 1;
      }
    }
  }
  std::fprintf(stderr, "seekr: unknown command '%s'\n\n", argv[1]);
  print_usage();
  return 2;
}
