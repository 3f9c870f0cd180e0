#include "core/npy.h"

#include <algorithm>
#include <cstring>
#include <string_view>

#include "core/check.h"
#include "core/file_io.h"

namespace seekr {

namespace {

constexpr char kMagic[] = "\x93NUMPY";
constexpr size_t kMagicLen = 6;

int64_t shape_numel(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

template <typename T>
void write_npy_impl(const std::string& path, const char* descr, const T* data,
                    const std::vector<int64_t>& shape) {
  for (int64_t d : shape) SEEKR_REQUIRE(d >= 0, path, ": negative dimension ", d);
  const int64_t n = shape_numel(shape);
  SEEKR_REQUIRE(n == 0 || data != nullptr, path, ": no data for ", n, " elements");
  AtomicFileWriter out(path);
  out.write(npy_header(descr, shape));
  // Streamed in pieces so a [T, V] logits dump is never copied whole.
  constexpr int64_t kChunk = 1 << 20;
  for (int64_t i = 0; i < n; i += kChunk) {
    const int64_t m = std::min(kChunk, n - i);
    out.write(data + i, static_cast<size_t>(m) * sizeof(T));
  }
  out.commit();
}

// Value of `key` in the header dict, up to the next top-level ',' or '}' (parentheses kept).
std::string_view dict_value(std::string_view dict, std::string_view key, const std::string& path) {
  const std::string quoted = "'" + std::string(key) + "'";
  size_t k = dict.find(quoted);
  SEEKR_REQUIRE(k != std::string_view::npos, path, ": .npy header has no ", quoted);
  size_t colon = dict.find(':', k + quoted.size());
  SEEKR_REQUIRE(colon != std::string_view::npos, path, ": bad .npy header near ", quoted);
  size_t b = colon + 1;
  while (b < dict.size() && dict[b] == ' ') ++b;
  size_t e = b;
  int depth = 0;
  while (e < dict.size()) {
    const char c = dict[e];
    if (c == '(') ++depth;
    if (c == ')') --depth;
    if (depth == 0 && (c == ',' || c == '}')) break;
    ++e;
  }
  return dict.substr(b, e - b);
}

std::vector<int64_t> parse_shape(std::string_view v, const std::string& path) {
  SEEKR_REQUIRE(v.size() >= 2 && v.front() == '(' && v.back() == ')', path, ": bad .npy shape '", v,
                "'");
  std::vector<int64_t> shape;
  std::string_view in = v.substr(1, v.size() - 2);
  size_t i = 0;
  while (i < in.size()) {
    while (i < in.size() && (in[i] == ' ' || in[i] == ',')) ++i;
    if (i >= in.size()) break;
    int64_t d = 0;
    size_t j = i;
    while (j < in.size() && in[j] >= '0' && in[j] <= '9') d = d * 10 + (in[j++] - '0');
    SEEKR_REQUIRE(j > i, path, ": bad .npy shape '", v, "'");
    shape.push_back(d);
    i = j;
  }
  return shape;
}

}  // namespace

int64_t NpyArray::numel() const {
  return shape_numel(shape);
}

std::string npy_header(const std::string& descr, const std::vector<int64_t>& shape) {
  std::string dict = "{'descr': '" + descr + "', 'fortran_order': False, 'shape': (";
  for (size_t i = 0; i < shape.size(); ++i) {
    dict += std::to_string(shape[i]);
    if (shape.size() == 1 || i + 1 < shape.size()) dict += ",";
    if (i + 1 < shape.size()) dict += " ";
  }
  dict += "), }";
  // magic(6) + version(2) + header length(2) + dict + padding + '\n' = multiple of 64.
  const size_t fixed = kMagicLen + 2 + 2;
  size_t total = fixed + dict.size() + 1;
  total = (total + 63) / 64 * 64;
  SEEKR_REQUIRE(total - fixed <= 0xFFFF, "npy header too long for format 1.0");
  dict.append(total - fixed - dict.size() - 1, ' ');
  dict += '\n';
  const uint16_t hlen = static_cast<uint16_t>(dict.size());
  std::string out(kMagic, kMagicLen);
  out += '\x01';
  out += '\x00';
  out += static_cast<char>(hlen & 0xFF);
  out += static_cast<char>(hlen >> 8);
  return out + dict;
}

void write_npy(const std::string& path, const float* data, const std::vector<int64_t>& shape) {
  write_npy_impl(path, "<f4", data, shape);
}

void write_npy(const std::string& path, const int32_t* data, const std::vector<int64_t>& shape) {
  write_npy_impl(path, "<i4", data, shape);
}

NpyArray read_npy(const std::string& path) {
  MappedFile f(path);
  const uint8_t* p = f.data();
  const size_t size = f.size();
  SEEKR_REQUIRE(size >= kMagicLen + 4 && std::memcmp(p, kMagic, kMagicLen) == 0, path,
                ": not a .npy file (bad magic)");
  const int major = p[kMagicLen];
  size_t hlen = 0, start = 0;
  if (major == 1) {
    hlen = p[8] | (p[9] << 8);
    start = 10;
  } else {
    SEEKR_REQUIRE(major == 2 || major == 3, path, ": unsupported .npy version ", major);
    SEEKR_REQUIRE(size >= 12, path, ": truncated .npy header");
    hlen = p[8] | (p[9] << 8) | (size_t(p[10]) << 16) | (size_t(p[11]) << 24);
    start = 12;
  }
  SEEKR_REQUIRE(start + hlen <= size, path, ": truncated .npy header");
  const std::string_view dict(reinterpret_cast<const char*>(p + start), hlen);

  NpyArray a;
  std::string_view descr = dict_value(dict, "descr", path);
  SEEKR_REQUIRE(descr == "'<f4'" || descr == "'<i4'", path, ": unsupported .npy dtype ", descr,
                " (only '<f4' and '<i4')");
  a.descr = std::string(descr.substr(1, 3));
  SEEKR_REQUIRE(dict_value(dict, "fortran_order", path) == "False", path,
                ": Fortran-order .npy arrays are not supported");
  a.shape = parse_shape(dict_value(dict, "shape", path), path);

  const size_t nbytes = static_cast<size_t>(a.numel()) * 4;
  const size_t data_off = start + hlen;
  SEEKR_REQUIRE(size - data_off == nbytes, path, ": .npy data is ", size - data_off,
                " bytes; shape needs ", nbytes);
  if (a.descr == "<f4") {
    a.f32.resize(a.numel());
    if (nbytes) std::memcpy(a.f32.data(), p + data_off, nbytes);
  } else {
    a.i32.resize(a.numel());
    if (nbytes) std::memcpy(a.i32.data(), p + data_off, nbytes);
  }
  return a;
}

}  // namespace seekr
