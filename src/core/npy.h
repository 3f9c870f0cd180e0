// NumPy .npy files (format version 1.0, little-endian, C order) for float32 and int32 arrays:
// the dumps that `seekr score --dump-logits` writes for comparing against other
// implementations with numpy.load.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace seekr {

// The header block (magic, version, length, dict, padding) for an array of `shape`.
// descr is "<f4" or "<i4". The whole header is padded with spaces and a final '\n' to a
// multiple of 64 bytes, as numpy itself writes it, so the data that follows is aligned.
std::string npy_header(const std::string& descr, const std::vector<int64_t>& shape);

// Written atomically (temp file + rename): a crash never leaves a half-written array.
// data holds prod(shape) elements; an empty shape is a 0-d scalar.
void write_npy(const std::string& path, const float* data, const std::vector<int64_t>& shape);
void write_npy(const std::string& path, const int32_t* data, const std::vector<int64_t>& shape);

// Reading back what write_npy writes (and numpy.save of the same dtypes). Throws seekr::Error
// naming the file for anything else (other dtypes, big-endian, Fortran order, truncation).
struct NpyArray {
  std::string descr;  // "<f4" or "<i4"
  std::vector<int64_t> shape;
  std::vector<float> f32;    // filled when descr == "<f4"
  std::vector<int32_t> i32;  // filled when descr == "<i4"
  int64_t numel() const;
};
NpyArray read_npy(const std::string& path);

}  // namespace seekr
