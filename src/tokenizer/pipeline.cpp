// Text-level pieces of the pipeline: UTF-8 helpers, the byte-level alphabet, the Split /
// ByteLevel pre-tokenizers and added-token matching. Semantics follow HF tokenizers.
#include <algorithm>

#include "core/check.h"
#include "tokenizer/impl.h"

namespace seekr::tokenizer_detail {

// ---- UTF-8 --------------------------------------------------------------------------------

int utf8_valid_len(std::string_view s, size_t i) {
  auto b = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  const size_t n = s.size();
  unsigned char c = b(i);
  if (c < 0x80) return 1;
  auto cont = [&](size_t k) { return k < n && (b(k) & 0xC0) == 0x80; };
  if (c >= 0xC2 && c <= 0xDF) return cont(i + 1) ? 2 : 0;
  if (c >= 0xE0 && c <= 0xEF) {
    if (i + 1 >= n) return 0;
    unsigned char c1 = b(i + 1);
    // Exclude overlongs (E0 80..9F) and surrogates (ED A0..BF).
    if ((c == 0xE0 && c1 < 0xA0) || (c == 0xED && c1 > 0x9F)) return 0;
    return cont(i + 1) && cont(i + 2) ? 3 : 0;
  }
  if (c >= 0xF0 && c <= 0xF4) {
    if (i + 1 >= n) return 0;
    unsigned char c1 = b(i + 1);
    if ((c == 0xF0 && c1 < 0x90) || (c == 0xF4 && c1 > 0x8F)) return 0;
    return cont(i + 1) && cont(i + 2) && cont(i + 3) ? 4 : 0;
  }
  return 0;
}

uint32_t utf8_decode(std::string_view s, size_t i, int len) {
  auto b = [&](size_t k) { return static_cast<uint32_t>(static_cast<unsigned char>(s[k])); };
  switch (len) {
    case 1:
      return b(i);
    case 2:
      return ((b(i) & 0x1F) << 6) | (b(i + 1) & 0x3F);
    case 3:
      return ((b(i) & 0x0F) << 12) | ((b(i + 1) & 0x3F) << 6) | (b(i + 2) & 0x3F);
    default:
      return ((b(i) & 0x07) << 18) | ((b(i + 1) & 0x3F) << 12) | ((b(i + 2) & 0x3F) << 6) |
             (b(i + 3) & 0x3F);
  }
}

void utf8_append(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

bool is_unicode_whitespace(uint32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F ||
         cp == 0x205F || cp == 0x3000;
}

bool is_valid_utf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    int len = utf8_valid_len(s, i);
    if (len == 0) return false;
    i += len;
  }
  return true;
}

std::string utf8_lossy(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    int len = utf8_valid_len(s, i);
    if (len > 0) {
      out.append(s.substr(i, len));
      i += len;
      continue;
    }
    // A maximal invalid subpart is the longest prefix of a would-be valid sequence (at least
    // one byte); Rust replaces each with a single U+FFFD.
    size_t skip = 1;
    unsigned char c = static_cast<unsigned char>(s[i]);
    int want = (c >= 0xC2 && c <= 0xDF)   ? 2
               : (c >= 0xE0 && c <= 0xEF) ? 3
               : (c >= 0xF0 && c <= 0xF4) ? 4
                                          : 1;
    for (int k = 1; k < want && i + k < s.size(); ++k) {
      unsigned char ck = static_cast<unsigned char>(s[i + k]);
      unsigned char lo = 0x80, hi = 0xBF;
      if (k == 1) {
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
      }
      if (ck < lo || ck > hi) break;
      skip = k + 1;
    }
    out += "\xEF\xBF\xBD";
    i += skip;
  }
  return out;
}

// ---- byte-level alphabet ----------------------------------------------------------------------

ByteLevelAlphabet::ByteLevelAlphabet() {
  std::fill(std::begin(cp_to_byte), std::end(cp_to_byte), int16_t{-1});
  // Printable bytes stand for themselves; the others get codepoints 256, 257, ... in byte
  // order (GPT-2's bytes_to_unicode).
  uint32_t next = 256;
  for (int b = 0; b < 256; ++b) {
    bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
    uint32_t cp = printable ? static_cast<uint32_t>(b) : next++;
    utf8_append(byte_to_str[b], cp);
    cp_to_byte[cp] = static_cast<int16_t>(b);
  }
}

const ByteLevelAlphabet& byte_level() {
  static const ByteLevelAlphabet alphabet;
  return alphabet;
}

std::string byte_level_encode(std::string_view bytes) {
  const auto& bl = byte_level();
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) out += bl.byte_to_str[c];
  return out;
}

// ---- pre-tokenizer ------------------------------------------------------------------------------

const std::shared_ptr<Regex>& gpt2_regex() {
  static const std::shared_ptr<Regex> re = std::make_shared<Regex>(
      R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)",
      "ByteLevel pre-tokenizer");
  return re;
}

namespace {

struct Span {
  size_t b, e;
  bool match;
};

// Splits one piece by regex matches and combines delimiters per HF's SplitDelimiterBehavior.
void split_piece(std::string_view piece, const Regex& re, SplitBehavior behavior, bool invert,
                 std::vector<std::string_view>& out) {
  thread_local std::vector<std::pair<size_t, size_t>> matches;
  thread_local std::vector<Span> spans;
  thread_local std::vector<Span> merged;
  matches.clear();
  spans.clear();
  merged.clear();
  re.find_all(piece, matches);
  size_t prev = 0;
  for (auto [b, e] : matches) {
    if (prev != b) spans.push_back({prev, b, invert});
    spans.push_back({b, e, !invert});
    prev = e;
  }
  if (prev != piece.size()) spans.push_back({prev, piece.size(), invert});

  bool previous_match = false;
  switch (behavior) {
    case SplitBehavior::kRemoved:
      for (const Span& s : spans)
        if (!s.match) merged.push_back(s);
      break;
    case SplitBehavior::kIsolated:
      merged = spans;
      break;
    case SplitBehavior::kMergedWithPrevious:
      for (const Span& s : spans) {
        if (s.match && !previous_match && !merged.empty())
          merged.back().e = s.e;
        else
          merged.push_back(s);
        previous_match = s.match;
      }
      break;
    case SplitBehavior::kMergedWithNext:
      for (auto it = spans.rbegin(); it != spans.rend(); ++it) {
        if (it->match && !previous_match && !merged.empty())
          merged.back().b = it->b;
        else
          merged.push_back(*it);
        previous_match = it->match;
      }
      std::reverse(merged.begin(), merged.end());
      break;
    case SplitBehavior::kContiguous:
      for (const Span& s : spans) {
        if (s.match == previous_match && !merged.empty())
          merged.back().e = s.e;
        else
          merged.push_back(s);
        previous_match = s.match;
      }
      break;
  }
  for (const Span& s : merged)
    if (s.e > s.b) out.push_back(piece.substr(s.b, s.e - s.b));
}

}  // namespace

void pre_tokenize(const std::vector<PreTokStep>& steps, std::string_view text,
                  std::vector<std::string_view>& out, PieceArena& arena) {
  std::vector<std::string_view> cur{text}, next;
  for (const PreTokStep& step : steps) {
    next.clear();
    for (std::string_view piece : cur) {
      if (step.kind == PreTokStep::kSplit) {
        split_piece(piece, *step.regex, step.behavior, step.invert, next);
        continue;
      }
      if (step.add_prefix_space && (piece.empty() || piece[0] != ' ')) {
        arena.owned.push_back(" " + std::string(piece));
        piece = arena.owned.back();
      }
      if (step.use_regex)
        split_piece(piece, *gpt2_regex(), SplitBehavior::kIsolated, false, next);
      else if (!piece.empty())
        next.push_back(piece);
    }
    cur.swap(next);
  }
  for (std::string_view p : cur)
    if (!p.empty()) out.push_back(p);
}

// ---- added tokens -------------------------------------------------------------------------------

void AddedTokenMatcher::build(const std::vector<AddedToken>& tokens, bool normalized) {
  for (auto& v : by_first_byte_) v.clear();
  count_ = 0;
  for (const AddedToken& t : tokens) {
    if (t.normalized != normalized || t.content.empty()) continue;
    by_first_byte_[static_cast<unsigned char>(t.content[0])].push_back(
        {t.content, t.id, t.lstrip, t.rstrip});
    ++count_;
  }
  for (auto& v : by_first_byte_)
    std::stable_sort(v.begin(), v.end(), [](const Entry& a, const Entry& b) {
      return a.content.size() > b.content.size();
    });
}

void AddedTokenMatcher::split(std::string_view text, std::vector<Segment>& out) const {
  size_t start_offset = 0;  // start of the text not yet emitted
  size_t i = 0;
  while (i < text.size()) {
    const auto& cands = by_first_byte_[static_cast<unsigned char>(text[i])];
    const Entry* hit = nullptr;
    for (const Entry& c : cands) {
      if (text.compare(i, c.content.size(), c.content) == 0) {
        hit = &c;
        break;
      }
    }
    if (!hit) {
      ++i;
      continue;
    }
    size_t start = i, stop = i + hit->content.size();
    if (hit->lstrip) {
      // Absorb whitespace to the left, but never text already emitted.
      size_t j = start;
      while (j > start_offset) {
        size_t k = j - 1;
        while (k > start_offset && (static_cast<unsigned char>(text[k]) & 0xC0) == 0x80) --k;
        int len = utf8_valid_len(text, k);
        if (len == 0 || k + len != j || !is_unicode_whitespace(utf8_decode(text, k, len))) break;
        j = k;
      }
      start = j;
    }
    if (hit->rstrip) {
      while (stop < text.size()) {
        int len = utf8_valid_len(text, stop);
        if (len == 0 || !is_unicode_whitespace(utf8_decode(text, stop, len))) break;
        stop += len;
      }
    }
    if (start_offset < start) out.push_back({text.substr(start_offset, start - start_offset), -1});
    out.push_back({text.substr(start, stop - start), hit->id});
    start_offset = stop;
    i = stop;
  }
  if (start_offset < text.size()) out.push_back({text.substr(start_offset), -1});
}

}  // namespace seekr::tokenizer_detail
