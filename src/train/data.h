// Token shards and the training data loader.
//
// Shard file format (".bin", all integers little-endian), version 1:
//   offset  0  char[8]   magic "SEEKRTOK"
//           8  uint32    format version (1)
//          12  uint32    token width in bytes: 2 if vocab_size <= 65536, else 4
//          16  uint64    vocab_size (every token id is < vocab_size)
//          24  uint64    token_count
//          32  uint64    doc_count
//          40  byte[24]  zero
//          64  uint16|uint32 tokens[token_count]
//              zero padding to a multiple of 8 bytes
//              uint64    doc_offsets[doc_count + 1]: document d is tokens
//                        [doc_offsets[d], doc_offsets[d+1]); doc_offsets[0] == 0 and
//                        doc_offsets[doc_count] == token_count
//   The file ends exactly there; anything else is a corrupt shard.
//
// The loader reads the shards as one stream, documents in file order, shards in the order
// given, with an optional EOS id after every document (GPT-style packing), and cuts the
// stream into fixed windows of seq+1 tokens (the tail that does not fill a window is
// dropped). Each batch is `batch` windows; a window gives inputs w[0:seq] and targets
// w[1:seq+1]. With shuffle, the windows of each epoch are visited in a permutation drawn
// from (seed, epoch); without, in stream order. Batches run on across epoch boundaries.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "core/file_io.h"

namespace seekr {

inline constexpr char kShardMagic[8] = {'S', 'E', 'E', 'K', 'R', 'T', 'O', 'K'};
inline constexpr uint32_t kShardVersion = 1;
inline constexpr size_t kShardHeaderBytes = 64;

// Bytes per token id for a vocabulary: 2 up to 65536 ids, else 4.
inline uint32_t shard_token_width(uint64_t vocab_size) {
  return vocab_size <= 65536 ? 2 : 4;
}

// Collects documents for one shard and writes it crash-safely (temp file, fsync, rename).
// The tokens are held in memory at their on-disk width until finish(), because the header
// that precedes them records their count; callers bound a shard's size (`seekr data
// prepare --shard-tokens`).
class ShardWriter {
 public:
  ShardWriter(std::string path, uint64_t vocab_size);

  // Appends one document. Throws seekr::Error naming the file if an id is outside
  // [0, vocab_size).
  void add_document(std::span<const int32_t> tokens);

  uint64_t token_count() const { return offsets_.back(); }
  uint64_t doc_count() const { return offsets_.size() - 1; }

  // Writes the file. The writer is spent afterwards.
  void finish();

 private:
  std::string path_;
  uint64_t vocab_size_;
  uint32_t width_;
  std::vector<uint8_t> tokens_;    // raw little-endian ids at width_ bytes each
  std::vector<uint64_t> offsets_;  // [doc_count + 1]
  bool finished_ = false;
};

// A memory-mapped, validated shard. Opening checks the magic, version, width, sizes,
// document offsets and that every token id is < vocab_size; any failure throws seekr::Error
// naming the file and the field.
class TokenShard {
 public:
  explicit TokenShard(const std::string& path);

  const std::string& path() const { return file_.path(); }
  uint64_t vocab_size() const { return vocab_size_; }
  uint32_t token_width() const { return width_; }
  uint64_t token_count() const { return token_count_; }
  uint64_t doc_count() const { return doc_count_; }

  int32_t token(uint64_t i) const;
  // Copies tokens [begin, begin + n) into out as int32.
  void copy_tokens(uint64_t begin, uint64_t n, int32_t* out) const;
  // [doc_count + 1] start offsets, the last equal to token_count.
  std::span<const uint64_t> doc_offsets() const { return {offsets_, doc_count_ + 1}; }

 private:
  MappedFile file_;
  uint64_t vocab_size_ = 0;
  uint32_t width_ = 0;
  uint64_t token_count_ = 0;
  uint64_t doc_count_ = 0;
  const uint8_t* tokens_ = nullptr;
  const uint64_t* offsets_ = nullptr;
};

class DataLoader {
 public:
  // eos_id: appended after every document in the stream; leave unset when the shards were
  // written with EOS already in them (`seekr data prepare --append-eos`). Throws
  // seekr::Error if the shards disagree on vocab_size, eos_id is out of range, or the
  // stream holds fewer than seq + 1 tokens.
  DataLoader(std::vector<std::string> shard_paths, int batch, int seq, uint64_t seed, bool shuffle,
             std::optional<int32_t> eos_id = std::nullopt);

  // Fills tokens with the next batch, [batch, seq + 1] row-major, and advances.
  void next(std::vector<int32_t>& tokens);

  // Everything needed to continue the exact batch sequence: seed, epoch, position, and
  // the stream's shape so a resume against different data or settings is refused.
  std::string state_json() const;
  // Throws seekr::Error if the JSON is malformed or describes a different stream.
  void load_state_json(const std::string& json);

  int batch() const { return batch_; }
  int seq() const { return seq_; }
  uint64_t vocab_size() const { return vocab_size_; }
  uint64_t windows_per_epoch() const { return windows_; }
  // Target tokens per epoch: windows_per_epoch() * seq.
  size_t tokens_per_epoch() const { return windows_ * static_cast<uint64_t>(seq_); }
  int epoch() const { return static_cast<int>(epoch_); }
  // Index of the next window within the current epoch's order.
  uint64_t position() const { return position_; }

 private:
  void start_epoch(uint64_t epoch);
  // Copies stream tokens [begin, begin + n) into out.
  void read_stream(uint64_t begin, uint64_t n, int32_t* out) const;

  std::vector<TokenShard> shards_;
  std::vector<uint64_t> shard_start_;  // [shards + 1] stream offset of each shard
  int batch_;
  int seq_;
  uint64_t seed_;
  bool shuffle_;
  std::optional<int32_t> eos_;
  uint64_t vocab_size_ = 0;
  uint64_t windows_ = 0;
  uint64_t epoch_ = 0;
  uint64_t position_ = 0;
  std::vector<uint64_t> order_;  // [windows_] this epoch's window order (shuffle only)
};

}  // namespace seekr
