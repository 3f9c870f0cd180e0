#include "core/safetensors.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>
#include <utility>

#include "core/check.h"

namespace seekr {

namespace {

using ojson = nlohmann::ordered_json;

constexpr const char* kIndexName = "model.safetensors.index.json";
constexpr const char* kSingleName = "model.safetensors";

// Parses JSON keeping key order and refusing duplicate keys, which a plain parse would
// silently resolve to the last one: a header with two entries for one tensor is corrupt.
ojson parse_json_strict(std::string_view text, const std::string& what) {
  std::vector<std::set<std::string>> keys;  // one set per open object
  std::string duplicate;
  auto cb = [&](int, nlohmann::json::parse_event_t ev, ojson& parsed) {
    using E = nlohmann::json::parse_event_t;
    if (ev == E::object_start) {
      keys.emplace_back();
    } else if (ev == E::object_end) {
      if (!keys.empty()) keys.pop_back();
    } else if (ev == E::key && !keys.empty() && duplicate.empty()) {
      if (!keys.back().insert(parsed.get<std::string>()).second)
        duplicate = parsed.get<std::string>();
    }
    return true;
  };
  ojson j;
  try {
    j = ojson::parse(text.begin(), text.end(), cb);
  } catch (const nlohmann::json::exception& e) {
    throw Error(str_cat(what, ": not valid JSON: ", e.what()));
  }
  SEEKR_REQUIRE(duplicate.empty(), what, ": duplicate key \"", duplicate, "\"");
  return j;
}

// A JSON value that must be a non-negative integer no larger than uint64.
bool get_uint(const ojson& v, uint64_t* out) {
  if (!v.is_number_unsigned()) return false;
  *out = v.get<uint64_t>();
  return true;
}

uint64_t read_le64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

std::string shard_name(int i, int n) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "model-%05d-of-%05d.safetensors", i, n);
  return buf;
}

std::string join_path(const std::string& dir, const std::string& name) {
  return (std::filesystem::path(dir) / name).string();
}

}  // namespace

int64_t TensorView::numel() const {
  int64_t n = 1;
  for (const int64_t d : shape) n *= d;
  return n;
}

void copy_to_f32(const TensorView& t, float* out) {
  SEEKR_REQUIRE(dtype_is_float(t.dtype), "tensor \"", t.name, "\" has dtype ", dtype_name(t.dtype),
                ", which cannot be converted to F32");
  to_f32(t.dtype, t.data, out, static_cast<size_t>(t.numel()));
}

// ---------------------------------------------------------------------------------------
// SafetensorsFile

SafetensorsFile SafetensorsFile::open(const std::string& path) {
  SafetensorsFile f;
  f.path_ = path;
  f.map_ = MappedFile(path);
  f.parse(f.map_.data(), f.map_.size());
  return f;
}

SafetensorsFile SafetensorsFile::from_bytes(std::vector<uint8_t> bytes, std::string name) {
  SafetensorsFile f;
  f.path_ = std::move(name);
  f.owned_ = std::move(bytes);
  f.parse(f.owned_.data(), f.owned_.size());
  return f;
}

void SafetensorsFile::parse(const uint8_t* bytes, size_t size) {
  const std::string where = str_cat("safetensors file ", path_);
  SEEKR_REQUIRE(size >= 8, where, ": ", size,
                " bytes is shorter than the 8-byte header length field");
  const uint64_t header_len = read_le64(bytes);
  SEEKR_REQUIRE(header_len <= kMaxSafetensorsHeader, where, ": header length ", header_len,
                " exceeds the limit of ", kMaxSafetensorsHeader, " bytes");
  SEEKR_REQUIRE(header_len <= size - 8, where, ": header length ", header_len,
                " is larger than the ", size - 8, " bytes after the length field");
  const std::string_view text(reinterpret_cast<const char*>(bytes) + 8, header_len);
  const ojson header = parse_json_strict(text, where + ": header");
  SEEKR_REQUIRE(header.is_object(), where, ": header is a JSON ", header.type_name(),
                ", not an object");

  const uint8_t* data_area = bytes + 8 + header_len;
  const uint64_t data_size = size - 8 - header_len;
  std::vector<std::pair<uint64_t, uint64_t>> ranges;  // [begin, end) per tensor
  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") {
      SEEKR_REQUIRE(entry.is_object(), where, ": __metadata__ must be an object of strings");
      for (const auto& [k, v] : entry.items()) {
        SEEKR_REQUIRE(v.is_string(), where, ": __metadata__ value for \"", k, "\" is a ",
                      v.type_name(), ", not a string");
        metadata_[k] = v.get<std::string>();
      }
      continue;
    }
    const std::string at = str_cat(where, ": tensor \"", name, "\"");
    SEEKR_REQUIRE(entry.is_object(), at, ": entry is a ", entry.type_name(), ", not an object");
    for (const char* field : {"dtype", "shape", "data_offsets"})
      SEEKR_REQUIRE(entry.contains(field), at, ": missing \"", field, "\"");

    const ojson& jdtype = entry["dtype"];
    SEEKR_REQUIRE(jdtype.is_string(), at, ": dtype is a ", jdtype.type_name(), ", not a string");
    TensorView t;
    t.name = name;
    try {
      t.dtype = parse_dtype(jdtype.get<std::string>());
    } catch (const Error& e) {
      throw Error(str_cat(at, ": ", e.what()));
    }

    const ojson& jshape = entry["shape"];
    SEEKR_REQUIRE(jshape.is_array(), at, ": shape is a ", jshape.type_name(), ", not an array");
    uint64_t numel = 1;
    for (const ojson& d : jshape) {
      // nlohmann stores only negative integers as signed.
      SEEKR_REQUIRE(!(d.is_number_integer() && !d.is_number_unsigned()), at,
                    ": negative dimension ", d.dump(), " in shape ", jshape.dump());
      uint64_t dim;
      SEEKR_REQUIRE(get_uint(d, &dim) && dim <= static_cast<uint64_t>(INT64_MAX), at, ": shape ",
                    jshape.dump(), " has a dimension that is not an integer in [0, 2^63)");
      SEEKR_REQUIRE(!__builtin_mul_overflow(numel, dim, &numel), at, ": shape ", jshape.dump(),
                    " has more elements than 64 bits can count");
      t.shape.push_back(static_cast<int64_t>(dim));
    }
    uint64_t nbytes;
    SEEKR_REQUIRE(!__builtin_mul_overflow(numel, uint64_t{dtype_size(t.dtype)}, &nbytes) &&
                      numel <= static_cast<uint64_t>(INT64_MAX),
                  at, ": shape ", jshape.dump(), " is too large for 64-bit sizes");

    const ojson& joff = entry["data_offsets"];
    uint64_t begin, end;
    SEEKR_REQUIRE(
        joff.is_array() && joff.size() == 2 && get_uint(joff[0], &begin) && get_uint(joff[1], &end),
        at, ": data_offsets ", joff.dump(), " must be [begin, end] with non-negative integers");
    SEEKR_REQUIRE(begin <= end, at, ": data_offsets ", joff.dump(), " has begin > end");
    SEEKR_REQUIRE(end <= data_size, at, ": data_offsets ", joff.dump(),
                  " end beyond the data area of ", data_size, " bytes");
    SEEKR_REQUIRE(end - begin == nbytes, at, ": data_offsets ", joff.dump(), " span ", end - begin,
                  " bytes but ", dtype_name(t.dtype), " shape ", jshape.dump(), " needs ", nbytes);
    t.data = data_area + begin;
    t.nbytes = static_cast<size_t>(nbytes);
    ranges.emplace_back(begin, end);
    index_.emplace(name, tensors_.size());
    tensors_.push_back(std::move(t));
  }

  // Overlap check in offset order; empty tensors occupy nothing and cannot overlap.
  std::vector<size_t> order(tensors_.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return ranges[a] < ranges[b]; });
  const size_t none = SIZE_MAX;
  size_t prev = none;
  for (const size_t i : order) {
    if (ranges[i].first == ranges[i].second) continue;
    SEEKR_REQUIRE(prev == none || ranges[prev].second <= ranges[i].first, where, ": tensors \"",
                  tensors_[prev].name, "\" and \"", tensors_[i].name,
                  "\" overlap in the data area");
    prev = i;
  }
}

const TensorView* SafetensorsFile::find(const std::string& name) const {
  const auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

const TensorView& SafetensorsFile::get(const std::string& name) const {
  const TensorView* t = find(name);
  SEEKR_REQUIRE(t != nullptr, "safetensors file ", path_, " has no tensor \"", name, "\"");
  return *t;
}

// ---------------------------------------------------------------------------------------
// TensorSource

TensorSource TensorSource::open(const std::string& path) {
  TensorSource src;
  src.path_ = path;
  std::string index_path;
  std::string file_path;
  if (is_directory(path)) {
    if (file_exists(join_path(path, kIndexName))) {
      index_path = join_path(path, kIndexName);
    } else if (file_exists(join_path(path, kSingleName))) {
      file_path = join_path(path, kSingleName);
    } else {
      throw Error(str_cat("checkpoint directory ", path, " has neither ", kIndexName, " nor ",
                          kSingleName));
    }
  } else if (file_exists(path)) {
    const std::string_view p(path);
    (p.ends_with(".index.json") ? index_path : file_path) = path;
  } else {
    throw Error(str_cat("checkpoint ", path, " does not exist"));
  }

  if (!file_path.empty()) {
    src.files_.push_back(SafetensorsFile::open(file_path));
    for (const TensorView& t : src.files_[0].tensors()) {
      src.names_.push_back(t.name);
      src.by_name_.emplace(t.name, &t);
    }
    return src;
  }

  const std::string where = str_cat("checkpoint index ", index_path);
  const ojson index = parse_json_strict(read_file(index_path), where);
  SEEKR_REQUIRE(
      index.is_object() && index.contains("weight_map") && index["weight_map"].is_object(), where,
      ": missing the \"weight_map\" object");
  const std::string dir = std::filesystem::path(index_path).parent_path().string();
  // Shards in order of first mention, so files() order is deterministic.
  std::unordered_map<std::string, size_t> shard_of_file;
  std::vector<size_t> shard_of_tensor;
  for (const auto& [tensor, shard] : index["weight_map"].items()) {
    SEEKR_REQUIRE(shard.is_string(), where, ": tensor \"", tensor, "\" maps to a ",
                  shard.type_name(), ", not a shard file name");
    const std::string file = shard.get<std::string>();
    const std::filesystem::path fp(file);
    const bool escapes = std::any_of(fp.begin(), fp.end(), [](const auto& c) { return c == ".."; });
    SEEKR_REQUIRE(!file.empty() && fp.is_relative() && !escapes, where, ": tensor \"", tensor,
                  "\" maps to \"", file, "\", which is not a file name inside ",
                  dir.empty() ? "." : dir);
    auto [it, fresh] = shard_of_file.emplace(file, src.files_.size());
    if (fresh) {
      const std::string shard_path = join_path(dir, file);
      SEEKR_REQUIRE(file_exists(shard_path), where, ": tensor \"", tensor, "\" maps to shard ",
                    shard_path, ", which does not exist");
      src.files_.push_back(SafetensorsFile::open(shard_path));
    }
    src.names_.push_back(tensor);
    shard_of_tensor.push_back(it->second);
  }
  for (size_t i = 0; i < src.names_.size(); ++i) {
    const SafetensorsFile& f = src.files_[shard_of_tensor[i]];
    const TensorView* t = f.find(src.names_[i]);
    SEEKR_REQUIRE(t != nullptr, where, ": tensor \"", src.names_[i], "\" maps to shard ", f.path(),
                  ", which lacks it");
    src.by_name_.emplace(src.names_[i], t);
  }
  return src;
}

const TensorView* TensorSource::find(const std::string& name) const {
  const auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : it->second;
}

const TensorView& TensorSource::get(const std::string& name) const {
  const TensorView* t = find(name);
  SEEKR_REQUIRE(t != nullptr, "checkpoint ", path_, " has no tensor \"", name, "\"");
  return *t;
}

const std::map<std::string, std::string>& TensorSource::metadata() const {
  static const std::map<std::string, std::string> kEmpty;
  return files_.empty() ? kEmpty : files_[0].metadata();
}

// ---------------------------------------------------------------------------------------
// SafetensorsWriter

namespace {
uint64_t tensor_bytes(const std::string& name, DType dtype, const std::vector<int64_t>& shape) {
  uint64_t n = dtype_size(dtype);
  for (const int64_t d : shape) {
    SEEKR_REQUIRE(d >= 0, "tensor \"", name, "\": negative dimension ", d);
    SEEKR_REQUIRE(!__builtin_mul_overflow(n, static_cast<uint64_t>(d), &n), "tensor \"", name,
                  "\": size overflows 64 bits");
  }
  return n;
}
}  // namespace

void SafetensorsWriter::add(const std::string& name, DType dtype, const std::vector<int64_t>& shape,
                            const void* data) {
  add(name, dtype, shape, data, tensor_bytes(name, dtype, shape));
}

void SafetensorsWriter::add(const std::string& name, DType dtype, const std::vector<int64_t>& shape,
                            const void* data, size_t nbytes) {
  SEEKR_REQUIRE(!name.empty() && name != "__metadata__", "invalid tensor name \"", name, "\"");
  SEEKR_REQUIRE(!index_.contains(name), "tensor \"", name, "\" added twice");
  const uint64_t want = tensor_bytes(name, dtype, shape);
  SEEKR_REQUIRE(want == nbytes, "tensor \"", name, "\": ", dtype_name(dtype), " shape needs ", want,
                " bytes but ", nbytes, " were given");
  SEEKR_REQUIRE(data != nullptr || nbytes == 0, "tensor \"", name, "\": null data");
  index_.emplace(name, entries_.size());
  entries_.push_back({name, dtype, shape, data, nbytes});
}

void SafetensorsWriter::set_metadata(const std::string& key, const std::string& value) {
  metadata_[key] = value;
}

uint64_t SafetensorsWriter::total_bytes() const {
  uint64_t n = 0;
  for (const Entry& e : entries_) n += e.nbytes;
  return n;
}

std::vector<const SafetensorsWriter::Entry*> SafetensorsWriter::ordered() const {
  std::vector<const Entry*> out;
  for (const Entry& e : entries_) out.push_back(&e);
  std::sort(out.begin(), out.end(), [](const Entry* a, const Entry* b) {
    const size_t sa = dtype_size(a->dtype), sb = dtype_size(b->dtype);
    return sa != sb ? sa > sb : a->name < b->name;
  });
  return out;
}

void SafetensorsWriter::write_file(const std::string& path,
                                   const std::vector<const Entry*>& entries) const {
  ojson header = ojson::object();
  if (!metadata_.empty()) header["__metadata__"] = metadata_;
  uint64_t offset = 0;
  for (const Entry* e : entries) {
    header[e->name] = {{"dtype", dtype_name(e->dtype)},
                       {"shape", e->shape},
                       {"data_offsets", {offset, offset + e->nbytes}}};
    offset += e->nbytes;
  }
  std::string text;
  try {
    text = header.dump();
  } catch (const nlohmann::json::exception& e) {
    throw Error(str_cat("cannot write ", path, ": ", e.what()));  // e.g. names not UTF-8
  }
  // Pad with spaces (valid JSON whitespace) so the data area starts 8-byte aligned.
  text.append((8 - text.size() % 8) % 8, ' ');
  uint8_t len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(uint64_t{text.size()} >> (8 * i));

  AtomicFileWriter w(path);
  w.write(len, 8);
  w.write(text);
  for (const Entry* e : entries) w.write(e->data, e->nbytes);
  w.commit();
}

void SafetensorsWriter::write(const std::string& path) const {
  write_file(path, ordered());
}

int SafetensorsWriter::write_sharded(const std::string& dir, uint64_t max_shard_bytes) const {
  std::vector<std::vector<const Entry*>> shards(1);
  uint64_t in_shard = 0;
  for (const Entry* e : ordered()) {
    if (!shards.back().empty() && in_shard + e->nbytes > max_shard_bytes) {
      shards.emplace_back();
      in_shard = 0;
    }
    shards.back().push_back(e);
    in_shard += e->nbytes;
  }
  make_dirs(dir);
  const int n = static_cast<int>(shards.size());
  nlohmann::json weight_map = nlohmann::json::object();
  for (int i = 0; i < n; ++i) {
    const std::string name = shard_name(i + 1, n);
    write_file(join_path(dir, name), shards[i]);
    for (const Entry* e : shards[i]) weight_map[e->name] = name;
  }
  const nlohmann::json index = {{"metadata", {{"total_size", total_bytes()}}},
                                {"weight_map", weight_map}};
  write_file_atomic(join_path(dir, kIndexName), index.dump(2) + "\n");
  return n;
}

}  // namespace seekr
