// Byte-level BPE tokenizer that loads and writes Hugging Face `tokenizer.json` files and encodes
// exactly as the HF `tokenizers` library does (checked id-for-id against its Node binding on
// DeepSeek-V3's tokenizer; see docs/tokenizer.md for what is supported).
//
// Invalid UTF-8 input never crashes: bytes that are not part of a valid UTF-8 sequence are never
// matched by the pre-tokenizer regexes, so they form their own pieces and are encoded through the
// byte-level alphabet; decode_bytes() gives them back unchanged.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace seekr {

namespace tokenizer_detail {
struct Impl;
}

class Tokenizer {
 public:
  // Both throw seekr::Error naming the file (or origin) and the JSON field at fault.
  static Tokenizer from_file(const std::string& path);
  static Tokenizer from_json(const std::string& json_text, const std::string& origin_for_errors);

  // add_special_tokens applies the post_processor (e.g. TemplateProcessing adding a BOS id).
  std::vector<int32_t> encode(std::string_view text, bool add_special_tokens = false) const;

  // As HF: tokens are concatenated through the decoder and invalid UTF-8 in the result is
  // replaced by U+FFFD (one per maximal invalid subpart). Unknown ids throw seekr::Error.
  std::string decode(std::span<const int32_t> ids, bool skip_special_tokens = false) const;
  // Like decode() but returns the raw bytes, without U+FFFD replacement: what streaming
  // generation needs when an id sequence ends in the middle of a character.
  std::string decode_bytes(std::span<const int32_t> ids, bool skip_special_tokens = false) const;

  int vocab_size() const;  // including added tokens (max id + 1)
  std::optional<int32_t> token_to_id(std::string_view token) const;
  std::string id_to_token(int32_t id) const;  // "" for an id that has no token
  bool is_special(int32_t id) const;          // an added token marked "special"

  std::string to_json() const;  // a valid HF tokenizer.json
  // Written atomically: temp file in the same directory, fsync, rename.
  void save(const std::string& path) const;

  Tokenizer(const Tokenizer&) = default;
  Tokenizer& operator=(const Tokenizer&) = default;
  Tokenizer(Tokenizer&&) noexcept = default;
  Tokenizer& operator=(Tokenizer&&) noexcept = default;
  ~Tokenizer();

  explicit Tokenizer(std::shared_ptr<tokenizer_detail::Impl> impl);

 private:
  // Immutable after loading except for the internal word cache, which is thread-safe; copies
  // share it.
  std::shared_ptr<tokenizer_detail::Impl> impl_;
};

struct BpeTrainConfig {
  int vocab_size = 4096;  // including the special tokens and the 256 byte tokens
  // Added as special tokens with ids 0.. in this order; their occurrences in the training text
  // are treated as boundaries and never learned from.
  std::vector<std::string> special_tokens;
  // If set (must be one of special_tokens), encode(..., add_special_tokens=true) prepends it.
  std::string bos_token;
  // Pairs seen fewer times than this are never merged (training may stop below vocab_size).
  int64_t min_frequency = 2;
  // Longest digit run one pre-token may hold: 3 as in DeepSeek-V3; 1 gives one token per digit,
  // which small models doing column arithmetic need.
  int max_digits = 3;
};

// Learns a byte-level BPE vocabulary: special tokens first (ids 0..), then the 256 byte tokens
// in byte order, then one token per merge. Uses DeepSeek-V3's pre-tokenizer (digit runs of
// 1-max_digits, CJK runs, then its word regex). Deterministic: the most frequent pair wins, ties go to
// the pair with the smaller (left id, right id).
Tokenizer train_bpe(std::span<const std::string> texts, const BpeTrainConfig& config);
// Same, reading each path as one document.
Tokenizer train_bpe_files(std::span<const std::string> paths, const BpeTrainConfig& config);

}  // namespace seekr
