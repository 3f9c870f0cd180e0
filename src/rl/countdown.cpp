#include "rl/countdown.h"

#include <algorithm>
#include <functional>

#include "core/check.h"
#include "rl/answer.h"

namespace seekr::rl {
namespace {

// Recursive descent over the folded ASCII text; depth is bounded so that "((((...))))" cannot
// exhaust the stack.
class Parser {
 public:
  explicit Parser(std::string_view s) : s_(s) {}

  std::optional<int64_t> parse_all() {
    auto v = expr(0);
    skip_ws();
    if (v && pos_ != s_.size())
      return fail("unexpected character at offset " + std::to_string(pos_));
    return v;
  }

  const std::string& error() const { return error_; }
  const std::vector<int64_t>& used() const { return used_; }

 private:
  static constexpr int kMaxDepth = 64;
  std::string_view s_;
  size_t pos_ = 0;
  std::string error_;
  std::vector<int64_t> used_;

  std::nullopt_t fail(std::string msg) {
    if (error_.empty()) error_ = std::move(msg);
    return std::nullopt;
  }
  void skip_ws() {
    while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n')) ++pos_;
  }
  // The operator at pos_ in ASCII or its Unicode spelling, consumed; 0 when none.
  char take_op(std::string_view ops) {
    skip_ws();
    static const std::pair<std::string_view, char> kSpellings[] = {
        {"+", '+'},        {"-", '-'}, {"\xE2\x88\x92", '-'}, {"*", '*'},
        {"\xC3\x97", '*'}, {"/", '/'}, {"\xC3\xB7", '/'}};
    for (const auto& [text, op] : kSpellings) {
      if (ops.find(op) != std::string_view::npos && s_.substr(pos_, text.size()) == text) {
        pos_ += text.size();
        return op;
      }
    }
    return 0;
  }

  std::optional<int64_t> expr(int depth) {
    auto lhs = term(depth);
    while (lhs) {
      const char op = take_op("+-");
      if (!op) break;
      auto rhs = term(depth);
      if (!rhs) return std::nullopt;
      int64_t r;
      const bool overflow = op == '+' ? __builtin_add_overflow(*lhs, *rhs, &r)
                                      : __builtin_sub_overflow(*lhs, *rhs, &r);
      if (overflow) return fail("overflow");
      lhs = r;
    }
    return lhs;
  }

  std::optional<int64_t> term(int depth) {
    auto lhs = factor(depth);
    while (lhs) {
      const char op = take_op("*/");
      if (!op) break;
      auto rhs = factor(depth);
      if (!rhs) return std::nullopt;
      int64_t r;
      if (op == '*') {
        if (__builtin_mul_overflow(*lhs, *rhs, &r)) return fail("overflow");
      } else {
        if (*rhs == 0) return fail("division by zero");
        if (*lhs % *rhs != 0) return fail("inexact division");
        r = *lhs / *rhs;
      }
      lhs = r;
    }
    return lhs;
  }

  std::optional<int64_t> factor(int depth) {
    skip_ws();
    if (pos_ >= s_.size()) return fail("expression ends early");
    if (s_[pos_] == '(') {
      if (depth >= kMaxDepth) return fail("parentheses nested too deeply");
      ++pos_;
      auto v = expr(depth + 1);
      skip_ws();
      if (!v) return std::nullopt;
      if (pos_ >= s_.size() || s_[pos_] != ')') return fail("missing ')'");
      ++pos_;
      return v;
    }
    if (s_[pos_] < '0' || s_[pos_] > '9') return fail("expected a number or '('");
    int64_t v = 0;
    while (pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9') {
      if (__builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, s_[pos_] - '0', &v))
        return fail("number too large");
      ++pos_;
    }
    used_.push_back(v);
    return v;
  }
};

}  // namespace

CountdownResult check_countdown(std::string_view expr, const std::vector<int64_t>& numbers,
                                int64_t target) {
  CountdownResult res;
  const std::string folded = fold_digits(expr);
  Parser parser(folded);
  res.value = parser.parse_all();
  if (!res.value) {
    res.error = parser.error();
    return res;
  }
  std::vector<int64_t> used = parser.used();
  std::vector<int64_t> given = numbers;
  std::sort(used.begin(), used.end());
  std::sort(given.begin(), given.end());
  if (used != given) {
    res.error = "numbers used are not exactly the given numbers, each once";
    return res;
  }
  if (*res.value != target) {
    res.error = "value " + std::to_string(*res.value) + " is not the target";
    return res;
  }
  res.ok = true;
  return res;
}

std::optional<std::string> solve_countdown(const std::vector<int64_t>& numbers, int64_t target) {
  struct Item {
    int64_t v;
    std::string e;
  };
  std::vector<Item> items;
  for (int64_t n : numbers) items.push_back({n, std::to_string(n)});
  std::optional<std::string> found;
  std::function<void(std::vector<Item>&)> search = [&](std::vector<Item>& pool) {
    if (found) return;
    if (pool.size() == 1) {
      if (pool[0].v == target) found = pool[0].e;
      return;
    }
    for (size_t i = 0; i < pool.size(); ++i) {
      for (size_t j = 0; j < pool.size(); ++j) {
        if (i == j) continue;
        const Item a = pool[i], b = pool[j];
        std::vector<Item> rest;
        for (size_t k = 0; k < pool.size(); ++k)
          if (k != i && k != j) rest.push_back(pool[k]);
        auto try_item = [&](int64_t v, char op) {
          rest.push_back({v, "(" + a.e + op + b.e + ")"});
          search(rest);
          rest.pop_back();
        };
        int64_t r;
        // + and * are commutative: try each unordered pair once.
        if (i < j && !__builtin_add_overflow(a.v, b.v, &r)) try_item(r, '+');
        if (i < j && !__builtin_mul_overflow(a.v, b.v, &r)) try_item(r, '*');
        if (!__builtin_sub_overflow(a.v, b.v, &r)) try_item(r, '-');
        if (b.v != 0 && a.v % b.v == 0) try_item(a.v / b.v, '/');
        if (found) return;
      }
    }
  };
  search(items);
  if (found && found->size() > 2 && numbers.size() > 1)
    *found = found->substr(1, found->size() - 2);
  return found;
}

CountdownPuzzle generate_countdown(const CountdownSpec& spec, Rng& rng) {
  SEEKR_CHECK(spec.count >= 2 && spec.max_number >= 2 && spec.max_target >= 1);
  for (int attempt = 0; attempt < 100000; ++attempt) {
    CountdownPuzzle p;
    struct Item {
      int64_t v;
      std::string e;
    };
    std::vector<Item> pool;
    for (int i = 0; i < spec.count; ++i) {
      const auto n = static_cast<int64_t>(1 + rng.below(static_cast<uint64_t>(spec.max_number)));
      p.numbers.push_back(n);
      pool.push_back({n, std::to_string(n)});
    }
    bool ok = true;
    while (pool.size() > 1 && ok) {
      const size_t i = rng.below(pool.size());
      size_t j = rng.below(pool.size() - 1);
      if (j >= i) ++j;
      const Item a = pool[i], b = pool[j];
      Item c;
      switch (rng.below(4)) {
        case 0:
          c = {a.v + b.v, "(" + a.e + "+" + b.e + ")"};
          break;
        case 1:
          c = {a.v - b.v, "(" + a.e + "-" + b.e + ")"};
          break;
        case 2:
          c = {a.v * b.v, "(" + a.e + "*" + b.e + ")"};
          break;
        default:
          // Dividing by 1 is a free move that makes puzzles trivially padded; skip it.
          if (b.v <= 1 || a.v % b.v != 0) {
            ok = false;
            break;
          }
          c = {a.v / b.v, "(" + a.e + "/" + b.e + ")"};
      }
      if (c.v <= 0 || c.v > 1000000) ok = false;
      pool.erase(pool.begin() + static_cast<std::ptrdiff_t>(std::max(i, j)));
      pool.erase(pool.begin() + static_cast<std::ptrdiff_t>(std::min(i, j)));
      pool.push_back(c);
    }
    if (!ok || pool[0].v > spec.max_target) continue;
    p.target = pool[0].v;
    p.solution = pool[0].e.substr(1, pool[0].e.size() - 2);
    return p;
  }
  SEEKR_CHECK(false, "no countdown puzzle found for these settings");
  return {};
}

}  // namespace seekr::rl
