// Exact integers and rationals of any size, for answers a model may write with thousands of
// digits and for arithmetic tasks whose results overflow 64 bits. Only what verification needs:
// no division of big integers, since equality of fractions is decided by cross-multiplying.
#pragma once

#include <compare>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace seekr::rl {

class BigInt {
 public:
  BigInt() = default;
  BigInt(int64_t v);  // NOLINT: implicit on purpose, so BigInt(3) + x reads naturally.

  // Parses [+-]?[0-9]+ (ASCII only); nullopt on anything else.
  static std::optional<BigInt> parse(std::string_view s);

  std::string to_string() const;
  bool is_zero() const { return mag_.empty(); }
  bool negative() const { return neg_; }

  BigInt operator-() const;
  friend BigInt operator+(const BigInt& a, const BigInt& b);
  friend BigInt operator-(const BigInt& a, const BigInt& b);
  friend BigInt operator*(const BigInt& a, const BigInt& b);
  friend bool operator==(const BigInt& a, const BigInt& b) = default;
  friend std::strong_ordering operator<=>(const BigInt& a, const BigInt& b);

 private:
  // Little-endian base-1e9 limbs without leading zero limbs; zero is empty and never negative.
  static constexpr uint32_t kBase = 1000000000;
  std::vector<uint32_t> mag_;
  bool neg_ = false;

  void trim();
  static int cmp_mag(const std::vector<uint32_t>& a, const std::vector<uint32_t>& b);
  static std::vector<uint32_t> add_mag(const std::vector<uint32_t>& a,
                                       const std::vector<uint32_t>& b);
  // Requires |a| >= |b|.
  static std::vector<uint32_t> sub_mag(const std::vector<uint32_t>& a,
                                       const std::vector<uint32_t>& b);
};

// num/den with den > 0, not reduced: two values are equal when num1*den2 == num2*den1.
struct BigRational {
  BigInt num;
  BigInt den = BigInt(1);
  friend bool operator==(const BigRational& a, const BigRational& b) {
    return a.num * b.den == b.num * a.den;
  }
};

}  // namespace seekr::rl
