#include "core/gguf.h"

#include <algorithm>
#include <cstring>

#include "core/check.h"
#include "core/dtype.h"
#include "core/file_io.h"

namespace seekr {

namespace {

constexpr const char* kAlignmentKey = "general.alignment";

// Little-endian encoding of a trivially copyable value (every supported host is little-endian,
// as ggml itself assumes).
template <typename T>
void put(std::string& out, T v) {
  char b[sizeof(T)];
  std::memcpy(b, &v, sizeof(T));
  out.append(b, sizeof(T));
}

void put_string(std::string& out, std::string_view s) {
  put<uint64_t>(out, s.size());
  out.append(s);
}

uint64_t pad_to(uint64_t n, uint64_t align) {
  return (n + align - 1) / align * align;
}

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

}  // namespace

size_t gguf_type_size(GgufType t) {
  switch (t) {
    case GgufType::kUint8:
    case GgufType::kInt8:
    case GgufType::kBool:
      return 1;
    case GgufType::kUint16:
    case GgufType::kInt16:
      return 2;
    case GgufType::kUint32:
    case GgufType::kInt32:
    case GgufType::kFloat32:
      return 4;
    case GgufType::kUint64:
    case GgufType::kInt64:
    case GgufType::kFloat64:
      return 8;
    case GgufType::kString:
    case GgufType::kArray:
      break;
  }
  SEEKR_CHECK(false, "GGUF type ", static_cast<uint32_t>(t), " has no fixed size");
  return 0;
}

const char* ggml_type_name(GgmlType t) {
  switch (t) {
    case GgmlType::kF32:
      return "f32";
    case GgmlType::kF16:
      return "f16";
    case GgmlType::kBF16:
      return "bf16";
  }
  return "?";
}

size_t ggml_type_size(GgmlType t) {
  return t == GgmlType::kF32 ? 4 : 2;
}

GgmlType parse_ggml_type(std::string_view name) {
  for (GgmlType t : {GgmlType::kF32, GgmlType::kF16, GgmlType::kBF16})
    if (name == ggml_type_name(t)) return t;
  throw Error(str_cat("unknown tensor type '", name, "' (expected f32, f16 or bf16)"));
}

uint64_t GgufWriter::Tensor::nbytes() const {
  uint64_t n = ggml_type_size(type);
  for (int64_t s : shape) n *= static_cast<uint64_t>(s);
  return n;
}

void GgufWriter::add_kv(const std::string& key, std::string encoded) {
  SEEKR_REQUIRE(!key.empty(), "GGUF metadata key is empty");
  SEEKR_REQUIRE(!has_key(key), "GGUF metadata key '", key, "' added twice");
  kvs_.push_back({key, std::move(encoded)});
}

bool GgufWriter::has_key(std::string_view key) const {
  return std::any_of(kvs_.begin(), kvs_.end(), [&](const Kv& kv) { return kv.key == key; });
}

#define SEEKR_GGUF_SCALAR(method, T, tag)                           \
  void GgufWriter::method(const std::string& key, T v) {            \
    SEEKR_REQUIRE(key != kAlignmentKey, "GGUF metadata key '", key, \
                  "' must be a uint32 (a power of two)");           \
    std::string e;                                                  \
    put<uint32_t>(e, static_cast<uint32_t>(GgufType::tag));         \
    put<T>(e, v);                                                   \
    add_kv(key, std::move(e));                                      \
  }
SEEKR_GGUF_SCALAR(add_uint8, uint8_t, kUint8)
SEEKR_GGUF_SCALAR(add_int8, int8_t, kInt8)
SEEKR_GGUF_SCALAR(add_uint16, uint16_t, kUint16)
SEEKR_GGUF_SCALAR(add_int16, int16_t, kInt16)
SEEKR_GGUF_SCALAR(add_int32, int32_t, kInt32)
SEEKR_GGUF_SCALAR(add_float32, float, kFloat32)
SEEKR_GGUF_SCALAR(add_uint64, uint64_t, kUint64)
SEEKR_GGUF_SCALAR(add_int64, int64_t, kInt64)
SEEKR_GGUF_SCALAR(add_float64, double, kFloat64)
#undef SEEKR_GGUF_SCALAR

void GgufWriter::add_uint32(const std::string& key, uint32_t v) {
  if (key == kAlignmentKey) {
    SEEKR_REQUIRE(v != 0 && (v & (v - 1)) == 0, "GGUF metadata key '", key,
                  "' must be a power of two; got ", v);
    alignment_ = v;
  }
  std::string e;
  put<uint32_t>(e, static_cast<uint32_t>(GgufType::kUint32));
  put<uint32_t>(e, v);
  add_kv(key, std::move(e));
}

void GgufWriter::add_bool(const std::string& key, bool v) {
  std::string e;
  put<uint32_t>(e, static_cast<uint32_t>(GgufType::kBool));
  put<uint8_t>(e, v ? 1 : 0);
  add_kv(key, std::move(e));
}

void GgufWriter::add_string(const std::string& key, std::string_view v) {
  std::string e;
  put<uint32_t>(e, static_cast<uint32_t>(GgufType::kString));
  put_string(e, v);
  add_kv(key, std::move(e));
}

void GgufWriter::add_array(const std::string& key, GgufType elem, const void* data, size_t n) {
  std::string e;
  put<uint32_t>(e, static_cast<uint32_t>(GgufType::kArray));
  put<uint32_t>(e, static_cast<uint32_t>(elem));
  put<uint64_t>(e, n);
  e.append(static_cast<const char*>(data), n * gguf_type_size(elem));
  add_kv(key, std::move(e));
}

void GgufWriter::add_int32_array(const std::string& key, std::span<const int32_t> v) {
  add_array(key, GgufType::kInt32, v.data(), v.size());
}
void GgufWriter::add_uint32_array(const std::string& key, std::span<const uint32_t> v) {
  add_array(key, GgufType::kUint32, v.data(), v.size());
}
void GgufWriter::add_float32_array(const std::string& key, std::span<const float> v) {
  add_array(key, GgufType::kFloat32, v.data(), v.size());
}

void GgufWriter::add_string_array(const std::string& key, std::span<const std::string> v) {
  std::string e;
  put<uint32_t>(e, static_cast<uint32_t>(GgufType::kArray));
  put<uint32_t>(e, static_cast<uint32_t>(GgufType::kString));
  put<uint64_t>(e, v.size());
  for (const std::string& s : v) put_string(e, s);
  add_kv(key, std::move(e));
}

void GgufWriter::add_tensor(const std::string& name, std::vector<int64_t> shape, GgmlType type,
                            Fill fill) {
  SEEKR_REQUIRE(!name.empty(), "GGUF tensor name is empty");
  SEEKR_REQUIRE(name.size() <= kGgmlMaxNameLength, "GGUF tensor name '", name, "' is ", name.size(),
                " bytes; ggml allows at most ", kGgmlMaxNameLength);
  SEEKR_REQUIRE(std::none_of(tensors_.begin(), tensors_.end(),
                             [&](const Tensor& t) { return t.name == name; }),
                "GGUF tensor '", name, "' added twice");
  SEEKR_REQUIRE(!shape.empty() && shape.size() <= static_cast<size_t>(kGgmlMaxDims),
                "GGUF tensor '", name, "' has shape ", shape_str(shape), ": ggml takes 1 to ",
                kGgmlMaxDims, " dimensions");
  for (int64_t s : shape)
    SEEKR_REQUIRE(s > 0, "GGUF tensor '", name, "' has shape ", shape_str(shape),
                  ": dimensions must be positive");
  SEEKR_CHECK(fill != nullptr);
  tensors_.push_back({name, std::move(shape), type, std::move(fill)});
}

void GgufWriter::add_tensor(const std::string& name, std::vector<int64_t> shape, GgmlType type,
                            const float* data) {
  SEEKR_CHECK(data != nullptr);
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  add_tensor(name, std::move(shape), type,
             [data, n](float* dst) { std::memcpy(dst, data, sizeof(float) * n); });
}

std::vector<uint64_t> GgufWriter::offsets(uint64_t* data_size) const {
  std::vector<uint64_t> out;
  uint64_t at = 0;
  for (const Tensor& t : tensors_) {
    out.push_back(at);
    at += pad_to(t.nbytes(), alignment_);
  }
  *data_size = at;
  return out;
}

std::string GgufWriter::header() const {
  std::string h = "GGUF";
  put<uint32_t>(h, kGgufVersion);
  put<int64_t>(h, static_cast<int64_t>(tensors_.size()));
  put<int64_t>(h, static_cast<int64_t>(kvs_.size()));
  for (const Kv& kv : kvs_) {
    put_string(h, kv.key);
    h += kv.encoded;
  }
  uint64_t data_size = 0;
  const std::vector<uint64_t> offs = offsets(&data_size);
  for (size_t i = 0; i < tensors_.size(); ++i) {
    const Tensor& t = tensors_[i];
    put_string(h, t.name);
    put<uint32_t>(h, static_cast<uint32_t>(t.shape.size()));
    for (auto it = t.shape.rbegin(); it != t.shape.rend(); ++it) put<int64_t>(h, *it);
    put<uint32_t>(h, static_cast<uint32_t>(t.type));
    put<uint64_t>(h, offs[i]);
  }
  h.append(pad_to(h.size(), alignment_) - h.size(), '\0');
  return h;
}

uint64_t GgufWriter::file_size() const {
  uint64_t data_size = 0;
  offsets(&data_size);
  return header().size() + data_size;
}

void GgufWriter::write(const std::string& path) const {
  const std::string head = header();
  AtomicFileWriter out(path);
  out.write(head);
  std::vector<float> values;
  std::vector<uint16_t> narrow;
  const std::string zeros(alignment_, '\0');
  for (const Tensor& t : tensors_) {
    const size_t n = t.nbytes() / ggml_type_size(t.type);
    values.assign(n, 0.0f);
    t.fill(values.data());
    if (t.type == GgmlType::kF32) {
      out.write(values.data(), n * sizeof(float));
    } else {
      narrow.resize(n);
      from_f32(t.type == GgmlType::kF16 ? DType::F16 : DType::BF16, values.data(), narrow.data(),
               n);
      out.write(narrow.data(), n * sizeof(uint16_t));
    }
    out.write(zeros.data(), pad_to(t.nbytes(), alignment_) - t.nbytes());
  }
  out.commit();
}

}  // namespace seekr
