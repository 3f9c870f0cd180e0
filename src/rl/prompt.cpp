#include "rl/prompt.h"

#include "core/check.h"

namespace seekr::rl {

std::string apply_template(Template t, std::string_view question) {
  if (t == Template::QA) return "Q: " + std::string(question) + "\nA:";
  // Verbatim from the paper, including the period after the prompt.
  return "A conversation between User and Assistant. The user asks a question, and the Assistant "
         "solves it. The assistant first thinks about the reasoning process in the mind and then "
         "provides the user with the answer. The reasoning process and answer are enclosed within "
         "<think> </think> and <answer> </answer> tags, respectively, i.e., <think> reasoning "
         "process here </think> <answer> answer here </answer>. User: " +
         std::string(question) + ". Assistant:";
}

Template parse_template(std::string_view name) {
  if (name == "r1zero") return Template::R1Zero;
  if (name == "qa") return Template::QA;
  throw Error("unknown prompt template \"" + std::string(name) + "\" (expected r1zero or qa)");
}

}  // namespace seekr::rl
