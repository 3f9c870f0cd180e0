// Internals shared by the tokenizer and the BPE trainer. Not part of the public API.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tokenizer/regex.h"

namespace seekr::tokenizer_detail {

using OJson = nlohmann::ordered_json;
using Json = nlohmann::json;

// ---- UTF-8 --------------------------------------------------------------------------------

// Length of the valid UTF-8 sequence starting at s[i], or 0 if the bytes there are not one.
int utf8_valid_len(std::string_view s, size_t i);
// Codepoint of the valid sequence of length len at s[i].
uint32_t utf8_decode(std::string_view s, size_t i, int len);
void utf8_append(std::string& out, uint32_t cp);
// Unicode White_Space (Rust's char::is_whitespace).
bool is_unicode_whitespace(uint32_t cp);
// Rust's String::from_utf8_lossy: each maximal invalid subpart becomes one U+FFFD.
std::string utf8_lossy(std::string_view s);
bool is_valid_utf8(std::string_view s);

// ---- byte-level alphabet (GPT-2's bytes_to_unicode) ------------------------------------------

struct ByteLevelAlphabet {
  std::string byte_to_str[256];  // UTF-8 of the codepoint standing for each byte
  int16_t cp_to_byte[324];       // inverse over codepoints 0..323; -1 where none
  ByteLevelAlphabet();
};
const ByteLevelAlphabet& byte_level();
// Maps raw bytes to their byte-level string.
std::string byte_level_encode(std::string_view bytes);

// ---- pre-tokenizer ----------------------------------------------------------------------------

enum class SplitBehavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

struct PreTokStep {
  enum Kind { kSplit, kByteLevel } kind = kSplit;
  // kSplit
  std::shared_ptr<Regex> regex;
  SplitBehavior behavior = SplitBehavior::kIsolated;
  bool invert = false;
  // kByteLevel
  bool add_prefix_space = false;
  bool use_regex = true;
};

// Pieces point into the input or into `arena` (for pieces that got a prefix space).
struct PieceArena {
  std::deque<std::string> owned;
};

// Applies the steps in order to one text segment; appends the resulting non-empty pieces.
// Byte-level mapping is not applied here (see Impl::byte_level_model_input).
void pre_tokenize(const std::vector<PreTokStep>& steps, std::string_view text,
                  std::vector<std::string_view>& out, PieceArena& arena);

// The GPT-2 word regex that ByteLevel uses when use_regex is true.
const std::shared_ptr<Regex>& gpt2_regex();

// ---- added tokens -------------------------------------------------------------------------------

struct AddedToken {
  int32_t id;
  std::string content;
  bool special = false;
  bool lstrip = false;
  bool rstrip = false;
  bool normalized = true;
  bool single_word = false;
};

// A segment of input text: either an added token (id >= 0) or text to tokenize (id == -1).
struct Segment {
  std::string_view text;
  int32_t id;
};

// Leftmost-longest matching of a fixed set of strings (HF uses aho-corasick LeftmostLongest).
class AddedTokenMatcher {
 public:
  void build(const std::vector<AddedToken>& tokens, bool normalized);
  bool empty() const { return count_ == 0; }
  // Splits `text` into segments around matches (honouring lstrip / rstrip).
  void split(std::string_view text, std::vector<Segment>& out) const;

 private:
  struct Entry {
    std::string content;
    int32_t id;
    bool lstrip, rstrip;
  };
  std::vector<Entry> by_first_byte_[256];  // longest first
  size_t count_ = 0;
};

// ---- post-processor ---------------------------------------------------------------------------

struct PostStep {
  enum Kind { kNoop, kTemplate } kind = kNoop;
  // kTemplate, single-sequence template: ids to emit, with kSequenceMarker where $A goes.
  std::vector<int32_t> single;
};
constexpr int32_t kSequenceMarker = -1;

// ---- the tokenizer
// -------------------------------------------------------------------------------

struct Impl {
  std::string origin;  // file name or origin, for error messages

  // Model (BPE).
  std::unordered_map<std::string, int32_t> vocab;
  std::vector<std::string> id_to_token;             // model tokens; "" where an id is unused
  std::vector<std::pair<int32_t, int32_t>> merges;  // in rank order
  // (left << 32 | right) -> (rank, merged id)
  std::unordered_map<uint64_t, std::pair<int32_t, int32_t>> merge_rank;
  std::optional<std::string> unk_token;
  std::optional<int32_t> unk_id;
  bool fuse_unk = false;
  bool ignore_merges = false;

  // Pipeline.
  std::vector<AddedToken> added;
  std::unordered_map<int32_t, size_t> added_by_id;
  std::unordered_map<std::string, int32_t> added_by_content;
  AddedTokenMatcher raw_matcher, normalized_matcher;
  std::vector<PreTokStep> pre_steps;
  bool is_byte_level = false;  // the pre-tokenizer ends with ByteLevel
  std::vector<PostStep> post_steps;
  bool decoder_byte_level = false;

  // Original component JSON, written back unchanged by to_json().
  OJson normalizer_json, pre_tokenizer_json, post_processor_json, decoder_json;
  OJson truncation_json, padding_json;

  int32_t max_id = -1;

  // Model id of each byte's byte-level character (-1 if absent), so the initial symbols of a
  // word need no string lookups.
  int32_t byte_id[256];

  // Word cache: piece bytes -> ids. Bounded; cleared when full. Transparent hashing lets
  // lookups use the string_view piece without building a std::string.
  struct StringHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>()(s); }
  };
  mutable std::shared_mutex cache_mu;
  mutable std::unordered_map<std::string, std::vector<int32_t>, StringHash, std::equal_to<>> cache;

  void finalize();  // builds derived tables after the fields above are set
  void bpe_word(std::string_view piece, std::vector<int32_t>& out) const;
  void encode_piece(std::string_view piece, std::vector<int32_t>& out) const;
  const std::string* token_of(int32_t id) const;
};

// Parses the pipeline components from their JSON (throws seekr::Error naming origin + field).
void parse_pre_tokenizer(Impl& impl, const Json& j, const std::string& field);
void parse_post_processor(Impl& impl, const Json& j, const std::string& field);
void parse_normalizer(const Impl& impl, const Json& j, const std::string& field);
void parse_decoder(Impl& impl, const Json& j, const std::string& field);

// DeepSeek-V3's pre-tokenizer, used for training.
// DeepSeek-V3's pre-tokenizer; its first split isolates digit runs of 1..max_digits (3 in V3).
Json deepseek_pre_tokenizer_json(int max_digits = 3);

}  // namespace seekr::tokenizer_detail
