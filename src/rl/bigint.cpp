#include "rl/bigint.h"

#include <algorithm>

namespace seekr::rl {

BigInt::BigInt(int64_t v) {
  neg_ = v < 0;
  // Through uint64 so that INT64_MIN does not overflow on negation.
  uint64_t m = neg_ ? ~static_cast<uint64_t>(v) + 1 : static_cast<uint64_t>(v);
  while (m) {
    mag_.push_back(static_cast<uint32_t>(m % kBase));
    m /= kBase;
  }
}

std::optional<BigInt> BigInt::parse(std::string_view s) {
  BigInt r;
  bool neg = false;
  if (!s.empty() && (s[0] == '+' || s[0] == '-')) {
    neg = s[0] == '-';
    s.remove_prefix(1);
  }
  if (s.empty()) return std::nullopt;
  for (char c : s)
    if (c < '0' || c > '9') return std::nullopt;
  for (size_t end = s.size(); end > 0;) {
    const size_t begin = end >= 9 ? end - 9 : 0;
    uint32_t limb = 0;
    for (size_t i = begin; i < end; ++i) limb = limb * 10 + static_cast<uint32_t>(s[i] - '0');
    r.mag_.push_back(limb);
    end = begin;
  }
  r.neg_ = neg;
  r.trim();
  return r;
}

std::string BigInt::to_string() const {
  if (mag_.empty()) return "0";
  std::string out = neg_ ? "-" : "";
  out += std::to_string(mag_.back());
  for (size_t i = mag_.size() - 1; i-- > 0;) {
    const std::string limb = std::to_string(mag_[i]);
    out.append(9 - limb.size(), '0');
    out += limb;
  }
  return out;
}

void BigInt::trim() {
  while (!mag_.empty() && mag_.back() == 0) mag_.pop_back();
  if (mag_.empty()) neg_ = false;
}

int BigInt::cmp_mag(const std::vector<uint32_t>& a, const std::vector<uint32_t>& b) {
  if (a.size() != b.size()) return a.size() < b.size() ? -1 : 1;
  for (size_t i = a.size(); i-- > 0;)
    if (a[i] != b[i]) return a[i] < b[i] ? -1 : 1;
  return 0;
}

std::vector<uint32_t> BigInt::add_mag(const std::vector<uint32_t>& a,
                                      const std::vector<uint32_t>& b) {
  std::vector<uint32_t> r(std::max(a.size(), b.size()) + 1, 0);
  uint32_t carry = 0;
  for (size_t i = 0; i < r.size(); ++i) {
    uint32_t s = carry;
    if (i < a.size()) s += a[i];
    if (i < b.size()) s += b[i];
    carry = s >= kBase;
    r[i] = carry ? s - kBase : s;
  }
  return r;
}

std::vector<uint32_t> BigInt::sub_mag(const std::vector<uint32_t>& a,
                                      const std::vector<uint32_t>& b) {
  std::vector<uint32_t> r(a.size(), 0);
  int64_t borrow = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    int64_t d = static_cast<int64_t>(a[i]) - borrow - (i < b.size() ? b[i] : 0);
    borrow = d < 0;
    r[i] = static_cast<uint32_t>(d < 0 ? d + kBase : d);
  }
  return r;
}

BigInt BigInt::operator-() const {
  BigInt r = *this;
  if (!r.mag_.empty()) r.neg_ = !r.neg_;
  return r;
}

BigInt operator+(const BigInt& a, const BigInt& b) {
  BigInt r;
  if (a.neg_ == b.neg_) {
    r.mag_ = BigInt::add_mag(a.mag_, b.mag_);
    r.neg_ = a.neg_;
  } else if (BigInt::cmp_mag(a.mag_, b.mag_) >= 0) {
    r.mag_ = BigInt::sub_mag(a.mag_, b.mag_);
    r.neg_ = a.neg_;
  } else {
    r.mag_ = BigInt::sub_mag(b.mag_, a.mag_);
    r.neg_ = b.neg_;
  }
  r.trim();
  return r;
}

BigInt operator-(const BigInt& a, const BigInt& b) {
  return a + (-b);
}

BigInt operator*(const BigInt& a, const BigInt& b) {
  BigInt r;
  if (a.is_zero() || b.is_zero()) return r;
  std::vector<uint64_t> acc(a.mag_.size() + b.mag_.size() + 1, 0);
  for (size_t i = 0; i < a.mag_.size(); ++i) {
    uint64_t carry = 0;
    for (size_t j = 0; j < b.mag_.size(); ++j) {
      // < 1e9 * 1e9 + 2e9 fits comfortably in 64 bits.
      const uint64_t cur = acc[i + j] + static_cast<uint64_t>(a.mag_[i]) * b.mag_[j] + carry;
      acc[i + j] = cur % BigInt::kBase;
      carry = cur / BigInt::kBase;
    }
    for (size_t k = i + b.mag_.size(); carry; ++k) {
      const uint64_t cur = acc[k] + carry;
      acc[k] = cur % BigInt::kBase;
      carry = cur / BigInt::kBase;
    }
  }
  r.mag_.assign(acc.begin(), acc.end());
  r.neg_ = a.neg_ != b.neg_;
  r.trim();
  return r;
}

std::strong_ordering operator<=>(const BigInt& a, const BigInt& b) {
  if (a.neg_ != b.neg_) return a.neg_ ? std::strong_ordering::less : std::strong_ordering::greater;
  const int c = BigInt::cmp_mag(a.mag_, b.mag_);
  const int s = a.neg_ ? -c : c;
  return s < 0 ? std::strong_ordering::less
               : (s > 0 ? std::strong_ordering::greater : std::strong_ordering::equal);
}

}  // namespace seekr::rl
