#include "rl/prompt.h"

#include "core/check.h"

namespace seekr::rl {

std::string apply_template(Template t, std::string_view question) {
  switch (t) {
    case Template::QA:
      return "Q: " + std::string(question) + "\nA:";
    case Template::R1Chat:
      // As DeepSeek-R1's chat_template renders one user turn with add_generation_prompt, minus
      // the BOS, which the tokenizer's post-processor adds.
      return std::string(kUserToken) + std::string(question) + kAssistantToken;
    case Template::R1Zero:
      break;
  }
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
  if (name == "r1chat") return Template::R1Chat;
  throw Error("unknown prompt template \"" + std::string(name) +
              "\" (expected r1zero, qa or r1chat)");
}

const char* template_name(Template t) {
  switch (t) {
    case Template::R1Zero: return "r1zero";
    case Template::QA: return "qa";
    case Template::R1Chat: return "r1chat";
  }
  return "?";
}

}  // namespace seekr::rl
