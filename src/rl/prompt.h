// Prompt templates: DeepSeek-R1-Zero's (R1 paper, Table 1) and a short one for tiny models.
#pragma once

#include <string>
#include <string_view>

namespace seekr::rl {

enum class Template {
  R1Zero,  // the paper's text, "... User: <question>. Assistant:"
  QA,      // "Q: <question>\nA:"
};

std::string apply_template(Template t, std::string_view question);

// "r1zero" or "qa"; throws seekr::Error naming the value otherwise.
Template parse_template(std::string_view name);

}  // namespace seekr::rl
