// Element types of stored tensors, named as safetensors names them, and the scalar
// conversions between the floating-point formats.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace seekr {

// FP8 values can be stored and loaded as raw bytes; their numeric codecs are not here yet.
enum class DType { F64, F32, F16, BF16, F8_E4M3, F8_E5M2, I64, I32, I16, I8, U8, BOOL };

inline constexpr DType kAllDTypes[] = {DType::F64,     DType::F32,     DType::F16, DType::BF16,
                                       DType::F8_E4M3, DType::F8_E5M2, DType::I64, DType::I32,
                                       DType::I16,     DType::I8,      DType::U8,  DType::BOOL};

// The safetensors spelling: "F32", "BF16", "F8_E4M3", ...
const char* dtype_name(DType t);
// Bytes per element.
size_t dtype_size(DType t);
// Inverse of dtype_name; throws seekr::Error naming the unknown dtype.
DType parse_dtype(std::string_view name);
// F64, F32, F16 and BF16: the types to_f32/from_f32 handle.
bool dtype_is_float(DType t);

// Exact widening of the 16-bit formats (subnormals, infinities and NaNs included).
inline float bf16_to_f32(uint16_t h) {
  const uint32_t bits = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}
float f16_to_f32(uint16_t h);

// Narrowing with round-to-nearest-even; overflow gives infinity, NaN stays NaN (quieted).
uint16_t f32_to_bf16(float f);
uint16_t f32_to_f16(float f);

// Converts n elements of a floating type (see dtype_is_float) between a possibly unaligned
// buffer and floats. Non-float types are a caller bug (SEEKR_CHECK).
void to_f32(DType src_type, const void* src, float* dst, size_t n);
void from_f32(DType dst_type, const float* src, void* dst, size_t n);

}  // namespace seekr
