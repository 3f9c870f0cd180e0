// Tests for src/core: dtype conversions, file I/O and safetensors reading/writing.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <numeric>
#include <string>
#include <vector>

#include "core/check.h"
#include "core/dtype.h"
#include "core/file_io.h"
#include "core/rng.h"
#include "core/safetensors.h"

namespace seekr {
namespace {

namespace fs = std::filesystem;
using ::testing::AllOf;
using ::testing::HasSubstr;

// Runs f and returns the message of the seekr::Error it throws (fails the test otherwise).
template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "threw a non-seekr exception: " << e.what();
    return "";
  }
  ADD_FAILURE() << "did not throw";
  return "";
}

uint32_t bits_of(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

float float_of(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

class TempDir : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "seekr_st_XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& name) const { return (fs::path(dir_) / name).string(); }
  std::vector<std::string> listing() const {
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator(dir_)) out.push_back(e.path().filename());
    std::sort(out.begin(), out.end());
    return out;
  }
  std::string dir_;
};

// ---------------------------------------------------------------------------------------
// DType

TEST(DType, NamesSizesAndParse) {
  const std::pair<const char*, size_t> expected[] = {
      {"F64", 8}, {"F32", 4}, {"F16", 2}, {"BF16", 2}, {"F8_E4M3", 1}, {"F8_E5M2", 1},
      {"I64", 8}, {"I32", 4}, {"I16", 2}, {"I8", 1},   {"U8", 1},      {"BOOL", 1}};
  ASSERT_EQ(std::size(kAllDTypes), std::size(expected));
  for (size_t i = 0; i < std::size(expected); ++i) {
    const DType t = kAllDTypes[i];
    EXPECT_STREQ(dtype_name(t), expected[i].first);
    EXPECT_EQ(dtype_size(t), expected[i].second);
    EXPECT_EQ(parse_dtype(expected[i].first), t);
  }
  EXPECT_THAT(error_of([] { parse_dtype("F33"); }), HasSubstr("\"F33\""));
  EXPECT_THAT(error_of([] { parse_dtype("f32"); }), HasSubstr("\"f32\""));
}

// Decodes a binary float format from its fields with plain arithmetic, as a reference.
double decode_reference(uint32_t code, int exp_bits, int mant_bits) {
  const uint32_t mant = code & ((1u << mant_bits) - 1);
  const uint32_t exp = (code >> mant_bits) & ((1u << exp_bits) - 1);
  const bool neg = (code >> (exp_bits + mant_bits)) & 1;
  const int bias = (1 << (exp_bits - 1)) - 1;
  double v;
  if (exp == (1u << exp_bits) - 1)
    v = mant == 0 ? INFINITY : NAN;
  else if (exp == 0)
    v = std::ldexp(static_cast<double>(mant), 1 - bias - mant_bits);
  else
    v = std::ldexp(static_cast<double>(mant | (1u << mant_bits)),
                   static_cast<int>(exp) - bias - mant_bits);
  return neg ? -v : v;
}

TEST(DType, F16ToF32Exhaustive) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float got = f16_to_f32(static_cast<uint16_t>(h));
    const double want = decode_reference(h, 5, 10);
    if (std::isnan(want)) {
      // NaN payload and sign carry over into the top mantissa bits.
      EXPECT_EQ(bits_of(got), ((h & 0x8000u) << 16) | 0x7f800000u | ((h & 0x3ffu) << 13)) << h;
    } else {
      EXPECT_EQ(bits_of(got), bits_of(static_cast<float>(want))) << "code " << h;
    }
  }
}

TEST(DType, BF16ToF32Exhaustive) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float got = bf16_to_f32(static_cast<uint16_t>(h));
    const double want = decode_reference(h, 8, 7);
    if (std::isnan(want))
      EXPECT_EQ(bits_of(got), h << 16) << h;
    else
      EXPECT_EQ(bits_of(got), bits_of(static_cast<float>(want))) << "code " << h;
  }
}

struct Format16 {
  float (*widen)(uint16_t);
  uint16_t (*narrow)(float);
  uint16_t inf_code;  // +infinity; the largest finite code is inf_code - 1
  int exp_bits, mant_bits;
};
const Format16 kF16{f16_to_f32, f32_to_f16, 0x7c00, 5, 10};
const Format16 kBF16{bf16_to_f32, f32_to_bf16, 0x7f80, 8, 7};

// Every code survives widen-then-narrow, and for every pair of adjacent codes the exact
// midpoint goes to the even one while the floats just either side of it go to the nearer
// one. Together that pins round-to-nearest-even across the whole 16-bit range.
void check_narrowing_exhaustive(const Format16& f) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const auto code = static_cast<uint16_t>(h);
    const uint16_t back = f.narrow(f.widen(code));
    if ((h & 0x7fff) > f.inf_code) {
      EXPECT_GT(back & 0x7fff, f.inf_code) << "NaN code " << h << " must stay NaN";
      EXPECT_EQ(back & 0x8000, h & 0x8000);
    } else {
      EXPECT_EQ(back, code) << "code " << h;
    }
  }
  for (uint32_t sign : {0u, 0x8000u}) {
    for (uint32_t lo = 0; lo < f.inf_code; ++lo) {
      const double a = decode_reference(lo, f.exp_bits, f.mant_bits);
      // Past the largest finite value IEEE rounds as if the exponent range continued.
      const double b = lo + 1 == f.inf_code ? 2 * decode_reference(lo + 1 - (1u << f.mant_bits),
                                                                   f.exp_bits, f.mant_bits)
                                            : decode_reference(lo + 1, f.exp_bits, f.mant_bits);
      const float mid = static_cast<float>((a + b) / 2);
      ASSERT_EQ(static_cast<double>(mid), (a + b) / 2) << "midpoint must be exact in F32";
      const float m = sign ? -mid : mid;
      const uint32_t even = (lo & 1) ? lo + 1 : lo;
      EXPECT_EQ(f.narrow(m), sign | even) << "midpoint after code " << lo;
      EXPECT_EQ(f.narrow(std::nextafter(m, 0.0f)), sign | lo) << "below midpoint " << lo;
      EXPECT_EQ(f.narrow(std::nextafter(m, sign ? -INFINITY : INFINITY)), sign | (lo + 1))
          << "above midpoint " << lo;
    }
  }
  EXPECT_EQ(f.narrow(INFINITY), f.inf_code);
  EXPECT_EQ(f.narrow(-INFINITY), 0x8000 | f.inf_code);
  EXPECT_EQ(f.narrow(-0.0f), 0x8000);
}

TEST(DType, F32ToF16ExhaustiveOverCodes) {
  check_narrowing_exhaustive(kF16);
}
TEST(DType, F32ToBF16ExhaustiveOverCodes) {
  check_narrowing_exhaustive(kBF16);
}

// Nearest 16-bit code by brute distance comparison, for random floats.
uint16_t narrow_reference(float x, const Format16& f) {
  const double v = std::fabs(static_cast<double>(x));
  const uint32_t sign = std::signbit(x) ? 0x8000 : 0;
  uint32_t lo = 0, hi = f.inf_code;  // binary search: largest code with value <= v
  while (lo + 1 < hi) {
    const uint32_t m = (lo + hi) / 2;
    (decode_reference(m, f.exp_bits, f.mant_bits) <= v ? lo : hi) = m;
  }
  const double a = decode_reference(lo, f.exp_bits, f.mant_bits);
  const double b = hi == f.inf_code
                       ? 2 * decode_reference(hi - (1u << f.mant_bits), f.exp_bits, f.mant_bits)
                       : decode_reference(hi, f.exp_bits, f.mant_bits);
  if (v == a) return static_cast<uint16_t>(sign | lo);
  const uint32_t pick = (v - a < b - v) ? lo : (v - a > b - v) ? hi : ((lo & 1) ? hi : lo);
  return static_cast<uint16_t>(sign | pick);
}

TEST(DType, NarrowingMatchesReferenceOnRandomFloats) {
  Rng rng(7);
  for (int i = 0; i < 200000; ++i) {
    // Random bit patterns cover all exponents; the second half focuses on the 16-bit
    // formats' own range where rounding is interesting.
    uint32_t u = static_cast<uint32_t>(rng.next_u64());
    if (i % 2) u = (u & 0x80ffffffu) | ((98u + static_cast<uint32_t>(rng.below(46))) << 23);
    const float x = float_of(u);
    if (std::isnan(x)) continue;
    ASSERT_EQ(f32_to_f16(x), narrow_reference(x, kF16)) << std::hex << u;
    ASSERT_EQ(f32_to_bf16(x), narrow_reference(x, kBF16)) << std::hex << u;
  }
}

TEST(DType, ArrayConversionsHandleUnalignedBuffers) {
  const std::vector<float> src = {1.0f, -2.5f, 3.140625f, 0.0f, 65504.0f};
  for (const DType t : {DType::F64, DType::F32, DType::F16, DType::BF16}) {
    std::vector<uint8_t> buf(1 + src.size() * dtype_size(t));
    from_f32(t, src.data(), buf.data() + 1, src.size());  // deliberately misaligned
    std::vector<float> back(src.size());
    to_f32(t, buf.data() + 1, back.data(), src.size());
    for (size_t i = 0; i < src.size(); ++i) {
      const float want = t == DType::BF16 ? bf16_to_f32(f32_to_bf16(src[i])) : src[i];
      EXPECT_EQ(back[i], want) << dtype_name(t) << " element " << i;
    }
  }
}

// ---------------------------------------------------------------------------------------
// File I/O

using FileIo = TempDir;

TEST_F(FileIo, ReadFileErrorsNamePathAndReason) {
  const std::string missing = path("nope.bin");
  EXPECT_THAT(error_of([&] { read_file(missing); }),
              AllOf(HasSubstr(missing), HasSubstr("No such file")));
  EXPECT_THAT(error_of([&] { read_file(dir_); }), HasSubstr(dir_));
}

TEST_F(FileIo, AtomicWriteRoundTripLeavesNoTempFile) {
  const std::string p = path("a.txt");
  write_file_atomic(p, "first");
  EXPECT_EQ(read_file(p), "first");
  std::string big(3 << 20, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 131 + 7);
  write_file_atomic(p, big);
  EXPECT_EQ(read_file(p), big);
  write_file_atomic(path("empty"), "");
  EXPECT_EQ(read_file(path("empty")), "");
  EXPECT_EQ(listing(), (std::vector<std::string>{"a.txt", "empty"}));
}

TEST_F(FileIo, WriterWithoutCommitKeepsOldFile) {
  const std::string p = path("ckpt");
  write_file_atomic(p, "old contents");
  {
    AtomicFileWriter w(p);
    w.write("new contents that never land");
    EXPECT_TRUE(file_exists(w.temp_path()));
    EXPECT_THAT(w.temp_path(), HasSubstr(p + ".tmp." + std::to_string(::getpid())));
    EXPECT_EQ(read_file(p), "old contents");
  }
  EXPECT_EQ(read_file(p), "old contents");
  EXPECT_EQ(listing(), std::vector<std::string>{"ckpt"});
}

TEST_F(FileIo, StreamingWriterCommitsAllChunks) {
  const std::string p = path("stream");
  std::string expect;
  AtomicFileWriter w(p);
  for (int i = 0; i < 1000; ++i) {
    const std::string chunk = std::to_string(i) + ",";
    w.write(chunk);
    expect += chunk;
  }
  EXPECT_EQ(w.size(), expect.size());
  EXPECT_FALSE(file_exists(p));  // nothing visible before commit
  w.commit();
  EXPECT_EQ(read_file(p), expect);
  EXPECT_EQ(listing(), std::vector<std::string>{"stream"});
}

TEST_F(FileIo, WriterIntoMissingDirectoryNamesPath) {
  const std::string p = path("no/such/dir/file");
  EXPECT_THAT(error_of([&] { write_file_atomic(p, "x"); }), HasSubstr(p));
}

TEST_F(FileIo, MappedFileMapsMovesAndHandlesEmpty) {
  write_file_atomic(path("m"), "hello mmap");
  MappedFile m(path("m"));
  ASSERT_EQ(m.size(), 10u);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(m.data()), m.size()), "hello mmap");
  const uint8_t* p = m.data();
  MappedFile moved(std::move(m));
  EXPECT_EQ(moved.data(), p);
  EXPECT_EQ(m.data(), nullptr);
  EXPECT_EQ(m.size(), 0u);
  MappedFile assigned;
  assigned = std::move(moved);
  EXPECT_EQ(assigned.data(), p);
  EXPECT_EQ(assigned.path(), path("m"));

  write_file_atomic(path("e"), "");
  MappedFile e(path("e"));
  EXPECT_EQ(e.size(), 0u);

  EXPECT_THAT(error_of([&] { MappedFile x(path("missing")); }), HasSubstr(path("missing")));
  EXPECT_THAT(error_of([&] { MappedFile x(dir_); }), HasSubstr("is a directory"));
}

TEST_F(FileIo, MakeDirsAndExistence) {
  const std::string nested = path("a/b/c");
  EXPECT_FALSE(is_directory(nested));
  make_dirs(nested);
  make_dirs(nested);  // idempotent
  EXPECT_TRUE(is_directory(nested));
  EXPECT_FALSE(file_exists(nested));
  write_file_atomic(path("a/f"), "x");
  EXPECT_TRUE(file_exists(path("a/f")));
  EXPECT_FALSE(is_directory(path("a/f")));
  EXPECT_THAT(error_of([&] { make_dirs(path("a/f")); }), HasSubstr(path("a/f")));
  EXPECT_THAT(error_of([&] { make_dirs(path("a/f/g")); }), HasSubstr(path("a/f/g")));
}

// ---------------------------------------------------------------------------------------
// Safetensors

using Safetensors = TempDir;

std::vector<uint8_t> random_bytes(Rng& rng, size_t n) {
  std::vector<uint8_t> b(n);
  for (auto& x : b) x = static_cast<uint8_t>(rng.next_u64());
  return b;
}

TEST_F(Safetensors, RoundTripAllDTypes) {
  Rng rng(1);
  SafetensorsWriter w;
  std::vector<std::vector<uint8_t>> data;
  std::vector<std::vector<int64_t>> shapes;
  for (size_t i = 0; i < std::size(kAllDTypes); ++i) {
    shapes.push_back({static_cast<int64_t>(i % 3 + 1), static_cast<int64_t>(i + 2)});
    data.push_back(random_bytes(rng, (i % 3 + 1) * (i + 2) * dtype_size(kAllDTypes[i])));
    w.add(std::string("t.") + dtype_name(kAllDTypes[i]), kAllDTypes[i], shapes[i], data[i].data());
  }
  const float scalar = 42.0f;
  w.add("scalar", DType::F32, {}, &scalar);
  w.add("empty", DType::F16, {3, 0}, nullptr);
  w.set_metadata("format", "pt");
  w.set_metadata("note", "h\xc3\xa9llo \"quoted\"");
  const std::string p = path("m.safetensors");
  w.write(p);

  const SafetensorsFile f = SafetensorsFile::open(p);
  ASSERT_EQ(f.tensors().size(), std::size(kAllDTypes) + 2);
  for (size_t i = 0; i < std::size(kAllDTypes); ++i) {
    const TensorView& t = f.get(std::string("t.") + dtype_name(kAllDTypes[i]));
    EXPECT_EQ(t.dtype, kAllDTypes[i]);
    EXPECT_EQ(t.shape, shapes[i]);
    ASSERT_EQ(t.nbytes, data[i].size());
    EXPECT_EQ(t.numel() * static_cast<int64_t>(dtype_size(t.dtype)),
              static_cast<int64_t>(t.nbytes));
    EXPECT_EQ(std::memcmp(t.data, data[i].data(), t.nbytes), 0) << t.name;
    EXPECT_EQ(reinterpret_cast<uintptr_t>(t.data) % dtype_size(t.dtype), 0u) << t.name;
  }
  const TensorView& s = f.get("scalar");
  EXPECT_TRUE(s.shape.empty());
  EXPECT_EQ(s.numel(), 1);
  float got;
  std::memcpy(&got, s.data, 4);
  EXPECT_EQ(got, 42.0f);
  EXPECT_EQ(f.get("empty").numel(), 0);
  EXPECT_EQ(f.get("empty").nbytes, 0u);
  EXPECT_EQ(f.metadata().at("format"), "pt");
  EXPECT_EQ(f.metadata().at("note"), "h\xc3\xa9llo \"quoted\"");
  EXPECT_EQ(f.find("absent"), nullptr);
  EXPECT_THAT(error_of([&] { f.get("absent"); }), AllOf(HasSubstr(p), HasSubstr("\"absent\"")));
  EXPECT_EQ(listing(), std::vector<std::string>{"m.safetensors"});

  // Writing the same tensors again gives the same bytes, whatever the add order was.
  SafetensorsWriter w2;
  w2.set_metadata("note", "h\xc3\xa9llo \"quoted\"");
  w2.set_metadata("format", "pt");
  w2.add("empty", DType::F16, {3, 0}, nullptr);
  w2.add("scalar", DType::F32, {}, &scalar);
  for (size_t i = std::size(kAllDTypes); i-- > 0;)
    w2.add(std::string("t.") + dtype_name(kAllDTypes[i]), kAllDTypes[i], shapes[i], data[i].data());
  w2.write(path("m2.safetensors"));
  EXPECT_EQ(read_file(p), read_file(path("m2.safetensors")));
}

TEST_F(Safetensors, WriterOutputIsByteExact) {
  SafetensorsWriter w;
  const uint16_t a = 0x3fc0;  // BF16 1.5
  const float b[2] = {1.0f, 2.0f};
  w.add("a", DType::BF16, {}, &a);
  w.add("b", DType::F32, {2}, b);
  w.set_metadata("format", "pt");
  w.write(path("g.safetensors"));
  // F32 sorts before BF16 (larger elements first), and the 139-byte header is padded with
  // spaces to 144 = 0x90.
  const std::string header =
      R"({"__metadata__":{"format":"pt"},"b":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
      R"("a":{"dtype":"BF16","shape":[],"data_offsets":[8,10]}}     )";
  const std::string expected = std::string("\x90\0\0\0\0\0\0\0", 8) + header +
                               std::string("\0\0\x80\x3f\0\0\0\x40\xc0\x3f", 10);
  EXPECT_EQ(read_file(path("g.safetensors")), expected);
  // The reader agrees, and keeps header order.
  const SafetensorsFile f =
      SafetensorsFile::from_bytes(std::vector<uint8_t>(expected.begin(), expected.end()), "golden");
  ASSERT_EQ(f.tensors().size(), 2u);
  EXPECT_EQ(f.tensors()[0].name, "b");
  EXPECT_EQ(f.tensors()[1].name, "a");
  float out[2];
  copy_to_f32(f.get("b"), out);
  EXPECT_EQ(out[0], 1.0f);
  EXPECT_EQ(out[1], 2.0f);
  copy_to_f32(f.get("a"), out);
  EXPECT_EQ(out[0], 1.5f);
}

TEST_F(Safetensors, WriterRejectsBadTensors) {
  SafetensorsWriter w;
  const float x[4] = {};
  EXPECT_THAT(error_of([&] {
                w.add("x", DType::F32, {2, 2}, x, 12);
              }),
              AllOf(HasSubstr("\"x\""), HasSubstr("16"), HasSubstr("12")));
  EXPECT_THAT(error_of([&] { w.add("neg", DType::F32, {-1}, x); }), HasSubstr("\"neg\""));
  EXPECT_THAT(error_of([&] { w.add("__metadata__", DType::F32, {1}, x); }),
              HasSubstr("__metadata__"));
  EXPECT_THAT(error_of([&] {
                w.add("big", DType::F64, {INT64_MAX / 4, 3}, x);
              }),
              HasSubstr("\"big\""));
  w.add("x", DType::F32, {4}, x);
  EXPECT_THAT(error_of([&] { w.add("x", DType::F32, {4}, x); }), HasSubstr("twice"));
  EXPECT_EQ(w.size(), 1u);
  EXPECT_EQ(w.total_bytes(), 16u);
}

TEST_F(Safetensors, CopyToF32ConvertsFloatsAndNamesUnsupported) {
  const double d[3] = {0.5, -1e-40, 3.0};
  uint16_t h[3], bf[3];
  const float src[3] = {0.5f, -0.25f, 3.0f};
  from_f32(DType::F16, src, h, 3);
  from_f32(DType::BF16, src, bf, 3);
  const int32_t ints[3] = {1, 2, 3};
  SafetensorsWriter w;
  w.add("d", DType::F64, {3}, d);
  w.add("h", DType::F16, {3}, h);
  w.add("bf", DType::BF16, {3}, bf);
  w.add("f", DType::F32, {3}, src);
  w.add("i", DType::I32, {3}, ints);
  w.write(path("c.safetensors"));
  const SafetensorsFile f = SafetensorsFile::open(path("c.safetensors"));
  float out[3];
  copy_to_f32(f.get("d"), out);
  EXPECT_EQ(out[0], 0.5f);
  EXPECT_EQ(out[1], static_cast<float>(-1e-40));  // F32 subnormal
  EXPECT_EQ(out[2], 3.0f);
  for (const char* n : {"h", "bf", "f"}) {
    copy_to_f32(f.get(n), out);
    EXPECT_EQ(std::vector<float>(out, out + 3), std::vector<float>(src, src + 3)) << n;
  }
  EXPECT_THAT(error_of([&] { copy_to_f32(f.get("i"), out); }),
              AllOf(HasSubstr("\"i\""), HasSubstr("I32")));
}

// Builds a file from a header text and a data area of data_size zero bytes.
std::string raw_file(const std::string& header, size_t data_size) {
  std::string out(8, '\0');
  const uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>(n >> (8 * i));
  return out + header + std::string(data_size, '\0');
}

TEST_F(Safetensors, HandBuiltFileWithGapsAndOddHeaderLength) {
  // Other writers need not align or be contiguous: an unpadded header, a gap, tensors listed
  // out of offset order.
  const std::string header =
      R"({"z":{"dtype":"I16","shape":[2],"data_offsets":[4,8]},)"
      R"("y":{"dtype":"U8","shape":[3],"data_offsets":[0,3]},"__metadata__":{},)"
      R"("e":{"dtype":"F64","shape":[4,0],"data_offsets":[1,1]}})";
  std::string file = raw_file(header, 8);
  const size_t data = 8 + header.size();
  file[data + 0] = 1, file[data + 1] = 2, file[data + 2] = 3;
  file[data + 4] = '\xff', file[data + 5] = '\xff', file[data + 6] = 5, file[data + 7] = 0;
  write_file_atomic(path("h.safetensors"), file);
  const SafetensorsFile f = SafetensorsFile::open(path("h.safetensors"));
  ASSERT_EQ(f.tensors().size(), 3u);
  EXPECT_EQ(f.tensors()[0].name, "z");
  EXPECT_EQ(f.get("e").nbytes, 0u);  // an empty tensor inside another's bytes overlaps nothing
  int16_t z[2];
  std::memcpy(z, f.get("z").data, 4);
  EXPECT_EQ(z[0], -1);
  EXPECT_EQ(z[1], 5);
  EXPECT_EQ(std::vector<uint8_t>(f.get("y").data, f.get("y").data + 3),
            (std::vector<uint8_t>{1, 2, 3}));
  EXPECT_TRUE(f.metadata().empty());
}

struct BadFile {
  const char* label;
  std::string bytes;
  std::vector<std::string> expect;  // substrings of the message besides the path
};
void PrintTo(const BadFile& b, std::ostream* os) {
  *os << b.label;
}

std::string entry(const std::string& name, const std::string& body) {
  return "\"" + name + "\":{" + body + "}";
}

std::vector<BadFile> bad_files() {
  const std::string ok = R"("dtype":"F32","shape":[2],"data_offsets":[0,8])";
  auto one = [](const std::string& body, size_t data = 8) {
    return raw_file("{" + entry("w", body) + "}", data);
  };
  std::string huge_len(8, '\0');
  huge_len[4] = 1;  // 2^32 bytes
  return {
      {"Short", std::string("\x02\0\0\0", 4), {"shorter than the 8-byte"}},
      {"HeaderPastEnd", raw_file("{}", 0).substr(0, 9), {"larger than the 1 bytes"}},
      {"HeaderAbsurd", huge_len + "{}", {"exceeds the limit"}},
      {"NotJson", raw_file("{\"w\": nope}", 0), {"not valid JSON"}},
      {"NotUtf8", raw_file("{\"w\xff\": {}}", 0), {"not valid JSON"}},
      {"NotObject", raw_file("[1,2]", 0), {"array, not an object"}},
      {"EntryNotObject", raw_file("{\"w\":[1]}", 0), {"\"w\"", "not an object"}},
      {"MissingDtype", one(R"("shape":[2],"data_offsets":[0,8])"), {"\"w\"", "\"dtype\""}},
      {"MissingShape", one(R"("dtype":"F32","data_offsets":[0,8])"), {"\"w\"", "\"shape\""}},
      {"MissingOffsets", one(R"("dtype":"F32","shape":[2])"), {"\"w\"", "\"data_offsets\""}},
      {"DtypeNotString",
       one(R"("dtype":4,"shape":[2],"data_offsets":[0,8])"),
       {"\"w\"", "not a string"}},
      {"UnknownDtype",
       one(R"("dtype":"F33","shape":[2],"data_offsets":[0,8])"),
       {"\"w\"", "\"F33\""}},
      {"ShapeNotArray",
       one(R"("dtype":"F32","shape":2,"data_offsets":[0,8])"),
       {"\"w\"", "not an array"}},
      {"ShapeFloat",
       one(R"("dtype":"F32","shape":[2.0],"data_offsets":[0,8])"),
       {"\"w\"", "not an integer"}},
      {"ShapeString",
       one(R"("dtype":"F32","shape":["2"],"data_offsets":[0,8])"),
       {"\"w\"", "not an integer"}},
      {"NegativeDim",
       one(R"("dtype":"F32","shape":[-2],"data_offsets":[0,8])"),
       {"\"w\"", "negative dimension"}},
      {"NumelOverflow",
       one(R"("dtype":"U8","shape":[4294967296,4294967296,2],"data_offsets":[0,8])"),
       {"\"w\"", "more elements"}},
      {"BytesOverflow",
       one(R"("dtype":"F32","shape":[4611686018427387904],"data_offsets":[0,8])"),
       {"\"w\"", "too large"}},
      {"DimBeyondInt64",
       one(R"("dtype":"U8","shape":[9223372036854775808],"data_offsets":[0,8])"),
       {"\"w\"", "not an integer"}},
      {"OffsetsNotPair",
       one(R"("dtype":"F32","shape":[2],"data_offsets":[0,8,9])"),
       {"\"w\"", "[begin, end]"}},
      {"OffsetsNegative",
       one(R"("dtype":"F32","shape":[2],"data_offsets":[-8,0])"),
       {"\"w\"", "[begin, end]"}},
      {"OffsetsNotArray",
       one(R"("dtype":"F32","shape":[2],"data_offsets":"0-8")"),
       {"\"w\"", "[begin, end]"}},
      {"BeginAfterEnd",
       one(R"("dtype":"F32","shape":[0],"data_offsets":[8,0])"),
       {"\"w\"", "begin > end"}},
      {"EndPastData", one(ok, 7), {"\"w\"", "beyond the data area of 7 bytes"}},
      {"SizeMismatch",
       one(R"("dtype":"F32","shape":[3],"data_offsets":[0,8])", 12),
       {"\"w\"", "needs 12"}},
      {"Overlap",
       raw_file("{" + entry("a", ok) + "," +
                    entry("b", R"("dtype":"F32","shape":[2],"data_offsets":[4,12])") + "}",
                12),
       {"\"a\"", "\"b\"", "overlap"}},
      {"DuplicateTensor",
       raw_file("{" + entry("w", ok) + "," + entry("w", ok) + "}", 8),
       {"duplicate key \"w\""}},
      {"DuplicateField", one(ok + R"(,"dtype":"F16")"), {"duplicate key \"dtype\""}},
      {"MetadataNotObject", raw_file(R"({"__metadata__":"x"})", 0), {"__metadata__"}},
      {"MetadataNotStrings",
       raw_file(R"({"__metadata__":{"step":3}})", 0),
       {"__metadata__", "\"step\"", "not a string"}},
  };
}

class MalformedSafetensors : public TempDir, public ::testing::WithParamInterface<BadFile> {};

TEST_P(MalformedSafetensors, IsRejectedNamingFileAndTensor) {
  const std::string p = path("bad.safetensors");
  write_file_atomic(p, GetParam().bytes);
  const std::string msg = error_of([&] { SafetensorsFile::open(p); });
  EXPECT_THAT(msg, HasSubstr(p));
  for (const std::string& s : GetParam().expect) EXPECT_THAT(msg, HasSubstr(s));
  // The in-memory entry point applies the same rules.
  const std::string& b = GetParam().bytes;
  const std::string mem = error_of(
      [&] { SafetensorsFile::from_bytes(std::vector<uint8_t>(b.begin(), b.end()), "mem"); });
  EXPECT_THAT(mem, HasSubstr("safetensors file mem"));
}

INSTANTIATE_TEST_SUITE_P(AllCases, MalformedSafetensors, ::testing::ValuesIn(bad_files()),
                         [](const auto& info) { return std::string(info.param.label); });

// A checkpoint with tensors of mixed sizes, for the sharding tests.
struct Fixture {
  std::vector<std::vector<float>> data;
  SafetensorsWriter writer;
  Fixture() {
    for (int i = 0; i < 10; ++i) {
      data.emplace_back(static_cast<size_t>(3 + i * 2));
      for (size_t j = 0; j < data.back().size(); ++j) data.back()[j] = i * 100.0f + j;
    }
    for (int i = 0; i < 10; ++i)
      writer.add("layers." + std::to_string(i) + ".w", DType::F32,
                 {static_cast<int64_t>(data[i].size())}, data[i].data());
    writer.set_metadata("format", "pt");
  }
  void check(const TensorSource& src) const {
    ASSERT_EQ(src.names().size(), 10u);
    for (int i = 0; i < 10; ++i) {
      const TensorView& t = src.get("layers." + std::to_string(i) + ".w");
      ASSERT_EQ(t.nbytes, data[i].size() * 4);
      std::vector<float> got(data[i].size());
      copy_to_f32(t, got.data());
      EXPECT_EQ(got, data[i]);
    }
    EXPECT_EQ(src.metadata().at("format"), "pt");
  }
};

TEST_F(Safetensors, ShardedRoundTrip) {
  const Fixture fx;
  // Tensor sizes are 12, 20, ..., 84 bytes (480 in all); at most 100 per shard.
  const std::string dir = path("ckpt");
  const int n = fx.writer.write_sharded(dir, 100);
  EXPECT_GE(n, 5);
  std::vector<std::string> expected_files = {"model.safetensors.index.json"};
  for (int i = 1; i <= n; ++i) {
    char name[64];
    std::snprintf(name, sizeof name, "model-%05d-of-%05d.safetensors", i, n);
    expected_files.emplace_back(name);
    const SafetensorsFile shard = SafetensorsFile::open(dir + "/" + name);
    uint64_t bytes = 0;
    for (const TensorView& t : shard.tensors()) bytes += t.nbytes;
    EXPECT_LE(bytes, 100u) << name;
    EXPECT_EQ(shard.metadata().at("format"), "pt");
  }
  std::vector<std::string> files;
  for (const auto& e : fs::directory_iterator(dir)) files.push_back(e.path().filename());
  std::sort(files.begin(), files.end());
  std::sort(expected_files.begin(), expected_files.end());
  EXPECT_EQ(files, expected_files);

  const auto index = nlohmann::json::parse(read_file(dir + "/model.safetensors.index.json"));
  EXPECT_EQ(index["metadata"]["total_size"].get<uint64_t>(), 480u);
  EXPECT_EQ(index["weight_map"].size(), 10u);

  const TensorSource src = TensorSource::open(dir);
  EXPECT_EQ(src.files().size(), static_cast<size_t>(n));
  fx.check(src);
  fx.check(TensorSource::open(dir + "/model.safetensors.index.json"));
  EXPECT_EQ(src.find("nope"), nullptr);
  EXPECT_THAT(error_of([&] { src.get("nope"); }), AllOf(HasSubstr(dir), HasSubstr("\"nope\"")));
}

TEST_F(Safetensors, OversizedTensorGetsItsOwnShard) {
  const Fixture fx;
  EXPECT_EQ(fx.writer.write_sharded(path("one_each"), 1), 10);
  fx.check(TensorSource::open(path("one_each")));
  EXPECT_EQ(fx.writer.write_sharded(path("all"), 1 << 20), 1);
  fx.check(TensorSource::open(path("all")));
}

TEST_F(Safetensors, TensorSourceOpensSingleFileLayouts) {
  const Fixture fx;
  make_dirs(path("single"));
  fx.writer.write(path("single/model.safetensors"));
  fx.check(TensorSource::open(path("single")));
  fx.check(TensorSource::open(path("single/model.safetensors")));
  EXPECT_THAT(error_of([&] { TensorSource::open(path("missing")); }), HasSubstr(path("missing")));
  make_dirs(path("emptydir"));
  EXPECT_THAT(error_of([&] { TensorSource::open(path("emptydir")); }),
              AllOf(HasSubstr(path("emptydir")), HasSubstr("model.safetensors")));
}

TEST_F(Safetensors, BrokenIndexesAreRejected) {
  const Fixture fx;
  const std::string dir = path("ckpt");
  fx.writer.write_sharded(dir, 100);
  const std::string index_path = dir + "/model.safetensors.index.json";
  const auto good = nlohmann::json::parse(read_file(index_path));
  auto open_with = [&](const nlohmann::json& index) {
    write_file_atomic(index_path, index.dump());
    return error_of([&] { TensorSource::open(dir); });
  };

  auto j = good;
  j["weight_map"]["layers.3.w"] = "model-00099-of-00099.safetensors";
  EXPECT_THAT(open_with(j), AllOf(HasSubstr(index_path), HasSubstr("\"layers.3.w\""),
                                  HasSubstr("model-00099-of-00099"), HasSubstr("not exist")));
  j = good;
  j["weight_map"]["ghost"] = good["weight_map"]["layers.0.w"];
  EXPECT_THAT(open_with(j),
              AllOf(HasSubstr(index_path), HasSubstr("\"ghost\""), HasSubstr("lacks it")));
  j = good;
  j["weight_map"]["layers.0.w"] = "../escape.safetensors";
  EXPECT_THAT(open_with(j), AllOf(HasSubstr(index_path), HasSubstr("\"layers.0.w\"")));
  j = good;
  j["weight_map"]["layers.0.w"] = 3;
  EXPECT_THAT(open_with(j), AllOf(HasSubstr(index_path), HasSubstr("\"layers.0.w\"")));
  j = good;
  j.erase("weight_map");
  EXPECT_THAT(open_with(j), AllOf(HasSubstr(index_path), HasSubstr("weight_map")));
  write_file_atomic(index_path, "{not json");
  EXPECT_THAT(error_of([&] { TensorSource::open(dir); }),
              AllOf(HasSubstr(index_path), HasSubstr("not valid JSON")));
}

// Interop with an independent implementation: a few lines of Python + numpy that write and
// read the format by hand (no safetensors package is installed).
bool have_numpy() {
  return std::system("/usr/bin/python3 -c 'import numpy' >/dev/null 2>&1") == 0;
}

constexpr const char* kPyWriter = R"PY(
import json, struct, sys
import numpy as np
arrays = [
    ("w.f32", "F32", np.arange(6, dtype=np.float32).reshape(2, 3) * 0.5 - 1),
    ("w.f64", "F64", np.array([1e-310, -2.5, np.inf])),
    ("w.f16", "F16", np.array([[1.5, -0.0], [65504, 6e-8]], dtype=np.float16)),
    ("w.bf16", "BF16", np.array([0x3f80, 0xc000, 0x7f80, 0x0001], dtype=np.uint16)),
    ("i.i64", "I64", np.array([-(2**40), 7], dtype=np.int64)),
    ("i.i8", "I8", np.array([-128, 127, 0], dtype=np.int8)),
    ("m.bool", "BOOL", np.array([True, False, True])),
]
header, blobs, off = {}, [], 0
for name, dt, a in arrays:
    b = a.astype(a.dtype.newbyteorder("<")).tobytes()
    header[name] = {"dtype": dt, "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
    blobs.append(b)
    off += len(b)
# Header keys in reverse order of the data, to check the reader keeps header order.
ordered = {"__metadata__": {"format": "np"}}
for name, _, _ in reversed(arrays):
    ordered[name] = header[name]
h = json.dumps(ordered).encode()
h += b" " * (-len(h) % 8)
with open(sys.argv[1], "wb") as f:
    f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
)PY";

TEST_F(Safetensors, ReadsFileWrittenByPython) {
  if (!have_numpy()) GTEST_SKIP() << "/usr/bin/python3 with numpy is not available";
  write_file_atomic(path("w.py"), kPyWriter);
  const std::string out = path("py.safetensors");
  ASSERT_EQ(std::system(("/usr/bin/python3 " + path("w.py") + " " + out).c_str()), 0);
  const SafetensorsFile f = SafetensorsFile::open(out);
  std::vector<std::string> names;
  for (const TensorView& t : f.tensors()) names.push_back(t.name);
  EXPECT_EQ(names, (std::vector<std::string>{"m.bool", "i.i8", "i.i64", "w.bf16", "w.f16", "w.f64",
                                             "w.f32"}));
  EXPECT_EQ(f.metadata().at("format"), "np");
  auto floats = [&](const char* name) {
    std::vector<float> v(static_cast<size_t>(f.get(name).numel()));
    copy_to_f32(f.get(name), v.data());
    return v;
  };
  EXPECT_EQ(f.get("w.f32").shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(floats("w.f32"), (std::vector<float>{-1, -0.5, 0, 0.5, 1, 1.5}));
  EXPECT_EQ(floats("w.f64"), (std::vector<float>{0.0f, -2.5f, INFINITY}));  // 1e-310 -> 0
  const auto h = floats("w.f16");
  EXPECT_EQ(h[0], 1.5f);
  EXPECT_TRUE(h[1] == 0.0f && std::signbit(h[1]));
  EXPECT_EQ(h[2], 65504.0f);
  EXPECT_EQ(h[3], 0x1p-24f);  // 6e-8 rounds to the smallest half subnormal
  EXPECT_EQ(floats("w.bf16"), (std::vector<float>{1.0f, -2.0f, INFINITY, 0x1p-133f}));
  int64_t i64[2];
  std::memcpy(i64, f.get("i.i64").data, 16);
  EXPECT_EQ(i64[0], -(int64_t{1} << 40));
  EXPECT_EQ(i64[1], 7);
  const TensorView& i8 = f.get("i.i8");
  EXPECT_EQ(std::vector<int8_t>(i8.data, i8.data + 3), (std::vector<int8_t>{-128, 127, 0}));
  const TensorView& b = f.get("m.bool");
  EXPECT_EQ(b.dtype, DType::BOOL);
  EXPECT_EQ(std::vector<uint8_t>(b.data, b.data + 3), (std::vector<uint8_t>{1, 0, 1}));
}

constexpr const char* kPyReader = R"PY(
import json, struct, sys
import numpy as np
raw = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
assert n % 8 == 0, n
header = json.loads(raw[8:8 + n])
data = raw[8 + n:]
assert header.pop("__metadata__") == {"format": "pt"}
types = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I32": "<i4", "U8": "u1"}
end = 0
for name, e in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"]):
    b, e_ = e["data_offsets"]
    assert b == end, (name, b, end)  # contiguous, no gaps
    end = e_
    a = np.frombuffer(data[b:e_], dtype=types[e["dtype"]]).reshape(e["shape"])
    k = int(name[1:])
    want = (np.arange(a.size) * (k + 1) - 3).reshape(e["shape"]).astype(a.dtype)
    assert (a == want).all(), (name, a, want)
assert end == len(data)
assert sorted(header) == ["t%d" % i for i in range(5)], sorted(header)
print("ok")
)PY";

TEST_F(Safetensors, WrittenFileReadsInPython) {
  if (!have_numpy()) GTEST_SKIP() << "/usr/bin/python3 with numpy is not available";
  const DType types[5] = {DType::U8, DType::F64, DType::F16, DType::I32, DType::F32};
  const std::vector<int64_t> shapes[5] = {{7}, {2, 3}, {5}, {1, 4, 2}, {3, 3}};
  std::vector<std::vector<uint8_t>> bufs;
  SafetensorsWriter w;
  for (int k = 0; k < 5; ++k) {
    const auto n = static_cast<size_t>(
        std::accumulate(shapes[k].begin(), shapes[k].end(), int64_t{1}, std::multiplies<>()));
    std::vector<float> vals(n);
    for (size_t i = 0; i < n; ++i) vals[i] = static_cast<float>(i) * (k + 1) - 3;
    bufs.emplace_back(n * dtype_size(types[k]));
    uint8_t* out = bufs.back().data();
    for (size_t i = 0; i < n; ++i) {
      if (types[k] == DType::U8) out[i] = static_cast<uint8_t>(static_cast<int>(vals[i]));
      if (types[k] == DType::I32) {
        const auto v = static_cast<int32_t>(vals[i]);
        std::memcpy(out + 4 * i, &v, 4);
      }
    }
    if (dtype_is_float(types[k])) from_f32(types[k], vals.data(), out, n);
    w.add("t" + std::to_string(k), types[k], shapes[k], out);
  }
  w.set_metadata("format", "pt");
  w.write(path("c.safetensors"));
  write_file_atomic(path("r.py"), kPyReader);
  EXPECT_EQ(std::system(("/usr/bin/python3 " + path("r.py") + " " + path("c.safetensors")).c_str()),
            0);
}

}  // namespace
}  // namespace seekr
