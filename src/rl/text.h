// UTF-8 decoding and the word counts behind the language-consistency reward.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace seekr::rl {

enum class Lang { En, Zh };

const char* lang_name(Lang lang);  // "en" / "zh"

// The code point at text[pos] and its byte length in *len (>= 1). Invalid or truncated
// sequences decode as -1 with *len = 1, so callers always make progress.
int32_t decode_utf8(std::string_view text, size_t pos, size_t* len);

// Word counts by script (docs/rl-tasks.md, "Language consistency"):
//  zh     every CJK unified ideograph (U+3400-4DBF, U+4E00-9FFF, U+F900-FAFF, U+20000-3134F)
//         is one word, as Chinese has no spaces;
//  en     every maximal run of Latin letters (A-Z, a-z, U+00C0-024F except x and / signs);
//  other  every maximal run of Greek, Cyrillic, Arabic, Hebrew, kana or Hangul letters.
// Digits, punctuation, symbols and whitespace are not words.
struct WordCounts {
  size_t zh = 0;
  size_t en = 0;
  size_t other = 0;
  size_t total() const { return zh + en + other; }
};
WordCounts count_words(std::string_view text);

// Occurrences of a non-empty needle, overlapping ones included.
size_t count_occurrences(std::string_view text, std::string_view needle);

// Zh when the text has at least one ideograph and no fewer ideographs than Latin words.
Lang detect_language(std::string_view text);

// Share of words in `lang`: in [0, 1]; 1 when there are no words at all (nothing is mixed).
double language_share(std::string_view text, Lang lang);

}  // namespace seekr::rl
