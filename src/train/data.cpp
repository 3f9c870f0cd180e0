#include "train/data.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <nlohmann/json.hpp>

#include "core/check.h"
#include "core/rng.h"

namespace seekr {

static_assert(std::endian::native == std::endian::little,
              "shards are little-endian and read in place");

namespace {

uint64_t align8(uint64_t n) {
  return (n + 7) & ~uint64_t{7};
}

void put_u32(uint8_t* p, uint32_t v) {
  std::memcpy(p, &v, 4);
}
void put_u64(uint8_t* p, uint64_t v) {
  std::memcpy(p, &v, 8);
}
uint32_t get_u32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
uint64_t get_u64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

}  // namespace

// ---------------------------------------------------------------------------------------
// ShardWriter

ShardWriter::ShardWriter(std::string path, uint64_t vocab_size)
    : path_(std::move(path)),
      vocab_size_(vocab_size),
      width_(shard_token_width(vocab_size)),
      offsets_{0} {
  SEEKR_REQUIRE(vocab_size >= 1 && vocab_size <= (uint64_t{1} << 31), path_, ": vocab_size ",
                vocab_size, " is outside [1, 2^31]");
}

void ShardWriter::add_document(std::span<const int32_t> tokens) {
  SEEKR_CHECK(!finished_, "add_document after finish");
  const size_t old = tokens_.size();
  tokens_.resize(old + tokens.size() * width_);
  uint8_t* out = tokens_.data() + old;
  for (size_t i = 0; i < tokens.size(); ++i) {
    const int32_t t = tokens[i];
    if (t < 0 || static_cast<uint64_t>(t) >= vocab_size_) {
      tokens_.resize(old);
      throw Error(str_cat(path_, ": token id ", t, " (document ", doc_count(), ", position ", i,
                          ") is outside the vocabulary [0, ", vocab_size_, ")"));
    }
    if (width_ == 2) {
      const uint16_t v = static_cast<uint16_t>(t);
      std::memcpy(out + 2 * i, &v, 2);
    } else {
      std::memcpy(out + 4 * i, &t, 4);
    }
  }
  offsets_.push_back(offsets_.back() + tokens.size());
}

void ShardWriter::finish() {
  SEEKR_CHECK(!finished_, "finish called twice");
  finished_ = true;
  uint8_t header[kShardHeaderBytes] = {};
  std::memcpy(header, kShardMagic, 8);
  put_u32(header + 8, kShardVersion);
  put_u32(header + 12, width_);
  put_u64(header + 16, vocab_size_);
  put_u64(header + 24, token_count());
  put_u64(header + 32, doc_count());
  const uint8_t zeros[8] = {};

  AtomicFileWriter out(path_);
  out.write(header, sizeof header);
  out.write(tokens_.data(), tokens_.size());
  out.write(zeros, align8(tokens_.size()) - tokens_.size());
  out.write(offsets_.data(), offsets_.size() * sizeof(uint64_t));
  out.commit();
  tokens_ = {};
  offsets_ = {0};
}

// ---------------------------------------------------------------------------------------
// TokenShard

TokenShard::TokenShard(const std::string& path) : file_(path) {
  const uint8_t* p = file_.data();
  const uint64_t size = file_.size();
  SEEKR_REQUIRE(size >= kShardHeaderBytes, path, ": truncated header (", size, " bytes, need ",
                kShardHeaderBytes, ")");
  SEEKR_REQUIRE(std::memcmp(p, kShardMagic, 8) == 0, path, ": bad magic (not a seekr token shard)");
  const uint32_t version = get_u32(p + 8);
  SEEKR_REQUIRE(version == kShardVersion, path, ": unsupported format version ", version,
                " (this build reads ", kShardVersion, ")");
  width_ = get_u32(p + 12);
  vocab_size_ = get_u64(p + 16);
  token_count_ = get_u64(p + 24);
  doc_count_ = get_u64(p + 32);
  SEEKR_REQUIRE(vocab_size_ >= 1 && vocab_size_ <= (uint64_t{1} << 31), path, ": vocab_size ",
                vocab_size_, " is outside [1, 2^31]");
  SEEKR_REQUIRE(width_ == shard_token_width(vocab_size_), path, ": token width ", width_,
                " does not match vocab_size ", vocab_size_, " (expected ",
                shard_token_width(vocab_size_), ")");
  // Bound the counts before multiplying so a corrupt header cannot overflow the size sum.
  SEEKR_REQUIRE(token_count_ <= size && doc_count_ <= size, path, ": token_count ", token_count_,
                " or doc_count ", doc_count_, " exceeds the file size ", size);
  const uint64_t tokens_end = kShardHeaderBytes + token_count_ * width_;
  const uint64_t expected = align8(tokens_end) + (doc_count_ + 1) * sizeof(uint64_t);
  SEEKR_REQUIRE(size >= expected, path, ": truncated: ", size, " bytes, header (token_count ",
                token_count_, ", doc_count ", doc_count_, ") needs ", expected);
  SEEKR_REQUIRE(size == expected, path, ": ", size - expected,
                " trailing bytes after doc_offsets (token_count ", token_count_, ", doc_count ",
                doc_count_, ")");
  tokens_ = p + kShardHeaderBytes;
  offsets_ = reinterpret_cast<const uint64_t*>(p + align8(tokens_end));

  SEEKR_REQUIRE(offsets_[0] == 0, path, ": doc_offsets[0] is ", offsets_[0], ", not 0");
  for (uint64_t d = 0; d < doc_count_; ++d)
    SEEKR_REQUIRE(offsets_[d] <= offsets_[d + 1], path, ": doc_offsets decrease at document ", d);
  SEEKR_REQUIRE(offsets_[doc_count_] == token_count_, path, ": doc_offsets[doc_count] is ",
                offsets_[doc_count_], ", not token_count ", token_count_);

  // Every id is checked once here so the loader can hand tokens to an embedding lookup
  // without a bounds check per token.
  uint64_t max_id = 0, at = 0;
  for (uint64_t i = 0; i < token_count_; ++i) {
    const uint64_t t = width_ == 2 ? reinterpret_cast<const uint16_t*>(tokens_)[i]
                                   : reinterpret_cast<const uint32_t*>(tokens_)[i];
    if (t > max_id) max_id = t, at = i;
  }
  SEEKR_REQUIRE(token_count_ == 0 || max_id < vocab_size_, path, ": token id ", max_id,
                " at position ", at, " is >= vocab_size ", vocab_size_);
}

int32_t TokenShard::token(uint64_t i) const {
  SEEKR_CHECK(i < token_count_, i, " >= ", token_count_);
  return width_ == 2 ? reinterpret_cast<const uint16_t*>(tokens_)[i]
                     : static_cast<int32_t>(reinterpret_cast<const uint32_t*>(tokens_)[i]);
}

void TokenShard::copy_tokens(uint64_t begin, uint64_t n, int32_t* out) const {
  SEEKR_CHECK(begin <= token_count_ && n <= token_count_ - begin, begin, "+", n, " > ",
              token_count_);
  if (width_ == 2) {
    const uint16_t* src = reinterpret_cast<const uint16_t*>(tokens_) + begin;
    for (uint64_t i = 0; i < n; ++i) out[i] = src[i];
  } else if (n > 0) {  // memcpy with a null out (an empty vector's data()) is undefined
    std::memcpy(out, reinterpret_cast<const uint32_t*>(tokens_) + begin, n * 4);
  }
}

// ---------------------------------------------------------------------------------------
// DataLoader

DataLoader::DataLoader(std::vector<std::string> shard_paths, int batch, int seq, uint64_t seed,
                       bool shuffle, std::optional<int32_t> eos_id)
    : batch_(batch), seq_(seq), seed_(seed), shuffle_(shuffle), eos_(eos_id) {
  SEEKR_REQUIRE(!shard_paths.empty(), "data loader: no shard files given");
  SEEKR_REQUIRE(batch >= 1 && seq >= 1, "data loader: batch ", batch, " and seq ", seq,
                " must be >= 1");
  shard_start_.push_back(0);
  for (const auto& path : shard_paths) {
    TokenShard& s = shards_.emplace_back(path);
    if (shards_.size() == 1) vocab_size_ = s.vocab_size();
    SEEKR_REQUIRE(s.vocab_size() == vocab_size_, path, ": vocab_size ", s.vocab_size(),
                  " differs from ", vocab_size_, " in ", shards_.front().path());
    shard_start_.push_back(shard_start_.back() + s.token_count() + (eos_ ? s.doc_count() : 0));
  }
  SEEKR_REQUIRE(!eos_ || (*eos_ >= 0 && static_cast<uint64_t>(*eos_) < vocab_size_),
                "data loader: eos id ", eos_.value_or(0), " is outside the vocabulary [0, ",
                vocab_size_, ")");
  windows_ = shard_start_.back() / (static_cast<uint64_t>(seq) + 1);
  SEEKR_REQUIRE(windows_ >= 1, "data loader: the shards hold ", shard_start_.back(),
                " stream tokens, fewer than one window of seq + 1 = ", seq + 1);
  start_epoch(0);
}

void DataLoader::start_epoch(uint64_t epoch) {
  epoch_ = epoch;
  position_ = 0;
  if (!shuffle_) return;
  order_.resize(windows_);
  for (uint64_t i = 0; i < windows_; ++i) order_[i] = i;
  // Each epoch's order depends only on (seed, epoch), so a resume needs nothing else.
  Rng rng(seed_ ^ (0x9e3779b97f4a7c15ULL * (epoch + 1)));
  for (uint64_t i = windows_ - 1; i > 0; --i) std::swap(order_[i], order_[rng.below(i + 1)]);
}

void DataLoader::read_stream(uint64_t begin, uint64_t n, int32_t* out) const {
  // Shard holding stream position `begin`.
  size_t s =
      std::upper_bound(shard_start_.begin(), shard_start_.end(), begin) - shard_start_.begin() - 1;
  while (n > 0) {
    SEEKR_CHECK(s < shards_.size());
    const TokenShard& shard = shards_[s];
    const uint64_t local = begin - shard_start_[s];
    const uint64_t shard_len = shard_start_[s + 1] - shard_start_[s];
    if (!eos_) {
      const uint64_t take = std::min(n, shard_len - local);
      shard.copy_tokens(local, take, out);
      out += take, begin += take, n -= take;
    } else {
      // With an EOS after each document, document d occupies stream positions
      // [offsets[d] + d, offsets[d+1] + d] in this shard, the last one being its EOS.
      const auto offsets = shard.doc_offsets();
      uint64_t lo = 0, hi = shard.doc_count();  // largest d with offsets[d] + d <= local
      while (hi - lo > 1) {
        const uint64_t mid = (lo + hi) / 2;
        (offsets[mid] + mid <= local ? lo : hi) = mid;
      }
      for (uint64_t d = lo; d < shard.doc_count() && n > 0; ++d) {
        const uint64_t pos = begin - shard_start_[s] - d;  // token index within the shard
        const uint64_t take = std::min(n, offsets[d + 1] - std::min(pos, offsets[d + 1]));
        shard.copy_tokens(pos, take, out);
        out += take, begin += take, n -= take;
        if (n > 0) *out++ = *eos_, ++begin, --n;
      }
    }
    ++s;
  }
}

void DataLoader::next(std::vector<int32_t>& tokens) {
  const uint64_t w = static_cast<uint64_t>(seq_) + 1;
  tokens.resize(static_cast<size_t>(batch_) * w);
  for (int b = 0; b < batch_; ++b) {
    if (position_ == windows_) start_epoch(epoch_ + 1);
    const uint64_t window = shuffle_ ? order_[position_] : position_;
    read_stream(window * w, w, tokens.data() + b * w);
    ++position_;
  }
}

std::string DataLoader::state_json() const {
  nlohmann::json j;
  j["version"] = 1;
  j["seed"] = seed_;
  j["epoch"] = epoch_;
  j["position"] = position_;
  j["shuffle"] = shuffle_;
  j["seq"] = seq_;
  j["windows"] = windows_;
  j["stream_tokens"] = shard_start_.back();
  return j.dump();
}

void DataLoader::load_state_json(const std::string& text) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw Error(str_cat("data loader state: invalid JSON: ", e.what()));
  }
  auto field = [&](const char* name) -> const nlohmann::json& {
    SEEKR_REQUIRE(j.is_object() && j.contains(name), "data loader state: missing field '", name,
                  "'");
    return j[name];
  };
  auto u64 = [&](const char* name) {
    const auto& v = field(name);
    SEEKR_REQUIRE(v.is_number_unsigned(), "data loader state: field '", name,
                  "' is not a non-negative integer");
    return v.get<uint64_t>();
  };
  SEEKR_REQUIRE(u64("version") == 1, "data loader state: unsupported version ", u64("version"));
  const auto& shuffle = field("shuffle");
  SEEKR_REQUIRE(shuffle.is_boolean(), "data loader state: field 'shuffle' is not a boolean");
  SEEKR_REQUIRE(shuffle.get<bool>() == shuffle_, "data loader state: shuffle was ",
                shuffle.get<bool>(), ", this loader has ", shuffle_);
  SEEKR_REQUIRE(u64("seq") == static_cast<uint64_t>(seq_), "data loader state: seq was ",
                u64("seq"), ", this loader has ", seq_);
  SEEKR_REQUIRE(u64("stream_tokens") == shard_start_.back() && u64("windows") == windows_,
                "data loader state: saved for a stream of ", u64("stream_tokens"), " tokens (",
                u64("windows"), " windows), these shards give ", shard_start_.back(), " (",
                windows_, ")");
  const uint64_t position = u64("position");
  SEEKR_REQUIRE(position <= windows_, "data loader state: position ", position,
                " is past the epoch's ", windows_, " windows");
  seed_ = u64("seed");
  start_epoch(u64("epoch"));
  position_ = position;
}

}  // namespace seekr
