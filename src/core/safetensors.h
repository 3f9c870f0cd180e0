// Reading and writing safetensors checkpoints, single-file and sharded (the Hugging Face
// layout: model-00001-of-0000N.safetensors + model.safetensors.index.json). Files are
// memory-mapped, so opening a checkpoint costs its header, not its size. The exact rules
// enforced are in docs/checkpoint-format.md.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/dtype.h"
#include "core/file_io.h"

namespace seekr {

// One tensor inside a mapped file. data points into the mapping and lives as long as the
// file object; it is only as aligned as the file's layout makes it (files from our writer
// align every tensor to its element size).
struct TensorView {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  const uint8_t* data = nullptr;
  size_t nbytes = 0;
  int64_t numel() const;
};

// Converts a float tensor (F32, F16, BF16, F64) into out[numel()]; throws seekr::Error
// naming the tensor for other dtypes.
void copy_to_f32(const TensorView& t, float* out);

// Headers larger than this are refused as corrupt (the limit the reference reader uses).
inline constexpr uint64_t kMaxSafetensorsHeader = 100'000'000;

class SafetensorsFile {
 public:
  // Maps and validates the file; every problem throws seekr::Error naming the file and, when
  // one is at fault, the tensor.
  static SafetensorsFile open(const std::string& path);
  // The same parse and validation over bytes in memory (for tests and fuzzing); `name` is
  // what error messages call the file.
  static SafetensorsFile from_bytes(std::vector<uint8_t> bytes, std::string name = "<memory>");

  // In the order the header lists them.
  const std::vector<TensorView>& tensors() const { return tensors_; }
  const TensorView* find(const std::string& name) const;
  const TensorView& get(const std::string& name) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const std::string& path() const { return path_; }

 private:
  SafetensorsFile() = default;
  void parse(const uint8_t* bytes, size_t size);

  std::string path_;
  // Exactly one of these owns the bytes the views point into; both keep their buffer's
  // address when moved, so moving a SafetensorsFile keeps the views valid.
  MappedFile map_;
  std::vector<uint8_t> owned_;
  std::vector<TensorView> tensors_;
  std::unordered_map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
};

// All tensors of a checkpoint, whether one file or many shards. open() accepts:
//   DIR containing model.safetensors.index.json (sharded: every shard it names is mapped),
//   DIR containing model.safetensors, or
//   a path to a .safetensors file.
class TensorSource {
 public:
  static TensorSource open(const std::string& path);

  // Index order for sharded checkpoints, header order for a single file.
  const std::vector<std::string>& names() const { return names_; }
  const TensorView* find(const std::string& name) const;
  const TensorView& get(const std::string& name) const;
  // Metadata of the first file (each shard carries the same metadata when we write it).
  const std::map<std::string, std::string>& metadata() const;
  const std::vector<SafetensorsFile>& files() const { return files_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::vector<SafetensorsFile> files_;
  std::vector<std::string> names_;
  std::unordered_map<std::string, const TensorView*> by_name_;
};

// Collects tensors and writes them as safetensors. Data is not copied: each pointer must
// stay valid until the last write call. Output is deterministic: tensors are laid out by
// element size, largest first, then by name, so with the header padded to 8 bytes every
// tensor starts aligned to its element size.
class SafetensorsWriter {
 public:
  // nbytes must equal numel * dtype_size; the first overload computes it.
  void add(const std::string& name, DType dtype, const std::vector<int64_t>& shape,
           const void* data);
  void add(const std::string& name, DType dtype, const std::vector<int64_t>& shape,
           const void* data, size_t nbytes);
  void set_metadata(const std::string& key, const std::string& value);

  // One file, written atomically.
  void write(const std::string& path) const;
  // DIR/model-0000i-of-0000N.safetensors, each holding at most max_shard_bytes of tensor
  // data (a single larger tensor gets a shard of its own), then
  // DIR/model.safetensors.index.json, always, even for one shard. Each file is atomic; the
  // index is written last. Returns the number of shards.
  int write_sharded(const std::string& dir, uint64_t max_shard_bytes) const;

  size_t size() const { return entries_.size(); }
  // Sum of tensor bytes (the index's metadata.total_size).
  uint64_t total_bytes() const;

 private:
  struct Entry {
    std::string name;
    DType dtype;
    std::vector<int64_t> shape;
    const void* data;
    size_t nbytes;
  };
  std::vector<const Entry*> ordered() const;
  void write_file(const std::string& path, const std::vector<const Entry*>& entries) const;

  std::vector<Entry> entries_;
  std::unordered_map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
};

}  // namespace seekr
