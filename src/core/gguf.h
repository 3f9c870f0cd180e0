// A writer for GGUF, the single-file model format of ggml and llama.cpp (version 3):
//
//   "GGUF" | u32 version | i64 tensor count | i64 KV count
//   KV pairs:     string key | u32 value type | value (arrays: u32 element type | u64 n | items)
//   tensor infos: string name | u32 n_dims | i64 ne[n_dims] | u32 ggml type | u64 offset
//   zero padding to the alignment, then the data area: each tensor at its offset (relative to
//   the start of the area), every offset a multiple of the alignment, tensors in info order.
//
// Strings are a u64 byte length and the bytes (no terminator); everything is little-endian;
// bools are one byte. ne[] lists dimensions innermost first (ggml order), the reverse of the
// row-major shapes this API takes, so a PyTorch [out, in] weight is ne = {in, out} with the same
// bytes. The alignment is 32 unless the KV "general.alignment" (u32, a power of two) says
// otherwise. Tensor data is produced on demand while writing, so exporting a model never holds
// more than one tensor in memory; the file is written atomically (core/file_io.h).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace seekr {

inline constexpr uint32_t kGgufVersion = 3;
inline constexpr uint32_t kGgufDefaultAlignment = 32;
// ggml keeps tensor names NUL-terminated in char[64]: names must be shorter.
inline constexpr size_t kGgmlMaxNameLength = 63;
inline constexpr int kGgmlMaxDims = 4;

// GGUF metadata value types, numbered as in ggml's gguf.h.
enum class GgufType : uint32_t {
  kUint8 = 0,
  kInt8 = 1,
  kUint16 = 2,
  kInt16 = 3,
  kUint32 = 4,
  kInt32 = 5,
  kFloat32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kUint64 = 10,
  kInt64 = 11,
  kFloat64 = 12,
};
// Bytes of one value of a fixed-size type (not kString or kArray).
size_t gguf_type_size(GgufType t);

// The ggml tensor element types this writer produces, numbered as in ggml.h.
enum class GgmlType : uint32_t { kF32 = 0, kF16 = 1, kBF16 = 30 };
const char* ggml_type_name(GgmlType t);  // "f32", "f16", "bf16"
size_t ggml_type_size(GgmlType t);
// Parses "f32" / "f16" / "bf16"; throws seekr::Error naming the text.
GgmlType parse_ggml_type(std::string_view name);

class GgufWriter {
 public:
  // Fills dst[numel] with the tensor's values as floats; called once, while writing.
  using Fill = std::function<void(float* dst)>;

  // Metadata, written in the order added. Every add throws seekr::Error (naming the key) for
  // an empty or repeated key; "general.alignment" must be a u32 power of two.
  void add_uint8(const std::string& key, uint8_t v);
  void add_int8(const std::string& key, int8_t v);
  void add_uint16(const std::string& key, uint16_t v);
  void add_int16(const std::string& key, int16_t v);
  void add_uint32(const std::string& key, uint32_t v);
  void add_int32(const std::string& key, int32_t v);
  void add_float32(const std::string& key, float v);
  void add_uint64(const std::string& key, uint64_t v);
  void add_int64(const std::string& key, int64_t v);
  void add_float64(const std::string& key, double v);
  void add_bool(const std::string& key, bool v);
  void add_string(const std::string& key, std::string_view v);
  void add_int32_array(const std::string& key, std::span<const int32_t> v);
  void add_uint32_array(const std::string& key, std::span<const uint32_t> v);
  void add_float32_array(const std::string& key, std::span<const float> v);
  void add_string_array(const std::string& key, std::span<const std::string> v);

  // A tensor of row-major `shape` (outermost first, 1 to 4 dimensions), stored as `type`.
  // Throws seekr::Error naming the tensor for a repeated or over-long name or a bad shape.
  void add_tensor(const std::string& name, std::vector<int64_t> shape, GgmlType type, Fill fill);
  // The same from floats the caller keeps alive until write() returns.
  void add_tensor(const std::string& name, std::vector<int64_t> shape, GgmlType type,
                  const float* data);

  size_t kv_count() const { return kvs_.size(); }
  size_t tensor_count() const { return tensors_.size(); }
  uint32_t alignment() const { return alignment_; }
  bool has_key(std::string_view key) const;
  // Bytes of the file write() produces.
  uint64_t file_size() const;

  // Writes the file atomically; errors name the path.
  void write(const std::string& path) const;

 private:
  struct Kv {
    std::string key;
    std::string encoded;  // type tag and value, as they appear in the file
  };
  struct Tensor {
    std::string name;
    std::vector<int64_t> shape;
    GgmlType type;
    Fill fill;
    uint64_t nbytes() const;
  };
  void add_kv(const std::string& key, std::string encoded);
  void add_array(const std::string& key, GgufType elem, const void* data, size_t n);
  // Offsets of the tensors within the data area, and the area's padded size.
  std::vector<uint64_t> offsets(uint64_t* data_size) const;
  std::string header() const;  // everything before the data area, padding included

  std::vector<Kv> kvs_;
  std::vector<Tensor> tensors_;
  uint32_t alignment_ = kGgufDefaultAlignment;
};

}  // namespace seekr
