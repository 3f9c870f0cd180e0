#include "core/dtype.h"

#include <cmath>

#include "core/check.h"

namespace seekr {

namespace {

struct DTypeInfo {
  DType type;
  const char* name;
  size_t size;
};

constexpr DTypeInfo kInfo[] = {
    {DType::F64, "F64", 8},   {DType::F32, "F32", 4},         {DType::F16, "F16", 2},
    {DType::BF16, "BF16", 2}, {DType::F8_E4M3, "F8_E4M3", 1}, {DType::F8_E5M2, "F8_E5M2", 1},
    {DType::I64, "I64", 8},   {DType::I32, "I32", 4},         {DType::I16, "I16", 2},
    {DType::I8, "I8", 1},     {DType::U8, "U8", 1},           {DType::BOOL, "BOOL", 1},
};

const DTypeInfo& info(DType t) {
  const auto i = static_cast<size_t>(t);
  SEEKR_CHECK(i < std::size(kInfo) && kInfo[i].type == t, "bad DType ", i);
  return kInfo[i];
}

uint32_t f32_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

float f32_from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// Loads element i of type T from a buffer that may not be aligned for T.
template <typename T>
T load(const void* p, size_t i) {
  T v;
  std::memcpy(&v, static_cast<const char*>(p) + i * sizeof(T), sizeof(T));
  return v;
}

template <typename T>
void store(void* p, size_t i, T v) {
  std::memcpy(static_cast<char*>(p) + i * sizeof(T), &v, sizeof(T));
}

// Large tensors are converted while loading whole checkpoints, so spread them over threads.
constexpr size_t kParallelMin = size_t{1} << 16;

}  // namespace

const char* dtype_name(DType t) {
  return info(t).name;
}
size_t dtype_size(DType t) {
  return info(t).size;
}

DType parse_dtype(std::string_view name) {
  for (const auto& i : kInfo)
    if (name == i.name) return i.type;
  throw Error(str_cat("unknown dtype \"", name, "\""));
}

bool dtype_is_float(DType t) {
  return t == DType::F64 || t == DType::F32 || t == DType::F16 || t == DType::BF16;
}

float f16_to_f32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
  const uint32_t exp = (h >> 10) & 0x1f;
  uint32_t mant = h & 0x3ff;
  if (exp == 0x1f) return f32_from_bits(sign | 0x7f800000 | (mant << 13));  // inf / nan
  if (exp != 0) return f32_from_bits(sign | ((exp + 112) << 23) | (mant << 13));
  if (mant == 0) return f32_from_bits(sign);
  // Subnormal half: normalise, since every half subnormal is a normal float.
  int e = 113;
  while (!(mant & 0x400)) {
    mant <<= 1;
    --e;
  }
  return f32_from_bits(sign | (static_cast<uint32_t>(e) << 23) | ((mant & 0x3ff) << 13));
}

uint16_t f32_to_bf16(float f) {
  const uint32_t u = f32_bits(f);
  if ((u & 0x7fffffff) > 0x7f800000) return static_cast<uint16_t>((u >> 16) | 0x40);  // nan
  // Adding 0x7fff plus the lowest kept bit rounds half to even; a carry into the exponent
  // is the correct result, up to and including overflow to infinity.
  const uint32_t rounded = u + 0x7fff + ((u >> 16) & 1);
  return static_cast<uint16_t>(rounded >> 16);
}

uint16_t f32_to_f16(float f) {
  const uint32_t u = f32_bits(f);
  const auto sign = static_cast<uint16_t>((u >> 16) & 0x8000);
  const uint32_t a = u & 0x7fffffff;
  if (a > 0x7f800000) return sign | 0x7e00 | static_cast<uint16_t>((a >> 13) & 0x3ff);  // nan
  if (a >= 0x477ff000) return sign | 0x7c00;  // >= 65520 (max half + half ulp): inf
  const int exp = static_cast<int>(a >> 23);
  if (exp >= 113) {
    // Normal half: drop 13 mantissa bits with round-half-even; a carry bumps the exponent.
    const uint32_t r = a + 0xfff + ((a >> 13) & 1);
    return sign | static_cast<uint16_t>((r >> 13) - (112u << 10));
  }
  if (exp < 102) return sign;  // below half the smallest subnormal (2^-25): rounds to zero
  // Subnormal half: value = m * 2^(exp-150) with the implicit bit; its half code is
  // m * 2^(exp-150+24) = m >> (126-exp), rounded to nearest even.
  const uint32_t m = (a & 0x7fffff) | 0x800000;
  const int shift = 126 - exp;  // 14..24
  const uint32_t q = m >> shift;
  const uint32_t rem = m & ((1u << shift) - 1);
  const uint32_t half = 1u << (shift - 1);
  const uint32_t up = (rem > half || (rem == half && (q & 1))) ? 1 : 0;
  return sign | static_cast<uint16_t>(q + up);
}

void to_f32(DType src_type, const void* src, float* dst, size_t n) {
  switch (src_type) {
    case DType::F32:
      std::memcpy(dst, src, n * 4);
      return;
    case DType::F64:
#pragma omp parallel for if (n >= kParallelMin)
      for (size_t i = 0; i < n; ++i) dst[i] = static_cast<float>(load<double>(src, i));
      return;
    case DType::F16:
#pragma omp parallel for if (n >= kParallelMin)
      for (size_t i = 0; i < n; ++i) dst[i] = f16_to_f32(load<uint16_t>(src, i));
      return;
    case DType::BF16:
#pragma omp parallel for if (n >= kParallelMin)
      for (size_t i = 0; i < n; ++i) dst[i] = bf16_to_f32(load<uint16_t>(src, i));
      return;
    default:
      SEEKR_CHECK(false, "to_f32 from ", dtype_name(src_type));
  }
}

void from_f32(DType dst_type, const float* src, void* dst, size_t n) {
  switch (dst_type) {
    case DType::F32:
      std::memcpy(dst, src, n * 4);
      return;
    case DType::F64:
#pragma omp parallel for if (n >= kParallelMin)
      for (size_t i = 0; i < n; ++i) store<double>(dst, i, src[i]);
      return;
    case DType::F16:
#pragma omp parallel for if (n >= kParallelMin)
      for (size_t i = 0; i < n; ++i) store<uint16_t>(dst, i, f32_to_f16(src[i]));
      return;
    case DType::BF16:
#pragma omp parallel for if (n >= kParallelMin)
      for (size_t i = 0; i < n; ++i) store<uint16_t>(dst, i, f32_to_bf16(src[i]));
      return;
    default:
      SEEKR_CHECK(false, "from_f32 to ", dtype_name(dst_type));
  }
}

}  // namespace seekr
