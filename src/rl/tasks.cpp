#include "rl/tasks.h"

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>
#include <unordered_set>

#include "core/check.h"
#include "rl/answer.h"
#include "rl/bigint.h"

namespace seekr::rl {

const char* verifier_name(Verifier v) {
  switch (v) {
    case Verifier::Number:
      return "number";
    case Verifier::Countdown:
      return "countdown";
    case Verifier::Exact:
      return "exact";
  }
  return "?";
}

bool verify(const Problem& p, std::string_view extracted) {
  switch (p.verifier) {
    case Verifier::Number:
      return numbers_equal(extracted, p.answer);
    case Verifier::Exact:
      return collapse_spaces(extracted) == collapse_spaces(p.answer);
    case Verifier::Countdown: {
      const auto target = BigInt::parse(collapse_spaces(p.answer));
      SEEKR_CHECK(target && *target < BigInt(INT64_MAX) && *target > BigInt(INT64_MIN),
                  "countdown target '", p.answer, "'");
      return check_countdown(extracted, p.numbers, std::stoll(collapse_spaces(p.answer))).ok;
    }
  }
  return false;
}

namespace {

bool zh(Lang lang) {
  return lang == Lang::Zh;
}

std::string join(const std::vector<std::string>& parts, std::string_view sep) {
  std::string out;
  for (size_t i = 0; i < parts.size(); ++i) {
    if (i) out += sep;
    out += parts[i];
  }
  return out;
}

std::string random_digits(int digits, Rng& rng) {
  std::string s(1, static_cast<char>('1' + rng.below(9)));
  for (int i = 1; i < digits; ++i) s += static_cast<char>('0' + rng.below(10));
  return s;
}

std::string answer_line(const std::string& answer, Lang lang) {
  return (zh(lang) ? "答案 " : "answer ") + answer;
}

// Evaluates operands[0] ops[0] operands[1] ... with * before + and -, one step per operation.
std::string evaluate_steps(std::vector<BigInt> vals, std::vector<char> ops,
                           std::vector<std::string>* steps) {
  for (size_t i = 0; i < ops.size();) {
    if (ops[i] != '*') {
      ++i;
      continue;
    }
    const BigInt r = vals[i] * vals[i + 1];
    steps->push_back(vals[i].to_string() + "*" + vals[i + 1].to_string() + "=" + r.to_string());
    vals[i] = r;
    vals.erase(vals.begin() + static_cast<std::ptrdiff_t>(i) + 1);
    ops.erase(ops.begin() + static_cast<std::ptrdiff_t>(i));
  }
  BigInt acc = vals[0];
  for (size_t i = 0; i < ops.size(); ++i) {
    const BigInt r = ops[i] == '+' ? acc + vals[i + 1] : acc - vals[i + 1];
    steps->push_back(acc.to_string() + ops[i] + vals[i + 1].to_string() + "=" + r.to_string());
    acc = r;
  }
  return acc.to_string();
}

Problem generate_arithmetic(const ArithmeticSpec& spec, Lang lang, Rng& rng) {
  SEEKR_CHECK(spec.digits >= 1 && spec.terms >= 2);
  std::vector<std::string> operands;
  std::vector<char> ops;
  for (int i = 0; i < spec.terms; ++i) {
    operands.push_back(random_digits(spec.digits, rng));
    if (i == 0) continue;
    switch (spec.op) {
      case ArithOp::Add:
        ops.push_back('+');
        break;
      case ArithOp::Sub:
        ops.push_back('-');
        break;
      case ArithOp::Mul:
        ops.push_back('*');
        break;
      case ArithOp::Mixed:
        ops.push_back("+-*"[rng.below(3)]);
        break;
    }
  }
  std::string expr = operands[0];
  for (size_t i = 0; i < ops.size(); ++i) expr += ops[i] + operands[i + 1];

  Problem p;
  p.lang = lang;
  p.verifier = Verifier::Number;
  // Both languages put the expression at the same distance from the end of the prompt, so a
  // small model's digit look-ups from its reasoning are the same for either.
  p.prompt = zh(lang) ? "计算 " + expr + "？" : "What is " + expr + "?";
  std::vector<BigInt> vals;
  for (const auto& o : operands) vals.push_back(*BigInt::parse(o));
  std::vector<std::string> steps;
  p.answer = evaluate_steps(vals, ops, &steps);
  const bool commutative = spec.op == ArithOp::Add || spec.op == ArithOp::Mul;
  if (spec.op == ArithOp::Add) {
    p.task = "add";
    switch (spec.trace) {
      case AdditionTrace::Columns: p.solution = addition_scratchpad(operands, lang); break;
      case AdditionTrace::FixedWidth:
        p.solution = fixed_width_addition_scratchpad(operands, lang);
        break;
      case AdditionTrace::Peeling: p.solution = peeling_addition_scratchpad(operands, lang); break;
    }
  } else if (spec.op == ArithOp::Mul && spec.terms == 2) {
    p.task = "mul";
    p.solution = multiplication_scratchpad(operands[0], operands[1], lang);
  } else {
    p.task = spec.op == ArithOp::Mul ? "mul" : (spec.op == ArithOp::Sub ? "sub" : "mixed");
    steps.push_back(answer_line(p.answer, lang));
    p.solution = join(steps, "; ");
  }
  if (commutative) {
    std::vector<std::string> sorted = operands;
    std::sort(sorted.begin(), sorted.end());
    p.key = "arith:" + join(sorted, std::string(1, ops[0]));
  } else {
    p.key = "arith:" + expr;
  }
  return p;
}

Problem generate_countdown_problem(const CountdownSpec& spec, Lang lang, Rng& rng) {
  const CountdownPuzzle puzzle = generate_countdown(spec, rng);
  std::vector<std::string> nums;
  for (int64_t n : puzzle.numbers) nums.push_back(std::to_string(n));
  const std::string list = join(nums, ", ");
  const std::string target = std::to_string(puzzle.target);
  Problem p;
  p.task = "countdown";
  p.lang = lang;
  p.verifier = Verifier::Countdown;
  p.numbers = puzzle.numbers;
  p.answer = target;
  p.prompt = zh(lang) ? "用数字 " + list + "（每个恰好用一次）和 + - * / 以及括号，写出等于 " +
                            target + " 的算式。"
                      : "Using the numbers " + list +
                            ", each exactly once, and + - * / with parentheses, write an "
                            "expression equal to " +
                            target + ".";
  p.solution = puzzle.solution + "=" + target + "; " + answer_line(puzzle.solution, lang);
  std::vector<int64_t> sorted = puzzle.numbers;
  std::sort(sorted.begin(), sorted.end());
  std::vector<std::string> sorted_s;
  for (int64_t n : sorted) sorted_s.push_back(std::to_string(n));
  p.key = "countdown:" + join(sorted_s, ",") + "=" + target;
  return p;
}

struct BoolNode {
  std::string text;
  bool value;
};

// A random expression over 0/1 with `ops` binary operators; every composite operand is
// parenthesised so no precedence rule is needed to read it.
BoolNode gen_bool(int ops, Rng& rng, std::vector<std::string>* steps) {
  if (ops == 0) {
    const bool v = rng.below(2);
    if (rng.below(3) == 0) {
      steps->push_back(std::string("!") + (v ? "1" : "0") + "=" + (v ? "0" : "1"));
      return {std::string("!") + (v ? "1" : "0"), !v};
    }
    return {v ? "1" : "0", v};
  }
  const int left_ops = static_cast<int>(rng.below(static_cast<uint64_t>(ops)));
  const BoolNode l = gen_bool(left_ops, rng, steps);
  const BoolNode r = gen_bool(ops - 1 - left_ops, rng, steps);
  const bool is_and = rng.below(2);
  const bool v = is_and ? (l.value && r.value) : (l.value || r.value);
  const char op = is_and ? '&' : '|';
  steps->push_back(std::string(l.value ? "1" : "0") + op + (r.value ? "1" : "0") + "=" +
                   (v ? "1" : "0"));
  auto wrap = [](const BoolNode& n, int n_ops) { return n_ops ? "(" + n.text + ")" : n.text; };
  return {wrap(l, left_ops) + op + wrap(r, ops - 1 - left_ops), v};
}

Problem generate_bool(const BoolSpec& spec, Lang lang, Rng& rng) {
  SEEKR_CHECK(spec.ops >= 1);
  std::vector<std::string> steps;
  const BoolNode root = gen_bool(spec.ops, rng, &steps);
  Problem p;
  p.task = "bool";
  p.lang = lang;
  p.verifier = Verifier::Exact;
  p.answer = root.value ? "1" : "0";
  p.prompt = zh(lang) ? "计算逻辑表达式 " + root.text +
                            " 的值（1 表示真，0 表示假，& 是与，| 是或，! 是非），回答 1 或 0。"
                      : "Evaluate the logical expression " + root.text +
                            " (1 is true, 0 is false, & is and, | is or, ! is not). Answer 1 or 0.";
  steps.push_back(answer_line(p.answer, lang));
  p.solution = join(steps, "; ");
  p.key = "bool:" + root.text;
  return p;
}

constexpr const char* kWords[] = {
    "apple",  "river",  "stone",  "cloud",    "tiger",  "lemon",  "piano",  "zebra",
    "mango",  "candle", "forest", "violet",   "rocket", "bridge", "garden", "helmet",
    "island", "jacket", "kettle", "ladder",   "marble", "needle", "orange", "pepper",
    "quartz", "saddle", "tunnel", "umbrella", "velvet", "window", "yellow", "anchor",
    "basket", "castle", "dragon", "engine",   "falcon", "guitar", "harbor", "insect"};

Problem generate_sort(const SortSpec& spec, Lang lang, Rng& rng) {
  constexpr size_t kCount = sizeof(kWords) / sizeof(kWords[0]);
  SEEKR_CHECK(spec.words >= 2 && static_cast<size_t>(spec.words) <= kCount);
  std::vector<std::string> pool(std::begin(kWords), std::end(kWords));
  std::vector<std::string> words;
  for (int i = 0; i < spec.words; ++i) {
    const size_t k = rng.below(pool.size());
    words.push_back(pool[k]);
    pool.erase(pool.begin() + static_cast<std::ptrdiff_t>(k));
  }
  std::vector<std::string> sorted = words;
  std::sort(sorted.begin(), sorted.end());
  Problem p;
  p.task = "sort";
  p.lang = lang;
  p.verifier = Verifier::Exact;
  p.answer = join(sorted, " ");
  p.prompt = (zh(lang) ? "把这些单词按字母顺序排列：" : "Sort these words alphabetically: ") +
             join(words, " ");
  p.solution = join(sorted, " < ") + "; " + answer_line(p.answer, lang);
  p.key = "sort:" + p.answer;
  return p;
}

}  // namespace

Problem generate(const TaskSpec& spec, Rng& rng) {
  switch (spec.kind) {
    case TaskKind::Arithmetic:
      return generate_arithmetic(spec.arith, spec.lang, rng);
    case TaskKind::Countdown:
      return generate_countdown_problem(spec.countdown, spec.lang, rng);
    case TaskKind::BoolEval:
      return generate_bool(spec.boolean, spec.lang, rng);
    case TaskKind::WordSort:
      return generate_sort(spec.sort, spec.lang, rng);
  }
  SEEKR_CHECK(false, "unknown task kind");
  return {};
}

std::string fixed_width_addition_scratchpad(const std::vector<std::string>& operands,
                                           Lang lang) {
  size_t width = 0;
  for (const auto& o : operands) width = std::max(width, o.size());
  SEEKR_CHECK(width > 0);
  std::vector<std::string> columns;
  std::string found;  // the answer's digits so far, most significant first
  int carry = 0;
  BigInt total;
  for (const auto& o : operands) total = total + *BigInt::parse(o);
  for (size_t col = 0; col < width; ++col) {
    std::string step;
    int sum = carry;
    for (const auto& o : operands) {
      // Missing digits of shorter operands are written as 0 so that every column looks alike.
      const char d = col < o.size() ? o[o.size() - 1 - col] : '0';
      step += std::string(1, d) + "+";
      sum += d - '0';
    }
    const std::string sum_text = std::to_string(sum);
    const size_t sum_width = std::to_string(9 * operands.size() + carry).size();
    step += std::to_string(carry) + "=" + std::string(sum_width - std::min(sum_width, sum_text.size()), '0') +
            sum_text + (zh(lang) ? " 进位=" : " carry=") + std::to_string(sum / 10);
    found = std::to_string(sum % 10) + found;
    step += " ->" + found;
    carry = sum / 10;
    columns.push_back(step);
  }
  // No digit follows a space: the only space-digit pair the model sees is the one before the
  // prompt's first number, which it can then find without counting.
  columns.push_back((zh(lang) ? "答案=" : "answer=") + total.to_string());
  return join(columns, ";");
}

std::string peeling_addition_scratchpad(const std::vector<std::string>& operands, Lang lang) {
  SEEKR_CHECK(!operands.empty());
  const size_t width = operands[0].size();
  for (const auto& o : operands) SEEKR_CHECK(o.size() == width && width > 0);
  std::vector<std::string> rest = operands;
  std::vector<std::string> steps;
  std::string found;  // the answer's digits so far, most significant first
  int carry = 0;
  BigInt total;
  for (const auto& o : operands) total = total + *BigInt::parse(o);
  for (size_t col = 0; col < width; ++col) {
    std::string step = join(rest, "+") + ": ";
    int sum = carry;
    for (auto& r : rest) {
      step += std::string(1, r.back()) + "+";
      sum += r.back() - '0';
      r.pop_back();
    }
    const std::string sum_text = std::to_string(sum);
    step += std::to_string(carry) + "=" + (sum < 10 ? "0" : "") + sum_text +
            (zh(lang) ? " 进位 " : " carry ") + std::to_string(sum / 10) + " -> ";
    found = std::to_string(sum % 10) + found;
    step += found;
    carry = sum / 10;
    steps.push_back(step);
  }
  steps.push_back(answer_line(total.to_string(), lang));
  return join(steps, "; ");
}

std::string addition_scratchpad(const std::vector<std::string>& operands, Lang lang) {
  size_t width = 0;
  for (const auto& o : operands) width = std::max(width, o.size());
  std::vector<std::string> columns;
  int carry = 0;
  BigInt total;
  for (const auto& o : operands) total = total + *BigInt::parse(o);
  for (size_t col = 0; col < width; ++col) {
    std::vector<std::string> terms;
    int sum = carry;
    for (const auto& o : operands) {
      if (col >= o.size()) continue;
      const char d = o[o.size() - 1 - col];
      terms.emplace_back(1, d);
      sum += d - '0';
    }
    if (carry) terms.push_back(std::to_string(carry));
    std::string step = join(terms, "+") + "=" + std::to_string(sum);
    carry = sum / 10;
    if (carry) step += (zh(lang) ? " 进位 " : " carry ") + std::to_string(carry);
    columns.push_back(step);
  }
  columns.push_back(answer_line(total.to_string(), lang));
  return join(columns, "; ");
}

std::string multiplication_scratchpad(const std::string& a, const std::string& b, Lang lang) {
  std::vector<std::string> steps;
  std::vector<std::string> partials;
  const BigInt av = *BigInt::parse(a);
  for (size_t k = 0; k < b.size(); ++k) {
    const std::string factor = std::string(1, b[b.size() - 1 - k]) + std::string(k, '0');
    const std::string prod = (av * *BigInt::parse(factor)).to_string();
    steps.push_back(a + "*" + factor + "=" + prod);
    partials.push_back(prod);
  }
  if (partials.size() > 1)
    steps.push_back(addition_scratchpad(partials, lang));
  else
    steps.push_back(answer_line(partials[0], lang));
  return join(steps, "; ");
}

TaskMix default_mix() {
  auto arith = [](ArithOp op, int digits, int terms, Lang lang, double w) {
    TaskSpec s;
    s.kind = TaskKind::Arithmetic;
    s.lang = lang;
    s.arith = {op, digits, terms};
    return TaskMix::Entry{s, w};
  };
  TaskSpec countdown;
  countdown.kind = TaskKind::Countdown;
  TaskSpec boolean_en;
  boolean_en.kind = TaskKind::BoolEval;
  TaskSpec boolean_zh = boolean_en;
  boolean_zh.lang = Lang::Zh;
  return TaskMix{{arith(ArithOp::Add, 3, 3, Lang::En, 0.30),
                  arith(ArithOp::Add, 3, 3, Lang::Zh, 0.20),
                  arith(ArithOp::Mul, 2, 2, Lang::En, 0.10),
                  arith(ArithOp::Mul, 2, 2, Lang::Zh, 0.10),
                  {countdown, 0.15},
                  {boolean_en, 0.10},
                  {boolean_zh, 0.05}}};
}

TaskMix named_mix(std::string_view name) {
  auto add = [](Lang lang, double w) {
    TaskSpec s;
    s.kind = TaskKind::Arithmetic;
    s.lang = lang;
    s.arith = {ArithOp::Add, 3, 3, AdditionTrace::FixedWidth};
    return TaskMix::Entry{s, w};
  };
  if (name == "default") return default_mix();
  if (name == "add") return TaskMix{{add(Lang::En, 0.5), add(Lang::Zh, 0.5)}};
  if (name == "add3x2") {  // two 3-digit numbers
    TaskMix m{{add(Lang::En, 0.5), add(Lang::Zh, 0.5)}};
    for (auto& e : m.entries) e.spec.arith.terms = 2;
    return m;
  }
  if (name == "add2") {  // three 2-digit numbers
    TaskMix m{{add(Lang::En, 0.5), add(Lang::Zh, 0.5)}};
    for (auto& e : m.entries) e.spec.arith.digits = 2;
    return m;
  }
  if (name == "add-peel") {
    TaskMix m{{add(Lang::En, 0.5), add(Lang::Zh, 0.5)}};
    for (auto& e : m.entries) e.spec.arith.trace = AdditionTrace::Peeling;
    return m;
  }
  if (name == "add-varwidth") {
    TaskMix m{{add(Lang::En, 0.5), add(Lang::Zh, 0.5)}};
    for (auto& e : m.entries) e.spec.arith.trace = AdditionTrace::Columns;
    return m;
  }
  if (name == "add-en") return TaskMix{{add(Lang::En, 1.0)}};
  if (name == "add-zh") return TaskMix{{add(Lang::Zh, 1.0)}};
  TaskSpec s;
  if (name == "mul") {
    s.arith = {ArithOp::Mul, 2, 2};
  } else if (name == "countdown") {
    s.kind = TaskKind::Countdown;
  } else if (name == "bool") {
    s.kind = TaskKind::BoolEval;
  } else if (name == "sort") {
    s.kind = TaskKind::WordSort;
  } else {
    throw Error("unknown task mix \"" + std::string(name) +
                "\" (expected default, add, add2, add3x2, add-en, add-zh, add-peel, add-varwidth, mul, countdown, bool or sort)");
  }
  TaskSpec zh = s;
  zh.lang = Lang::Zh;
  return TaskMix{{{s, 0.5}, {zh, 0.5}}};
}

uint64_t problem_hash(const Problem& p) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char c : p.key) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  h ^= h >> 30;
  h *= 0xbf58476d1ce4e5b9ULL;
  h ^= h >> 27;
  h *= 0x94d049bb133111ebULL;
  return h ^ (h >> 31);
}

bool is_held_out(const Problem& p, double eval_fraction) {
  return static_cast<double>(problem_hash(p) >> 11) * 0x1.0p-53 < eval_fraction;
}

ProblemSampler::ProblemSampler(TaskMix mix, Split split, uint64_t seed, double eval_fraction)
    : mix_(std::move(mix)), split_(split), eval_fraction_(eval_fraction), rng_(seed) {
  SEEKR_REQUIRE(!mix_.entries.empty(), "task mix is empty");
  SEEKR_REQUIRE(eval_fraction > 0 && eval_fraction < 1, "eval fraction must be in (0, 1), got ",
                eval_fraction);
  for (const auto& e : mix_.entries) {
    SEEKR_REQUIRE(e.weight >= 0, "task mix weight must be >= 0, got ", e.weight);
    total_weight_ += e.weight;
  }
  SEEKR_REQUIRE(total_weight_ > 0, "task mix weights sum to zero");
}

Problem ProblemSampler::next() {
  const bool want_eval = split_ == Split::Eval;
  for (int attempt = 0; attempt < 1000000; ++attempt) {
    double u = rng_.uniform() * total_weight_;
    size_t i = 0;
    while (i + 1 < mix_.entries.size() && u >= mix_.entries[i].weight)
      u -= mix_.entries[i++].weight;
    Problem p = generate(mix_.entries[i].spec, rng_);
    if (is_held_out(p, eval_fraction_) == want_eval) return p;
  }
  throw Error("task mix yields no problems of the requested split");
}

std::vector<Problem> make_split(const TaskMix& mix, Split split, size_t n, uint64_t seed,
                                double eval_fraction) {
  ProblemSampler sampler(mix, split, seed, eval_fraction);
  std::vector<Problem> out;
  std::unordered_set<std::string> seen;
  // Thousands of duplicates in a row mean the held-out space is (nearly) exhausted.
  size_t duplicates_in_a_row = 0;
  while (out.size() < n) {
    Problem p = sampler.next();
    if (split == Split::Eval && !seen.insert(p.key).second) {
      SEEKR_REQUIRE(++duplicates_in_a_row < 2000, "task mix has fewer than ", n,
                    " distinct held-out problems (found ", out.size(), ")");
      continue;
    }
    duplicates_in_a_row = 0;
    out.push_back(std::move(p));
  }
  return out;
}

std::vector<Problem> load_problems_jsonl(const std::string& path) {
  std::ifstream in(path);
  SEEKR_REQUIRE(in, path, ": cannot open");
  std::vector<Problem> out;
  std::string line;
  for (size_t lineno = 1; std::getline(in, line); ++lineno) {
    if (collapse_spaces(line).empty()) continue;
    const std::string where = path + ":" + std::to_string(lineno);
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::parse_error& e) {
      throw Error(where + ": invalid JSON: " + e.what());
    }
    SEEKR_REQUIRE(j.is_object(), where, ": expected a JSON object");
    // Only "answer" may be written as a JSON integer.
    auto text_field = [&](const char* name, bool required) -> std::optional<std::string> {
      if (!j.contains(name)) {
        SEEKR_REQUIRE(!required, where, ": missing field \"", name, "\"");
        return std::nullopt;
      }
      const auto& v = j[name];
      if (v.is_number_integer() && std::string_view(name) == "answer") return v.dump();
      SEEKR_REQUIRE(v.is_string(), where, ": field \"", name, "\" must be a string");
      return v.get<std::string>();
    };
    Problem p;
    p.task = text_field("task", false).value_or("jsonl");
    p.prompt = *text_field("prompt", true);
    SEEKR_REQUIRE(!collapse_spaces(p.prompt).empty(), where, ": field \"prompt\" is empty");
    p.answer = *text_field("answer", true);
    SEEKR_REQUIRE(!collapse_spaces(p.answer).empty(), where, ": field \"answer\" is empty");
    const std::string verifier = text_field("verifier", false).value_or("number");
    if (verifier == "number") {
      p.verifier = Verifier::Number;
      SEEKR_REQUIRE(parse_number(p.answer), where, ": field \"answer\" is not a number: \"",
                    p.answer, "\"");
    } else if (verifier == "exact") {
      p.verifier = Verifier::Exact;
    } else if (verifier == "countdown") {
      p.verifier = Verifier::Countdown;
      SEEKR_REQUIRE(j.contains("numbers") && j["numbers"].is_array() && !j["numbers"].empty(),
                    where, ": field \"numbers\" must be a non-empty array for verifier countdown");
      for (const auto& v : j["numbers"]) {
        SEEKR_REQUIRE(v.is_number_integer() && v.get<int64_t>() >= 0, where,
                      ": field \"numbers\" must hold non-negative integers");
        p.numbers.push_back(v.get<int64_t>());
      }
      const auto target = BigInt::parse(collapse_spaces(p.answer));
      SEEKR_REQUIRE(target && *target < BigInt(INT64_MAX) && *target > BigInt(INT64_MIN), where,
                    ": field \"answer\" must be the integer target for verifier countdown");
    } else {
      throw Error(where + ": field \"verifier\" is \"" + verifier +
                  "\"; expected number, countdown or exact");
    }
    if (auto lang = text_field("lang", false)) {
      SEEKR_REQUIRE(*lang == "en" || *lang == "zh", where, ": field \"lang\" must be en or zh");
      p.lang = *lang == "zh" ? Lang::Zh : Lang::En;
    } else {
      p.lang = detect_language(p.prompt);
    }
    p.solution = text_field("solution", false).value_or("");
    p.key = text_field("key", false).value_or("text:" + collapse_spaces(fold_digits(p.prompt)));
    out.push_back(std::move(p));
  }
  return out;
}

std::string problem_to_json(const Problem& p) {
  nlohmann::json j = {{"task", p.task},
                      {"lang", lang_name(p.lang)},
                      {"prompt", p.prompt},
                      {"answer", p.answer},
                      {"verifier", verifier_name(p.verifier)},
                      {"key", p.key}};
  if (p.verifier == Verifier::Countdown) j["numbers"] = p.numbers;
  if (!p.solution.empty()) j["solution"] = p.solution;
  return j.dump();
}

}  // namespace seekr::rl
