// Byte-level BPE training with incrementally maintained pair counts.
#include <algorithm>
#include <queue>
#include <unordered_set>

#include "core/check.h"
#include "core/file_io.h"
#include "tokenizer/impl.h"
#include "tokenizer/tokenizer.h"

namespace seekr {
using namespace tokenizer_detail;

namespace {

uint64_t pair_key(int32_t a, int32_t b) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
}

struct Word {
  std::vector<int32_t> syms;
  int64_t count;
};

struct HeapEntry {
  int64_t count;
  int32_t a, b;
  // Max-heap order: higher count first, then the smaller (a, b).
  bool operator<(const HeapEntry& o) const {
    if (count != o.count) return count < o.count;
    if (a != o.a) return a > o.a;
    return b > o.b;
  }
};

}  // namespace

Tokenizer train_bpe(std::span<const std::string> texts, const BpeTrainConfig& cfg) {
  const int n_special = static_cast<int>(cfg.special_tokens.size());
  SEEKR_REQUIRE(cfg.vocab_size >= n_special + 256, "train_bpe: vocab_size ", cfg.vocab_size,
                " is below the ", n_special + 256, " special + byte tokens");
  SEEKR_REQUIRE(cfg.min_frequency >= 1, "train_bpe: min_frequency must be >= 1");
  SEEKR_REQUIRE(cfg.max_digits >= 1, "train_bpe: max_digits must be >= 1");
  std::unordered_set<std::string> seen_special;
  for (const std::string& s : cfg.special_tokens) {
    SEEKR_REQUIRE(!s.empty() && is_valid_utf8(s), "train_bpe: special token '", s,
                  "' must be non-empty valid UTF-8");
    SEEKR_REQUIRE(seen_special.insert(s).second, "train_bpe: special token '", s,
                  "' is listed twice");
  }
  SEEKR_REQUIRE(cfg.bos_token.empty() || seen_special.count(cfg.bos_token),
                "train_bpe: bos_token '", cfg.bos_token, "' is not one of the special tokens");

  // The pipeline the trained tokenizer will use, so training sees exactly its pieces.
  Impl pipe;
  pipe.origin = "train_bpe";
  for (int i = 0; i < n_special; ++i)
    pipe.added.push_back({i, cfg.special_tokens[i], true, false, false, false, false});
  pipe.finalize();
  parse_pre_tokenizer(pipe, deepseek_pre_tokenizer_json(cfg.max_digits), "pre_tokenizer");

  // 1. Count pre-tokenized words.
  std::unordered_map<std::string, int64_t> word_counts;
  {
    std::vector<Segment> segs;
    std::vector<std::string_view> pieces;
    for (const std::string& text : texts) {
      segs.clear();
      pipe.raw_matcher.split(text, segs);
      PieceArena arena;
      for (const Segment& s : segs) {
        if (s.id >= 0) continue;  // special tokens are boundaries, never learned from
        pieces.clear();
        pre_tokenize(pipe.pre_steps, s.text, pieces, arena);
        for (std::string_view p : pieces) ++word_counts[std::string(p)];
      }
    }
  }

  // 2. Words as symbol ids; byte b is id n_special + b.
  std::vector<Word> words;
  words.reserve(word_counts.size());
  for (auto& [w, c] : word_counts) {
    Word word{{}, c};
    word.syms.reserve(w.size());
    for (unsigned char ch : w) word.syms.push_back(n_special + ch);
    words.push_back(std::move(word));
  }
  word_counts.clear();

  std::vector<std::string> tokens;  // id -> byte-level token string
  std::unordered_set<std::string> token_set;
  for (const std::string& s : cfg.special_tokens) tokens.push_back(s);
  for (int b = 0; b < 256; ++b) tokens.push_back(byte_level().byte_to_str[b]);
  token_set.insert(tokens.begin(), tokens.end());

  // 3. Initial pair counts and where each pair occurs.
  std::unordered_map<uint64_t, int64_t> counts;
  std::unordered_map<uint64_t, std::vector<int32_t>> where;
  for (size_t w = 0; w < words.size(); ++w) {
    const auto& s = words[w].syms;
    for (size_t i = 0; i + 1 < s.size(); ++i) {
      uint64_t k = pair_key(s[i], s[i + 1]);
      counts[k] += words[w].count;
      auto& v = where[k];
      if (v.empty() || v.back() != static_cast<int32_t>(w)) v.push_back(static_cast<int32_t>(w));
    }
  }
  std::priority_queue<HeapEntry> heap;
  for (auto& [k, c] : counts)
    heap.push({c, static_cast<int32_t>(k >> 32), static_cast<int32_t>(k & 0xFFFFFFFFu)});

  // 4. Merge loop. Counts of existing pairs only ever fall (new pairs all contain the new
  // token), so a heap entry's count is an upper bound: refresh stale entries when popped.
  std::vector<std::pair<int32_t, int32_t>> merges;
  std::vector<uint32_t> stamp(words.size(), 0);
  uint32_t epoch = 0;
  std::vector<int32_t> merged;
  std::vector<uint64_t> new_pairs;
  while (static_cast<int>(tokens.size()) < cfg.vocab_size && !heap.empty()) {
    HeapEntry top = heap.top();
    heap.pop();
    uint64_t key = pair_key(top.a, top.b);
    auto cit = counts.find(key);
    int64_t actual = cit == counts.end() ? 0 : cit->second;
    if (actual != top.count) {
      if (actual > 0) heap.push({actual, top.a, top.b});
      continue;
    }
    if (top.count < cfg.min_frequency) break;
    std::string merged_str = tokens[top.a] + tokens[top.b];
    if (token_set.count(merged_str)) {
      // Only possible when a special token's text equals a byte-level string; never merge
      // into a duplicate vocab entry.
      counts.erase(cit);
      continue;
    }
    const int32_t new_id = static_cast<int32_t>(tokens.size());
    tokens.push_back(merged_str);
    token_set.insert(std::move(merged_str));
    merges.emplace_back(top.a, top.b);

    ++epoch;
    new_pairs.clear();
    std::vector<int32_t> occ = std::move(where[key]);
    where.erase(key);
    for (int32_t wi : occ) {
      if (stamp[wi] == epoch) continue;
      stamp[wi] = epoch;
      Word& w = words[wi];
      auto& s = w.syms;
      merged.clear();
      bool hit = false;
      for (size_t i = 0; i < s.size();) {
        if (i + 1 < s.size() && s[i] == top.a && s[i + 1] == top.b) {
          merged.push_back(new_id);
          i += 2;
          hit = true;
        } else {
          merged.push_back(s[i++]);
        }
      }
      if (!hit) continue;  // stale occurrence list entry
      for (size_t i = 0; i + 1 < s.size(); ++i) counts[pair_key(s[i], s[i + 1])] -= w.count;
      for (size_t i = 0; i + 1 < merged.size(); ++i) {
        uint64_t k = pair_key(merged[i], merged[i + 1]);
        counts[k] += w.count;
        if (merged[i] == new_id || merged[i + 1] == new_id) {
          auto& v = where[k];
          if (v.empty() || v.back() != wi) v.push_back(wi);
          new_pairs.push_back(k);
        }
      }
      s.swap(merged);
    }
    counts.erase(key);
    std::sort(new_pairs.begin(), new_pairs.end());
    new_pairs.erase(std::unique(new_pairs.begin(), new_pairs.end()), new_pairs.end());
    for (uint64_t k : new_pairs) {
      int64_t c = counts[k];
      if (c > 0)
        heap.push({c, static_cast<int32_t>(k >> 32), static_cast<int32_t>(k & 0xFFFFFFFFu)});
    }
  }

  // 5. Assemble an HF tokenizer.json and load it through the normal path, so a trained
  // tokenizer is by construction one that from_json accepts.
  OJson doc;
  doc["version"] = "1.0";
  doc["truncation"] = nullptr;
  doc["padding"] = nullptr;
  OJson added = OJson::array();
  for (int i = 0; i < n_special; ++i)
    added.push_back({{"id", i},
                     {"content", cfg.special_tokens[i]},
                     {"single_word", false},
                     {"lstrip", false},
                     {"rstrip", false},
                     {"normalized", false},
                     {"special", true}});
  doc["added_tokens"] = std::move(added);
  doc["normalizer"] = nullptr;
  doc["pre_tokenizer"] = deepseek_pre_tokenizer_json(cfg.max_digits);
  if (cfg.bos_token.empty()) {
    doc["post_processor"] = {{"type", "ByteLevel"},
                             {"add_prefix_space", true},
                             {"trim_offsets", false},
                             {"use_regex", true}};
  } else {
    const std::string& bos = cfg.bos_token;
    auto special = [&](int type_id) {
      return OJson{{"SpecialToken", {{"id", bos}, {"type_id", type_id}}}};
    };
    auto seq = [](const char* id, int type_id) {
      return OJson{{"Sequence", {{"id", id}, {"type_id", type_id}}}};
    };
    int32_t bos_id =
        static_cast<int32_t>(std::find(cfg.special_tokens.begin(), cfg.special_tokens.end(), bos) -
                             cfg.special_tokens.begin());
    doc["post_processor"] = {
        {"type", "TemplateProcessing"},
        {"single", {special(0), seq("A", 0)}},
        {"pair", {special(0), seq("A", 0), special(1), seq("B", 1)}},
        {"special_tokens", {{bos, {{"id", bos}, {"ids", {bos_id}}, {"tokens", {bos}}}}}}};
  }
  doc["decoder"] = {{"type", "ByteLevel"},
                    {"add_prefix_space", true},
                    {"trim_offsets", true},
                    {"use_regex", true}};
  OJson model;
  model["type"] = "BPE";
  model["dropout"] = nullptr;
  model["unk_token"] = nullptr;
  model["continuing_subword_prefix"] = nullptr;
  model["end_of_word_suffix"] = nullptr;
  model["fuse_unk"] = false;
  model["byte_fallback"] = false;
  model["ignore_merges"] = false;
  OJson vocab = OJson::object();
  auto& vobj = vocab.get_ref<OJson::object_t&>();
  for (size_t id = 0; id < tokens.size(); ++id)
    vobj.emplace_back(std::piecewise_construct, std::forward_as_tuple(tokens[id]),
                      std::forward_as_tuple(static_cast<int64_t>(id)));
  model["vocab"] = std::move(vocab);
  OJson mj = OJson::array();
  for (auto [a, b] : merges) mj.push_back({tokens[a], tokens[b]});
  model["merges"] = std::move(mj);
  doc["model"] = std::move(model);
  return Tokenizer::from_json(doc.dump(), "<train_bpe>");
}

Tokenizer train_bpe_files(std::span<const std::string> paths, const BpeTrainConfig& cfg) {
  std::vector<std::string> texts;
  texts.reserve(paths.size());
  for (const std::string& p : paths) texts.push_back(read_file(p));
  return train_bpe(texts, cfg);
}

}  // namespace seekr
