// A compiled PCRE2 regex (UTF + Unicode properties, JIT) with onig-compatible find-all, as the
// HF tokenizers library uses for its Split pre-tokenizer.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace seekr::tokenizer_detail {

class Regex {
 public:
  // Throws seekr::Error with `where` and the PCRE2 message if the pattern does not compile.
  Regex(const std::string& pattern, const std::string& where);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // All non-overlapping matches [begin, end) in `subject`, left to right. Invalid UTF-8 in the
  // subject is allowed: no match ever includes an invalid byte.
  void find_all(std::string_view subject, std::vector<std::pair<size_t, size_t>>& out) const;
  const std::string& pattern() const { return pattern_; }

  // Escapes a literal string for use as a pattern.
  static std::string quote(std::string_view literal);

 private:
  std::string pattern_;
  void* code_ = nullptr;  // pcre2_code_8*
};

}  // namespace seekr::tokenizer_detail
