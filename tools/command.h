// Subcommand registry for the seekr CLI. Each tools/cmd_*.cpp registers its commands with
// SEEKR_COMMAND, so adding a subcommand never means editing a central table.
#pragma once

#include <string>
#include <vector>

namespace seekr::cli {

struct Command {
  const char* name;     // e.g. "tokenizer"
  const char* summary;  // one line for `seekr --help`
  int (*run)(int argc, char** argv);  // argv[0] is the subcommand name
};

std::vector<Command>& registry();

struct Registrar {
  explicit Registrar(Command c) { registry().push_back(c); }
};

}  // namespace seekr::cli

#define SEEKR_COMMAND(name, summary, fn) \
  static ::seekr::cli::Registrar seekr_registrar_##fn({name, summary, fn})
