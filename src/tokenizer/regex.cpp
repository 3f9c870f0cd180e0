#include "tokenizer/regex.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "core/check.h"

namespace seekr::tokenizer_detail {
namespace {

// Per-thread match data and JIT stack: allocating them per call would dominate the cost of
// matching the many short pieces a document splits into.
struct ThreadMatchState {
  pcre2_match_data* md = nullptr;
  pcre2_jit_stack* stack = nullptr;
  pcre2_match_context* ctx = nullptr;
  ThreadMatchState() {
    md = pcre2_match_data_create(1, nullptr);
    stack = pcre2_jit_stack_create(32 * 1024, 4 * 1024 * 1024, nullptr);
    ctx = pcre2_match_context_create(nullptr);
    SEEKR_CHECK(md && stack && ctx, "pcre2 allocation failed");
    pcre2_jit_stack_assign(ctx, nullptr, stack);
  }
  ~ThreadMatchState() {
    pcre2_match_context_free(ctx);
    pcre2_jit_stack_free(stack);
    pcre2_match_data_free(md);
  }
};

ThreadMatchState& thread_state() {
  thread_local ThreadMatchState state;
  return state;
}

std::string pcre2_message(int code) {
  PCRE2_UCHAR buf[256];
  pcre2_get_error_message(code, buf, sizeof(buf));
  return reinterpret_cast<const char*>(buf);
}

}  // namespace

Regex::Regex(const std::string& pattern, const std::string& where) : pattern_(pattern) {
  int err = 0;
  PCRE2_SIZE err_off = 0;
  // UCP makes \s, \w, \d Unicode-aware as in Oniguruma; MATCH_INVALID_UTF lets us feed raw
  // bytes without validation (invalid sequences simply never match).
  pcre2_code* code =
      pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                    PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &err, &err_off, nullptr);
  SEEKR_REQUIRE(code != nullptr, where, ": regex does not compile at offset ", err_off, ": ",
                pcre2_message(err), " (pattern: ", pattern, ")");
  // JIT is an optimisation: without it (e.g. on a platform lacking JIT support) matching is
  // slower but identical.
  pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);
  code_ = code;
}

Regex::~Regex() {
  pcre2_code_free(static_cast<pcre2_code*>(code_));
}

void Regex::find_all(std::string_view subject, std::vector<std::pair<size_t, size_t>>& out) const {
  auto& st = thread_state();
  auto* code = static_cast<pcre2_code*>(code_);
  const auto* s = reinterpret_cast<PCRE2_SPTR>(subject.data());
  size_t pos = 0;
  while (pos <= subject.size()) {
    int rc = pcre2_match(code, s, subject.size(), pos, 0, st.md, st.ctx);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    SEEKR_REQUIRE(rc >= 0, "regex match failed: ", pcre2_message(rc), " (pattern: ", pattern_, ")");
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(st.md);
    size_t b = ov[0], e = ov[1];
    out.emplace_back(b, e);
    if (e > b) {
      pos = e;
    } else {
      // Empty match: step over one character (one byte if it is not valid UTF-8), as
      // Oniguruma's find_iter does, so the loop always advances.
      if (e >= subject.size()) break;
      size_t step = 1;
      unsigned char c = static_cast<unsigned char>(subject[e]);
      if (c >= 0xC0) {
        step = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2;
        for (size_t k = 1; k < step; ++k) {
          if (e + k >= subject.size() ||
              (static_cast<unsigned char>(subject[e + k]) & 0xC0) != 0x80) {
            step = 1;
            break;
          }
        }
      }
      pos = e + step;
    }
  }
}

std::string Regex::quote(std::string_view literal) {
  // \Q...\E quoting, with any \E inside the literal split out.
  std::string out = "\\Q";
  for (size_t i = 0; i < literal.size(); ++i) {
    if (literal[i] == '\\' && i + 1 < literal.size() && literal[i + 1] == 'E') {
      out += "\\E\\\\E\\Q";
      ++i;
    } else {
      out += literal[i];
    }
  }
  out += "\\E";
  return out;
}

}  // namespace seekr::tokenizer_detail
