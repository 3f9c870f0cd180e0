#include "rl/text.h"

namespace seekr::rl {

const char* lang_name(Lang lang) {
  return lang == Lang::Zh ? "zh" : "en";
}

int32_t decode_utf8(std::string_view text, size_t pos, size_t* len) {
  const auto b0 = static_cast<unsigned char>(text[pos]);
  *len = 1;
  if (b0 < 0x80) return b0;
  size_t n;
  int32_t cp;
  if ((b0 & 0xE0) == 0xC0) {
    n = 2;
    cp = b0 & 0x1F;
  } else if ((b0 & 0xF0) == 0xE0) {
    n = 3;
    cp = b0 & 0x0F;
  } else if ((b0 & 0xF8) == 0xF0) {
    n = 4;
    cp = b0 & 0x07;
  } else {
    return -1;
  }
  if (pos + n > text.size()) return -1;
  for (size_t k = 1; k < n; ++k) {
    const auto b = static_cast<unsigned char>(text[pos + k]);
    if ((b & 0xC0) != 0x80) return -1;
    cp = (cp << 6) | (b & 0x3F);
  }
  // Overlong encodings would let one code point hide behind another's bytes.
  static constexpr int32_t kMin[5] = {0, 0, 0x80, 0x800, 0x10000};
  if (cp < kMin[n] || cp > 0x10FFFF) return -1;
  *len = n;
  return cp;
}

namespace {

enum class Script { None, Han, Latin, Other };

Script script_of(int32_t cp) {
  if ((cp >= 'A' && cp <= 'Z') || (cp >= 'a' && cp <= 'z')) return Script::Latin;
  if (cp >= 0xC0 && cp <= 0x24F && cp != 0xD7 && cp != 0xF7) return Script::Latin;
  if ((cp >= 0x3400 && cp <= 0x4DBF) || (cp >= 0x4E00 && cp <= 0x9FFF) ||
      (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0x20000 && cp <= 0x3134F))
    return Script::Han;
  if ((cp >= 0x370 && cp <= 0x3FF) || (cp >= 0x400 && cp <= 0x4FF) ||
      (cp >= 0x5D0 && cp <= 0x5EA) || (cp >= 0x620 && cp <= 0x64A) ||
      (cp >= 0x3041 && cp <= 0x30FF) || (cp >= 0xAC00 && cp <= 0xD7AF))
    return Script::Other;
  return Script::None;
}

}  // namespace

WordCounts count_words(std::string_view text) {
  WordCounts wc;
  Script prev = Script::None;
  for (size_t i = 0; i < text.size();) {
    size_t len = 0;
    const Script s = script_of(decode_utf8(text, i, &len));
    i += len;
    if (s == Script::Han) ++wc.zh;
    if (s == Script::Latin && prev != Script::Latin) ++wc.en;
    if (s == Script::Other && prev != Script::Other) ++wc.other;
    prev = s;
  }
  return wc;
}

size_t count_occurrences(std::string_view text, std::string_view needle) {
  size_t n = 0;
  for (size_t p = text.find(needle); p != std::string_view::npos; p = text.find(needle, p + 1)) ++n;
  return n;
}

Lang detect_language(std::string_view text) {
  const WordCounts wc = count_words(text);
  return wc.zh > 0 && wc.zh >= wc.en ? Lang::Zh : Lang::En;
}

double language_share(std::string_view text, Lang lang) {
  const WordCounts wc = count_words(text);
  if (wc.total() == 0) return 1.0;
  return static_cast<double>(lang == Lang::Zh ? wc.zh : wc.en) / static_cast<double>(wc.total());
}

}  // namespace seekr::rl
