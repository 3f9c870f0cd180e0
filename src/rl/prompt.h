// Prompt templates: DeepSeek-R1-Zero's (R1 paper, Table 1), DeepSeek-R1's chat template and a
// short one for tiny models.
#pragma once

#include <string>
#include <string_view>

namespace seekr::rl {

enum class Template {
  R1Zero,  // the paper's text, "... User: <question>. Assistant:"
  QA,      // "Q: <question>\nA:"
  R1Chat,  // DeepSeek-R1's chat template: "<｜User｜><question><｜Assistant｜>"
};

std::string apply_template(Template t, std::string_view question);

// "r1zero", "qa" or "r1chat"; throws seekr::Error naming the value otherwise.
Template parse_template(std::string_view name);
const char* template_name(Template t);

// DeepSeek-R1's role tokens (special tokens in its tokenizer.json).
inline constexpr const char* kUserToken = "<｜User｜>";
inline constexpr const char* kAssistantToken = "<｜Assistant｜>";

}  // namespace seekr::rl
