// Tasks, answer extraction, rewards, templates and statistics of the R1 pipeline (src/rl).
#include <gtest/gtest.h>

#include <cctype>

#include <cstdio>
#include <fstream>
#include <map>
#include <set>

#include "core/check.h"
#include "rl/answer.h"
#include "rl/bigint.h"
#include "rl/countdown.h"
#include "rl/format.h"
#include "rl/prompt.h"
#include "rl/rewards.h"
#include "rl/stats.h"
#include "rl/tasks.h"
#include "rl/text.h"

using namespace seekr;
using namespace seekr::rl;

namespace {

Problem number_problem(const std::string& answer, Lang lang = Lang::En) {
  Problem p;
  p.task = "test";
  p.lang = lang;
  p.prompt = "q";
  p.answer = answer;
  p.verifier = Verifier::Number;
  p.key = "test:" + answer;
  return p;
}

std::string well_formed(const std::string& think, const std::string& answer) {
  return "<think>" + think + "</think> <answer>" + answer + "</answer>";
}

}  // namespace

// ---------------------------------------------------------------- BigInt

TEST(BigInt, ParsePrintAndArithmetic) {
  const auto a = BigInt::parse("123456789012345678901234567890");
  const auto b = BigInt::parse("-987654321098765432109876543210");
  ASSERT_TRUE(a && b);
  EXPECT_EQ(a->to_string(), "123456789012345678901234567890");
  EXPECT_EQ((*a + *b).to_string(), "-864197532086419753208641975320");
  EXPECT_EQ((*a - *b).to_string(), "1111111110111111111011111111100");
  EXPECT_EQ((*a * *b).to_string(), "-121932631137021795226185032733622923332237463801111263526900");
  EXPECT_EQ(BigInt::parse("-0")->to_string(), "0");
  EXPECT_EQ(BigInt::parse("000123")->to_string(), "123");
  EXPECT_EQ(BigInt(INT64_MIN).to_string(), "-9223372036854775808");
  EXPECT_FALSE(BigInt::parse(""));
  EXPECT_FALSE(BigInt::parse("-"));
  EXPECT_FALSE(BigInt::parse("12a"));
  EXPECT_LT(*BigInt::parse("-5"), BigInt(3));
  EXPECT_GT(*BigInt::parse("1000000000000"), *BigInt::parse("999999999999"));
  EXPECT_EQ(BigInt(1000000000) - BigInt(1), BigInt(999999999));
}

// ---------------------------------------------------------------- numbers

TEST(ParseNumber, AcceptedForms) {
  EXPECT_TRUE(numbers_equal("1234", "1,234"));
  EXPECT_TRUE(numbers_equal("1234567", "1,234,567"));
  EXPECT_TRUE(numbers_equal("+42", "42"));
  EXPECT_TRUE(numbers_equal("  42 \n", "42"));
  EXPECT_TRUE(numbers_equal("1.50", "3/2"));
  EXPECT_TRUE(numbers_equal("0.5", ".5"));
  EXPECT_TRUE(numbers_equal("5.", "5"));
  EXPECT_TRUE(numbers_equal("-6/4", "-1.5"));
  EXPECT_TRUE(numbers_equal("\\frac{3}{4}", "0.75"));
  EXPECT_TRUE(numbers_equal("-\\dfrac{1}{2}", "-0.5"));
  EXPECT_TRUE(numbers_equal("\\boxed{12}", "12"));
  EXPECT_TRUE(numbers_equal("-0", "0"));
  // Unicode digits: full-width, Arabic-Indic, Extended Arabic-Indic; U+2212 minus.
  EXPECT_TRUE(numbers_equal("１２３", "123"));
  EXPECT_TRUE(numbers_equal("١٢٣", "123"));
  EXPECT_TRUE(numbers_equal("۱۲۳", "123"));
  EXPECT_TRUE(
      numbers_equal("\xE2\x88\x92"
                    "7",
                    "-7"));
  EXPECT_TRUE(numbers_equal("１，２３４", "1234"));
}

TEST(ParseNumber, RejectedForms) {
  for (const char* bad : {"",          " ",         "abc",     "1 2",   "1,2", "12,34",
                          "1234,567",  "1.2.3",     "1/0",     "1e3",   "--1", "+",
                          "1/2/3",     "3/-4",      "0x10",    "1 234", "12a", "\\frac{1}{0}",
                          "\\frac{1}", "\\boxed{1", "1, 2, 3", "½",     "."}) {
    EXPECT_FALSE(parse_number(bad)) << "'" << bad << "'";
  }
  EXPECT_FALSE(numbers_equal("2", "3"));
  EXPECT_FALSE(numbers_equal("1/3", "0.333333"));
}

TEST(ParseNumber, EnormousNumbersCompareExactly) {
  const std::string big(5000, '9');
  std::string big_plus_one = "1" + std::string(5000, '0');
  EXPECT_TRUE(numbers_equal(big, big));
  EXPECT_FALSE(numbers_equal(big, big_plus_one));
  // Differs only in the last digit of 30: a double or int64 comparison would call these equal.
  EXPECT_FALSE(numbers_equal("123456789012345678901234567891", "123456789012345678901234567890"));
  EXPECT_TRUE(numbers_equal(big + ".000", big));
  EXPECT_TRUE(numbers_equal(big + "/" + big, "1"));
}

TEST(Answer, FoldDigitsLeavesOtherTextAlone) {
  EXPECT_EQ(fold_digits("答案是１２３。"), "答案是123。");
  EXPECT_EQ(fold_digits("abc\xff"), "abc\xff");  // invalid UTF-8 passes through
}

// ---------------------------------------------------------------- extraction

TEST(Extract, StrictTagRules) {
  EXPECT_EQ(extract_strict("<think>x</think><answer> 42 </answer>"), "42");
  EXPECT_EQ(extract_strict("<answer>42</answer>"), "42");  // think is format's business
  // Several answer tags: no answer at all, whichever is right.
  EXPECT_FALSE(extract_strict("<answer>1</answer><answer>2</answer>"));
  EXPECT_FALSE(extract_strict("<think>t</think><answer>1</answer> <answer>1</answer>"));
  EXPECT_FALSE(extract_strict("<answer>1<answer>2</answer>"));
  EXPECT_FALSE(extract_strict("<answer>1</answer></answer>"));
  // Answer inside the reasoning, or reasoning after the answer.
  EXPECT_FALSE(extract_strict("<think><answer>5</answer></think>"));
  EXPECT_FALSE(extract_strict("<think>a</think><answer>5</answer><think>b</think>"));
  EXPECT_FALSE(extract_strict("<think>a<answer>5</answer>"));
  // Truncated (unclosed) and empty.
  EXPECT_FALSE(extract_strict("<think>a</think><answer>5"));
  EXPECT_FALSE(extract_strict("<answer>   </answer>"));
  EXPECT_FALSE(extract_strict(""));
  EXPECT_FALSE(extract_strict("</answer>5<answer>"));
  // Answer in reasoning only: nothing.
  EXPECT_FALSE(extract_strict("<think>the answer is 42</think>"));
}

TEST(Extract, Boxed) {
  EXPECT_EQ(extract_boxed("so \\boxed{\\frac{1}{2}} done"), "\\frac{1}{2}");
  EXPECT_EQ(extract_boxed("\\boxed{{a}{b}}"), "{a}{b}");
  EXPECT_FALSE(extract_boxed("\\boxed{1}\\boxed{2}"));
  EXPECT_FALSE(extract_boxed("\\boxed{1"));
  EXPECT_FALSE(extract_boxed("\\boxed{}"));
  EXPECT_FALSE(extract_boxed("no box"));
  // No answer tag: the single box after the reasoning.
  EXPECT_EQ(extract_strict("<think>\\boxed{3}</think> \\boxed{4}"), "4");
  EXPECT_EQ(extract_strict("Reasoning. \\boxed{7}"), "7");
  EXPECT_FALSE(extract_strict("<think>\\boxed{3}</think>"));
  EXPECT_FALSE(extract_strict("<think>unclosed \\boxed{3}"));
  // Inside an answer tag: a box is unwrapped, two boxes are no answer.
  EXPECT_EQ(extract_strict("<answer>\\boxed{9}</answer>"), "9");
  EXPECT_EQ(extract_strict("<answer>it is \\boxed{9}</answer>"), "9");
  EXPECT_FALSE(extract_strict("<answer>\\boxed{8} or \\boxed{9}</answer>"));
  // A box holding two boxes is one top-level box whose content is not a number.
  const auto nested = extract_strict("<answer>\\boxed{\\boxed{8}\\boxed{9}}</answer>");
  ASSERT_TRUE(nested);
  EXPECT_FALSE(parse_number(*nested));
  EXPECT_TRUE(numbers_equal(*extract_strict("<answer>\\boxed{\\boxed{9}}</answer>"), "9"));
}

TEST(Extract, LastNumber) {
  EXPECT_EQ(last_number("7+8+0=15; 4+2+1=7; answer 745"), "745");
  EXPECT_EQ(last_number("5-3"), "3");
  EXPECT_EQ(last_number("x = -3"), "-3");
  EXPECT_EQ(last_number("total 1,234 apples"), "1,234");
  EXPECT_EQ(last_number("list 1,2,3"), "3");
  EXPECT_EQ(last_number("ids 1234,567"), "567");  // four digits cannot lead a group
  EXPECT_EQ(last_number("ratio 3/4."), "3/4");
  EXPECT_EQ(last_number("pi is 3.14"), "3.14");
  EXPECT_EQ(last_number("答案是１２３"), "123");
  EXPECT_FALSE(last_number("no digits here"));
  EXPECT_FALSE(last_number(""));
  EXPECT_EQ(extract_lenient("<think>12</think><answer>34</answer> 56"), "34");
  EXPECT_EQ(extract_lenient("<answer>1</answer><answer>2</answer>"), "2");
  EXPECT_EQ(extract_lenient("the sum is 1368"), "1368");
}

TEST(Extract, CustomShortTags) {
  const Tags t{"<t>", "</t>", "<a>", "</a>"};
  EXPECT_EQ(extract_strict("<t>1+2=3</t><a>3</a>", t), "3");
  EXPECT_FALSE(extract_strict("<t>1+2=3</t><a>3</a><a>4</a>", t));
  EXPECT_EQ(format_reward("<t>1+2=3</t><a>3</a>", t), 1.0);
}

// ---------------------------------------------------------------- countdown

TEST(Countdown, VerifierAcceptsExactUse) {
  const std::vector<int64_t> nums{3, 5, 7, 2};
  EXPECT_TRUE(check_countdown("(7-5)*3*2+12-12", nums, 12).ok == false);  // 12 not given
  EXPECT_TRUE(check_countdown("(7+5)*2/3", nums, 8).ok);
  EXPECT_TRUE(check_countdown(" ( 7 + 5 ) × 2 ÷ 3 ", nums, 8).ok);
  EXPECT_TRUE(check_countdown("７*5-3*2", nums, 29).ok);
  EXPECT_TRUE(check_countdown("7*5\xE2\x88\x92"
                              "3*2",
                              nums, 29)
                  .ok);
}

TEST(Countdown, VerifierRejectsCheats) {
  const std::vector<int64_t> nums{3, 5, 7, 2};
  auto err = [&](const char* e, int64_t target) { return check_countdown(e, nums, target); };
  EXPECT_FALSE(err("7*5-3*2", 30).ok);  // wrong value
  EXPECT_NE(err("7*5-3*2", 30).error.find("not the target"), std::string::npos);
  EXPECT_FALSE(err("7*5*5-3*2", 169).ok);   // 5 used twice
  EXPECT_FALSE(err("7*5-3", 32).ok);        // 2 unused
  EXPECT_FALSE(err("7*5-3*2+1-1", 29).ok);  // 1 not given
  EXPECT_FALSE(err("75-3-2", 70).ok);       // digits glued into 75
  EXPECT_NE(err("(7+2)/5*3+0", 0).error, "");
  const auto inexact = err("7/2*(5+3)", 28);  // 3.5*8 = 28 exactly, but 7/2 is not exact
  EXPECT_FALSE(inexact.ok);
  EXPECT_EQ(inexact.error, "inexact division");
  EXPECT_EQ(err("7/(5-5)*3*2", 0).error, "division by zero");
  EXPECT_FALSE(err("-3+5+7+2", 11).ok);  // unary minus
  EXPECT_FALSE(err("3+5+7+2=17", 17).ok);
  EXPECT_FALSE(err("3^2+5+7", 21).ok);
  EXPECT_FALSE(err("(3+5+7+2", 17).ok);
  EXPECT_FALSE(err("", 0).ok);
  std::string deep(1000, '(');
  EXPECT_FALSE(err((deep + "3+5+7+2" + std::string(1000, ')')).c_str(), 17).ok);
  EXPECT_FALSE(check_countdown("99999999999*99999999999", {99999999999, 99999999999}, 1).ok);
}

TEST(Countdown, GeneratorIsSolvableAndDeterministic) {
  Rng a(7), b(7);
  CountdownSpec spec;
  for (int i = 0; i < 200; ++i) {
    const CountdownPuzzle p = generate_countdown(spec, a);
    const CountdownPuzzle q = generate_countdown(spec, b);
    EXPECT_EQ(p.numbers, q.numbers);
    EXPECT_EQ(p.target, q.target);
    ASSERT_EQ(p.numbers.size(), 4u);
    EXPECT_GE(p.target, 1);
    EXPECT_LE(p.target, spec.max_target);
    for (int64_t n : p.numbers) EXPECT_TRUE(n >= 1 && n <= spec.max_number);
    EXPECT_TRUE(check_countdown(p.solution, p.numbers, p.target).ok) << p.solution;
    if (i < 40) {
      const auto s = solve_countdown(p.numbers, p.target);
      ASSERT_TRUE(s);
      EXPECT_TRUE(check_countdown(*s, p.numbers, p.target).ok) << *s;
    }
  }
  EXPECT_FALSE(solve_countdown({2, 2}, 5));
  EXPECT_EQ(solve_countdown({4}, 4), "4");
}

// ---------------------------------------------------------------- tasks

TEST(Tasks, ArithmeticProblems) {
  Rng rng(1);
  TaskSpec s;
  s.arith = {ArithOp::Add, 3, 3};
  for (int i = 0; i < 50; ++i) {
    const Problem p = generate(s, rng);
    ASSERT_EQ(p.task, "add");
    // "What is a+b+c?"
    int a, b, c;
    ASSERT_EQ(std::sscanf(p.prompt.c_str(), "What is %d+%d+%d?", &a, &b, &c), 3) << p.prompt;
    EXPECT_TRUE(a >= 100 && a <= 999 && b >= 100 && c <= 999);
    EXPECT_EQ(p.answer, std::to_string(a + b + c));
    EXPECT_TRUE(verify(p, std::to_string(a + b + c)));
    EXPECT_FALSE(verify(p, std::to_string(a + b + c + 1)));
    // The trace ends with the answer and its columns add up.
    EXPECT_TRUE(numbers_equal(*last_number(p.solution), p.answer)) << p.solution;
  }
  s.arith = {ArithOp::Mul, 12, 2};  // overflows int64: exact via BigInt
  const Problem big = generate(s, rng);
  ASSERT_EQ(big.answer.size() >= 23u, true) << big.answer;
  EXPECT_TRUE(numbers_equal(*last_number(big.solution), big.answer));
  s.arith = {ArithOp::Mixed, 2, 4};
  const Problem mixed = generate(s, rng);
  EXPECT_EQ(mixed.task, "mixed");
  EXPECT_TRUE(numbers_equal(*last_number(mixed.solution), mixed.answer));
}

TEST(Tasks, MixedPrecedence) {
  // Seeds are opaque, so check the evaluator on a problem we can recompute from its prompt.
  Rng rng(3);
  TaskSpec s;
  s.arith = {ArithOp::Mixed, 1, 4};
  int checked = 0;
  for (int i = 0; i < 100; ++i) {
    const Problem p = generate(s, rng);
    int v[4];
    char o[3];
    ASSERT_EQ(std::sscanf(p.prompt.c_str(), "What is %d%c%d%c%d%c%d?", &v[0], &o[0], &v[1], &o[1],
                          &v[2], &o[2], &v[3]),
              7);
    // Reference: collapse * first, then left to right.
    std::vector<long> vals(v, v + 4);
    std::vector<char> ops(o, o + 3);
    for (size_t k = 0; k < ops.size();) {
      if (ops[k] == '*') {
        vals[k] *= vals[k + 1];
        vals.erase(vals.begin() + k + 1);
        ops.erase(ops.begin() + k);
      } else {
        ++k;
      }
    }
    long acc = vals[0];
    for (size_t k = 0; k < ops.size(); ++k)
      acc = ops[k] == '+' ? acc + vals[k + 1] : acc - vals[k + 1];
    EXPECT_EQ(p.answer, std::to_string(acc)) << p.prompt;
    ++checked;
  }
  EXPECT_EQ(checked, 100);
}

const char* zh_or_en(Lang lang) { return lang == Lang::Zh ? " 进位 " : " carry "; }

TEST(Tasks, ScratchpadFormat) {
  EXPECT_EQ(addition_scratchpad({"123", "456", "789"}, Lang::En),
            "3+6+9=18 carry 1; 2+5+8+1=16 carry 1; 1+4+7+1=13 carry 1; answer 1368");
  EXPECT_EQ(addition_scratchpad({"123", "456", "789"}, Lang::Zh),
            "3+6+9=18 进位 1; 2+5+8+1=16 进位 1; 1+4+7+1=13 进位 1; 答案 1368");
  EXPECT_EQ(addition_scratchpad({"5", "40"}, Lang::En), "5+0=5; 4=4; answer 45");
  // Fixed width: every column has all its digits, the carry in, a two-digit sum, the carry out.
  EXPECT_EQ(fixed_width_addition_scratchpad({"721", "323", "971"}, Lang::En),
            "1+3+1+0=05 carry=0 ->5;2+2+7+0=11 carry=1 ->15;7+3+9+1=20 carry=2 ->015;"
            "answer=2015");
  EXPECT_EQ(fixed_width_addition_scratchpad({"721", "323", "971"}, Lang::Zh),
            "1+3+1+0=05 进位=0 ->5;2+2+7+0=11 进位=1 ->15;7+3+9+1=20 进位=2 ->015;答案=2015");
  EXPECT_EQ(fixed_width_addition_scratchpad({"5", "40"}, Lang::En),
            "5+0+0=05 carry=0 ->5;0+4+0=04 carry=0 ->45;answer=45");
  EXPECT_EQ(peeling_addition_scratchpad({"721", "323", "971"}, Lang::En),
            "721+323+971: 1+3+1+0=05 carry 0 -> 5; 72+32+97: 2+2+7+0=11 carry 1 -> 15; "
            "7+3+9: 7+3+9+1=20 carry 2 -> 015; answer 2015");
  EXPECT_EQ(peeling_addition_scratchpad({"12", "34"}, Lang::Zh),
            "12+34: 2+4+0=06 进位 0 -> 6; 1+3: 1+3+0=04 进位 0 -> 46; 答案 46");
  // The "add" mix uses the fixed-width trace, and its traces verify.
  Rng rng(3);
  for (int i = 0; i < 50; ++i) {
    TaskSpec spec = named_mix("add").entries[i % 2].spec;
    EXPECT_EQ(spec.arith.trace, AdditionTrace::FixedWidth);
    const Problem p = generate(spec, rng);
    EXPECT_NE(p.solution.find(p.lang == Lang::Zh ? "进位=" : "carry="), std::string::npos)
        << p.solution;
    EXPECT_TRUE(numbers_equal(*last_number(p.solution), p.answer)) << p.solution;
    for (size_t i = 0; i + 1 < p.solution.size(); ++i)  // no digit after a space
      EXPECT_FALSE(p.solution[i] == ' ' && std::isdigit(static_cast<unsigned char>(p.solution[i + 1])))
          << p.solution;
  }
  EXPECT_EQ(multiplication_scratchpad("12", "34", Lang::En),
            "12*4=48; 12*30=360; 8+0=8; 4+6=10 carry 1; 3+1=4; answer 408");
  // The Chinese trace is consistent with a Chinese prompt, the English one is not.
  const std::string zh = addition_scratchpad({"123", "456"}, Lang::Zh);
  EXPECT_DOUBLE_EQ(language_share(zh, Lang::Zh), 1.0);
  EXPECT_DOUBLE_EQ(language_share(addition_scratchpad({"123", "456"}, Lang::En), Lang::Zh), 0.0);
}

TEST(Tasks, ChinesePromptsAndLogicTasks) {
  Rng rng(5);
  TaskSpec s;
  s.lang = Lang::Zh;
  const Problem zh = generate(s, rng);
  EXPECT_EQ(zh.prompt.rfind("计算 ", 0), 0u) << zh.prompt;
  EXPECT_EQ(detect_language(zh.prompt), Lang::Zh);
  s.lang = Lang::En;
  Rng rng2(5);
  const Problem en = generate(s, rng2);
  EXPECT_EQ(detect_language(en.prompt), Lang::En);
  EXPECT_EQ(en.key, zh.key);  // same problem, two languages, one key
  EXPECT_EQ(en.answer, zh.answer);

  s.kind = TaskKind::BoolEval;
  s.boolean.ops = 5;
  for (int i = 0; i < 30; ++i) {
    const Problem b = generate(s, rng);
    EXPECT_TRUE(b.answer == "1" || b.answer == "0");
    EXPECT_TRUE(verify(b, b.answer));
    EXPECT_FALSE(verify(b, b.answer == "1" ? "0" : "1"));
    // The difficulty knob is the operator count (values are checked in BoolAnswersMatch...).
    const std::string expr = b.key.substr(5);
    std::string ops_only;
    for (char c : expr)
      if (c == '&' || c == '|') ops_only += c;
    EXPECT_EQ(ops_only.size(), 5u) << expr;
    EXPECT_EQ(b.solution.substr(b.solution.size() - 1), b.answer);
  }

  s.kind = TaskKind::WordSort;
  s.sort.words = 6;
  const Problem w = generate(s, rng);
  EXPECT_TRUE(verify(w, w.answer));
  EXPECT_TRUE(verify(w, "  " + w.answer + "\n"));
  std::vector<std::string> words;
  for (size_t p = 0, q; p < w.answer.size(); p = q + 1) {
    q = w.answer.find(' ', p);
    if (q == std::string::npos) q = w.answer.size();
    words.push_back(w.answer.substr(p, q - p));
  }
  ASSERT_EQ(words.size(), 6u);
  EXPECT_TRUE(std::is_sorted(words.begin(), words.end()));
  std::swap(words[0], words[1]);
  std::string unsorted;
  for (const auto& x : words) unsorted += x + " ";
  EXPECT_FALSE(verify(w, unsorted));
}

// A small boolean evaluator over the prompt's text, independent of the generator.
namespace {
bool eval_bool(const std::string& s, size_t& i);
bool eval_atom(const std::string& s, size_t& i) {
  if (s[i] == '!') {
    ++i;
    return !eval_atom(s, i);
  }
  if (s[i] == '(') {
    ++i;
    const bool v = eval_bool(s, i);
    ++i;  // ')'
    return v;
  }
  return s[i++] == '1';
}
bool eval_bool(const std::string& s, size_t& i) {
  bool v = eval_atom(s, i);
  while (i < s.size() && (s[i] == '&' || s[i] == '|')) {
    const char op = s[i++];
    const bool r = eval_atom(s, i);
    v = op == '&' ? (v && r) : (v || r);
  }
  return v;
}
}  // namespace

TEST(Tasks, BoolAnswersMatchIndependentEvaluator) {
  Rng rng(11);
  TaskSpec s;
  s.kind = TaskKind::BoolEval;
  s.boolean.ops = 6;
  for (int i = 0; i < 100; ++i) {
    const Problem b = generate(s, rng);
    const std::string expr = b.key.substr(5);
    size_t pos = 0;
    EXPECT_EQ(eval_bool(expr, pos) ? "1" : "0", b.answer) << expr;
    EXPECT_EQ(pos, expr.size());
  }
}

TEST(Tasks, DeterministicFromSeed) {
  const auto a = make_split(default_mix(), Split::Train, 100, 42);
  const auto b = make_split(default_mix(), Split::Train, 100, 42);
  const auto c = make_split(default_mix(), Split::Train, 100, 43);
  ASSERT_EQ(a.size(), 100u);
  int differ = 0;
  std::set<std::string> tasks;
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].prompt, b[i].prompt);
    EXPECT_EQ(a[i].answer, b[i].answer);
    differ += a[i].prompt != c[i].prompt;
    tasks.insert(a[i].task + lang_name(a[i].lang));
  }
  EXPECT_GT(differ, 90);
  EXPECT_GE(tasks.size(), 5u);  // the default mix really mixes
}

TEST(Tasks, TrainAndEvalAreDisjoint) {
  const TaskMix mix = default_mix();
  const auto eval = make_split(mix, Split::Eval, 500, 1);
  const auto train = make_split(mix, Split::Train, 5000, 2);
  std::set<uint64_t> eval_hashes;
  std::set<std::string> eval_keys;
  for (const auto& p : eval) {
    EXPECT_TRUE(is_held_out(p, 0.1));
    eval_hashes.insert(problem_hash(p));
    eval_keys.insert(p.key);
  }
  EXPECT_EQ(eval_keys.size(), 500u);  // distinct
  for (const auto& p : train) {
    EXPECT_FALSE(is_held_out(p, 0.1));
    EXPECT_EQ(eval_hashes.count(problem_hash(p)), 0u) << p.prompt;
    EXPECT_EQ(eval_keys.count(p.key), 0u);
  }
  // A raw generator does produce held-out problems, so the filter is doing the work.
  Rng rng(2);
  int held = 0;
  for (int i = 0; i < 2000; ++i) held += is_held_out(generate(mix.entries[0].spec, rng), 0.1);
  EXPECT_GT(held, 100);
  EXPECT_LT(held, 320);
  // A problem space smaller than the request is an error, not a hang.
  TaskMix tiny;
  TaskSpec s;
  s.arith = {ArithOp::Add, 1, 2};
  tiny.entries.push_back({s, 1});
  EXPECT_THROW(make_split(tiny, Split::Eval, 500, 1), Error);
  const auto few = make_split(tiny, Split::Eval, 2, 1);  // but what exists can be drawn
  EXPECT_EQ(few.size(), 2u);
  EXPECT_NE(few[0].key, few[1].key);
}

// ---------------------------------------------------------------- JSONL

namespace {
std::string write_temp(const std::string& name, const std::string& text) {
  const std::string path = ::testing::TempDir() + name;
  std::ofstream(path) << text;
  return path;
}
void expect_error(const std::string& path, const std::string& fragment) {
  try {
    load_problems_jsonl(path);
    ADD_FAILURE() << "no error for " << path;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
  }
}
}  // namespace

TEST(Jsonl, LoadsAndRoundTrips) {
  const std::string path = write_temp(
      "rl_ok.jsonl",
      "{\"prompt\": \"What is 2+2?\", \"answer\": 4}\n"
      "\n"
      "{\"prompt\": \"计算 1+1\", \"answer\": \"2\", \"verifier\": \"number\"}\n"
      "{\"prompt\": \"Make 10\", \"answer\": \"10\", \"verifier\": \"countdown\", \"numbers\": "
      "[2, 5]}\n"
      "{\"prompt\": \"Sort b a\", \"answer\": \"a b\", \"verifier\": \"exact\", \"lang\": "
      "\"en\"}\n");
  const auto ps = load_problems_jsonl(path);
  ASSERT_EQ(ps.size(), 4u);
  EXPECT_EQ(ps[0].answer, "4");
  EXPECT_EQ(ps[0].lang, Lang::En);
  EXPECT_EQ(ps[1].lang, Lang::Zh);
  EXPECT_TRUE(verify(ps[2], "2*5"));
  EXPECT_FALSE(verify(ps[2], "5+5"));
  EXPECT_TRUE(verify(ps[3], "a  b"));

  Rng rng(9);
  TaskSpec cd;
  cd.kind = TaskKind::Countdown;
  cd.lang = Lang::Zh;
  const Problem orig = generate(cd, rng);
  const auto back = load_problems_jsonl(write_temp("rl_rt.jsonl", problem_to_json(orig) + "\n"));
  ASSERT_EQ(back.size(), 1u);
  EXPECT_EQ(back[0].prompt, orig.prompt);
  EXPECT_EQ(back[0].numbers, orig.numbers);
  EXPECT_EQ(back[0].key, orig.key);
  EXPECT_EQ(back[0].lang, Lang::Zh);
  EXPECT_EQ(back[0].verifier, Verifier::Countdown);
  EXPECT_EQ(problem_hash(back[0]), problem_hash(orig));
}

TEST(Jsonl, ErrorsNameFileLineAndField) {
  const std::string ok = "{\"prompt\": \"p\", \"answer\": \"1\"}\n";
  expect_error(write_temp("e1.jsonl", ok + "{\"answer\": \"1\"}\n"),
               "e1.jsonl:2: missing field \"prompt\"");
  expect_error(write_temp("e2.jsonl", ok + ok + "{\"prompt\": \"p\"}\n"),
               "e2.jsonl:3: missing field \"answer\"");
  expect_error(write_temp("e3.jsonl", "{\"prompt\": 5, \"answer\": \"1\"}\n"),
               ":1: field \"prompt\" must be a string");
  expect_error(write_temp("e4.jsonl", "{\"prompt\": \"p\", \"answer\": \"x\"}\n"),
               ":1: field \"answer\" is not a number");
  expect_error(
      write_temp("e5.jsonl", "{\"prompt\": \"p\", \"answer\": \"1\", \"verifier\": \"regex\"}\n"),
      ":1: field \"verifier\" is \"regex\"");
  expect_error(write_temp("e6.jsonl",
                          "{\"prompt\": \"p\", \"answer\": \"1\", \"verifier\": \"countdown\"}\n"),
               ":1: field \"numbers\"");
  expect_error(write_temp("e7.jsonl", "{\"prompt\": \"p\", \"answer\": \"1\",\n"),
               "e7.jsonl:1: invalid JSON");
  expect_error(write_temp("e8.jsonl", "[1, 2]\n"), ":1: expected a JSON object");
  expect_error(write_temp("e9.jsonl", "{\"prompt\": \"p\", \"answer\": \"1\", \"lang\": \"fr\"}\n"),
               ":1: field \"lang\"");
  expect_error(::testing::TempDir() + "does_not_exist.jsonl", "cannot open");
}

// ---------------------------------------------------------------- rewards

TEST(Rewards, Accuracy) {
  const Problem p = number_problem("1368");
  EXPECT_EQ(accuracy_reward(p, well_formed("3+6+9=18", "1368")), 1.0);
  EXPECT_EQ(accuracy_reward(p, well_formed("", "1,368")), 1.0);
  EXPECT_EQ(accuracy_reward(p, well_formed("", "１３６８")), 1.0);
  EXPECT_EQ(accuracy_reward(p, well_formed("", "1367")), 0.0);
  EXPECT_EQ(accuracy_reward(p, "<answer>1368</answer>"), 1.0);
}

TEST(Rewards, AccuracyIsNotHackable) {
  const Problem p = number_problem("1368");
  const char* attacks[] = {
      "<answer>1368</answer><answer>1367</answer>",  // hedging with two tags
      "<answer>1367</answer><answer>1368</answer>",
      "<think>a</think><answer>1368</answer><answer>1368</answer>",
      "<answer>1368 1367 1369</answer>",  // listing candidates
      "<answer>1367, 1368, 1369</answer>",
      "<answer>1368 or 1367</answer>",
      "<answer>\\boxed{1367}\\boxed{1368}</answer>",
      "\\boxed{1367} \\boxed{1368}",
      "<think>the answer is 1368</think>",     // answer in reasoning only
      "<think><answer>1368</answer></think>",  // answer tag inside think
      "<think>x</think><answer>1368",          // truncated
      "",                                      // empty
      "<answer></answer>",
      "<answer>1368/0</answer>",
      "<answer>13680/10.0</answer>",
      "<answer>1368e0</answer>",
      "<answer>\\boxed{1368</answer>",
  };
  for (const char* a : attacks) EXPECT_EQ(accuracy_reward(p, a), 0.0) << a;
  // Enormous numbers that share a prefix with the answer are not equal to it.
  EXPECT_EQ(accuracy_reward(p, "<answer>1368" + std::string(10000, '0') + "</answer>"), 0.0);
  const Problem big = number_problem(std::string(3000, '7'));
  EXPECT_EQ(accuracy_reward(big, "<answer>" + std::string(3000, '7') + "</answer>"), 1.0);
  EXPECT_EQ(accuracy_reward(big, "<answer>" + std::string(2999, '7') + "8</answer>"), 0.0);
}

TEST(Rewards, CountdownAccuracyIsNotHackable) {
  Problem p;
  p.verifier = Verifier::Countdown;
  p.numbers = {3, 5, 7, 2};
  p.answer = "8";
  EXPECT_EQ(accuracy_reward(p, well_formed("", "(7+5)*2/3")), 1.0);
  EXPECT_EQ(accuracy_reward(p, well_formed("", "8")), 0.0);              // just the target
  EXPECT_EQ(accuracy_reward(p, well_formed("", "5+3")), 0.0);            // unused numbers
  EXPECT_EQ(accuracy_reward(p, well_formed("", "(7+5)*2/3+3-3")), 0.0);  // 3 twice
  EXPECT_EQ(accuracy_reward(p, well_formed("", "(7+5)*4/6")), 0.0);      // numbers not given
  EXPECT_EQ(accuracy_reward(p, well_formed("", "7/2+5-3+2")), 0.0);      // inexact division
}

TEST(Rewards, FormatRule) {
  EXPECT_EQ(format_reward("<think>a</think><answer>1</answer>"), 1.0);
  EXPECT_EQ(format_reward(" \n<think>\na\n</think>\n<answer>\n1\n</answer>\n"), 1.0);
  EXPECT_EQ(format_reward("<think></think><answer>1</answer>"), 1.0);  // empty reasoning allowed
  const char* bad[] = {
      "<answer>1</answer>",
      "<think>a</think>",
      "<answer>1</answer><think>a</think>",
      "hello <think>a</think><answer>1</answer>",
      "<think>a</think> so <answer>1</answer>",
      "<think>a</think><answer>1</answer> more",
      "<think>a</think><answer> </answer>",
      "<think>a</think><answer>1</answer><answer>2</answer>",
      "<think>a<think>b</think><answer>1</answer>",
      "<think>a</think></think><answer>1</answer>",
      "<think>a</think><answer>1",
      "<think><answer>1</answer></think>",
      "",
  };
  for (const char* b : bad) EXPECT_EQ(format_reward(b), 0.0) << b;
}

TEST(Rewards, LanguageConsistency) {
  // 5 English words (add, the, units, then, carry), 2 Chinese characters.
  const std::string mixed = "<think>add the units 进位 then carry</think><answer>5</answer>";
  EXPECT_DOUBLE_EQ(language_reward(mixed, Lang::En), 5.0 / 7.0);
  EXPECT_DOUBLE_EQ(language_reward(mixed, Lang::Zh), 2.0 / 7.0);
  EXPECT_TRUE(is_language_mixed(mixed, Lang::En));
  // Tags and the answer do not count; numbers and symbols are not words.
  EXPECT_DOUBLE_EQ(language_reward("<think>3+6+9=18 进位 1</think><answer>abc</answer>", Lang::Zh),
                   1.0);
  EXPECT_DOUBLE_EQ(language_reward("<think>7+8=15;</think><answer>15</answer>", Lang::Zh), 1.0);
  EXPECT_FALSE(is_language_mixed("<think>7+8=15</think>", Lang::En));
  // Without think tags the whole output is the reasoning.
  EXPECT_DOUBLE_EQ(language_reward("carry 一", Lang::En), 0.5);
  // Truncated reasoning counts up to the end.
  EXPECT_DOUBLE_EQ(language_reward("<think>一 二 three", Lang::Zh), 2.0 / 3.0);
  // Other scripts count against both languages; accented Latin is Latin.
  EXPECT_DOUBLE_EQ(language_share("café привет", Lang::En), 0.5);
  const WordCounts wc = count_words("don't 中文 ok αβ");
  EXPECT_EQ(wc.en, 3u);
  EXPECT_EQ(wc.zh, 2u);
  EXPECT_EQ(wc.other, 1u);
}

TEST(Rewards, OverlongPenalty) {
  // L_max 20, L_cache 4: free up to 16, linear to -1 at 20, -1 beyond.
  EXPECT_DOUBLE_EQ(overlong_penalty(0, 20, 4), 0.0);
  EXPECT_DOUBLE_EQ(overlong_penalty(16, 20, 4), 0.0);
  EXPECT_DOUBLE_EQ(overlong_penalty(17, 20, 4), -0.25);
  EXPECT_DOUBLE_EQ(overlong_penalty(18, 20, 4), -0.5);
  EXPECT_DOUBLE_EQ(overlong_penalty(20, 20, 4), -1.0);
  EXPECT_DOUBLE_EQ(overlong_penalty(21, 20, 4), -1.0);
  EXPECT_DOUBLE_EQ(overlong_penalty(20480, 20480, 4096), -1.0);
  EXPECT_DOUBLE_EQ(overlong_penalty(16384 + 1024, 20480, 4096), -0.25);
  EXPECT_DOUBLE_EQ(overlong_penalty(10, 10, 0), 0.0);
  EXPECT_DOUBLE_EQ(overlong_penalty(11, 10, 0), -1.0);
}

TEST(Rewards, CombinedWithWeights) {
  const Problem p = number_problem("15", Lang::Zh);
  const std::string out = "<think>7+8=15 进位 1 carry</think><answer>15</answer>";
  RewardWeights w;
  w.accuracy = 1;
  w.format = 0.5;
  w.language = 0.25;
  w.overlong = 2;
  w.max_len = 20;
  w.cache_len = 4;
  const RewardParts r = combined_reward(p, out, 18, w);
  EXPECT_EQ(r.accuracy, 1.0);
  EXPECT_EQ(r.format, 1.0);
  EXPECT_DOUBLE_EQ(r.language, 2.0 / 3.0);
  EXPECT_DOUBLE_EQ(r.overlong, -0.5);
  EXPECT_DOUBLE_EQ(r.total, 1.0 + 0.5 + 0.25 * 2.0 / 3.0 - 1.0);
  // Defaults: accuracy only; parts still reported.
  const RewardParts d = combined_reward(p, "<answer>14</answer>", 1000, RewardWeights{});
  EXPECT_EQ(d.total, 0.0);
  EXPECT_EQ(d.format, 0.0);
  EXPECT_EQ(d.overlong, 0.0);
}

TEST(Rewards, ParseWeights) {
  const RewardWeights w = parse_reward_weights(
      "accuracy=1, format=0.5,language=0.1,overlong=1,max_len=512,cache_len=128");
  EXPECT_EQ(w.accuracy, 1.0);
  EXPECT_EQ(w.format, 0.5);
  EXPECT_EQ(w.language, 0.1);
  EXPECT_EQ(w.overlong, 1.0);
  EXPECT_EQ(w.max_len, 512u);
  EXPECT_EQ(w.cache_len, 128u);
  EXPECT_EQ(parse_reward_weights("").accuracy, 1.0);
  EXPECT_THROW(parse_reward_weights("acuracy=1"), Error);
  EXPECT_THROW(parse_reward_weights("format=x"), Error);
  EXPECT_THROW(parse_reward_weights("format"), Error);
  EXPECT_THROW(parse_reward_weights("overlong=1"), Error);
  EXPECT_THROW(parse_reward_weights("max_len=4,cache_len=8"), Error);
  EXPECT_THROW(parse_reward_weights("max_len=1.5"), Error);
}

TEST(Rewards, LenientCorrectness) {
  const Problem p = number_problem("1368");
  EXPECT_TRUE(lenient_correct(p, "3+6+9=18 carry 1; ... answer 1368"));
  EXPECT_TRUE(lenient_correct(p, "<answer>1368</answer>"));
  EXPECT_FALSE(lenient_correct(p, "1368 is not it, 1367"));
  Problem s;
  s.verifier = Verifier::Exact;
  s.answer = "apple fig";
  EXPECT_TRUE(lenient_correct(s, "<answer>x</answer><answer>apple fig</answer>"));
  EXPECT_TRUE(lenient_correct(s, "hmm\napple fig\n\n"));
  EXPECT_FALSE(lenient_correct(s, "apple fig\nfig apple"));
}

// ---------------------------------------------------------------- templates

TEST(Prompt, Templates) {
  EXPECT_EQ(apply_template(Template::R1Zero, "What is 1+2?"),
            "A conversation between User and Assistant. The user asks a question, and the "
            "Assistant solves it. The assistant first thinks about the reasoning process in the "
            "mind and then provides the user with the answer. The reasoning process and answer "
            "are enclosed within <think> </think> and <answer> </answer> tags, respectively, "
            "i.e., <think> reasoning process here </think> <answer> answer here </answer>. User: "
            "What is 1+2?. Assistant:");
  EXPECT_EQ(apply_template(Template::QA, "计算 1+2 等于多少？"), "Q: 计算 1+2 等于多少？\nA:");
  EXPECT_EQ(parse_template("qa"), Template::QA);
  EXPECT_EQ(parse_template("r1zero"), Template::R1Zero);
  EXPECT_THROW(parse_template("chatml"), Error);
}

// ---------------------------------------------------------------- stats

TEST(Stats, PassAtK) {
  // By hand: 1 - C(3,2)/C(5,2) = 1 - 3/10.
  EXPECT_NEAR(pass_at_k(5, 2, 2), 0.7, 1e-12);
  // 1 - C(6,3)/C(10,3) = 1 - 20/120.
  EXPECT_NEAR(pass_at_k(10, 4, 3), 5.0 / 6.0, 1e-12);
  EXPECT_NEAR(pass_at_k(10, 3, 1), 0.3, 1e-12);  // pass@1 is c/n
  EXPECT_EQ(pass_at_k(10, 0, 5), 0.0);
  EXPECT_EQ(pass_at_k(10, 8, 3), 1.0);  // fewer than k wrong samples
  EXPECT_EQ(pass_at_k(4, 4, 4), 1.0);
  EXPECT_NEAR(pass_at_k(200, 1, 100), 0.5, 1e-12);
}

TEST(Stats, MajorityVote) {
  auto num_eq = [](const std::string& a, const std::string& b) { return numbers_equal(a, b); };
  using A = std::vector<std::optional<std::string>>;
  // 1.5 and 3/2 pool their votes (2) against 7 (2 votes, but seen later) and 4 (1).
  EXPECT_EQ(majority_vote(A{"7", "1.5", "3/2", "4", "7", std::nullopt, "1.5"}, num_eq), 1u);
  EXPECT_EQ(majority_vote(A{"7", "1.5", "3/2", "7"}, num_eq), 0u);  // tie: first class wins
  EXPECT_EQ(majority_vote(A{std::nullopt, std::nullopt}, num_eq), std::nullopt);
  EXPECT_EQ(majority_vote(A{std::nullopt, "2", "1", "1"}, num_eq), 2u);
}

TEST(Stats, Intervals) {
  // Wilson 8/10 at z = 1.96 (hand: center 0.7167..., half 0.2266...).
  const Interval w = wilson_interval(8, 10, 1.96);
  EXPECT_NEAR(w.mean, 0.8, 1e-12);
  EXPECT_NEAR(w.lo, 0.4901568, 1e-6);
  EXPECT_NEAR(w.hi, 0.9433191, 1e-6);
  const Interval zero = wilson_interval(0, 20, 1.96);
  EXPECT_EQ(zero.lo, 0.0);
  EXPECT_NEAR(zero.hi, 0.1611301, 1e-6);
  // Per-problem means {1, 0.5, 0, 0.5}: mean 0.5, sd sqrt(1/6), half = 1.96*sqrt(1/6)/2.
  const Interval m = mean_interval({1, 0.5, 0, 0.5}, 1.96);
  EXPECT_NEAR(m.mean, 0.5, 1e-12);
  EXPECT_NEAR(m.hi - m.mean, 1.96 * std::sqrt(1.0 / 6.0) / 2, 1e-12);
  EXPECT_NEAR(m.mean - m.lo, 1.96 * std::sqrt(1.0 / 6.0) / 2, 1e-12);
  EXPECT_EQ(mean_interval({1, 1, 1}).lo, 1.0);
  const Interval c = mean_interval({1, 0}, 1.96);
  EXPECT_EQ(c.lo, 0.0);  // clamped
  EXPECT_EQ(c.hi, 1.0);
  const Interval uc = mean_interval({1, 0}, 1.96, false);
  EXPECT_LT(uc.lo, 0.0);
  EXPECT_TRUE(intervals_overlap({0.5, 0.4, 0.6}, {0.65, 0.59, 0.7}));
  EXPECT_FALSE(intervals_overlap({0.5, 0.4, 0.6}, {0.7, 0.61, 0.8}));
}

// ---- format.h: tagged completions and the synthetic corpus ---------------------------------

TEST(Format, CompletionsAndReasonsFirst) {
  EXPECT_EQ(reasoned_completion("1+2=3", "3"), "<think>1+2=3</think><answer>3</answer>");
  EXPECT_EQ(direct_completion("3"), "<answer>3</answer>");
  EXPECT_TRUE(reasons_first("<think>1+2=3</think><answer>3</answer>"));
  EXPECT_TRUE(reasons_first("  <think>1+2=3"));                       // truncated, still reasoning
  EXPECT_FALSE(reasons_first("<answer>3</answer>"));                  // answers directly
  EXPECT_FALSE(reasons_first("<think> </think><answer>3</answer>"));  // blank reasoning
  EXPECT_FALSE(reasons_first("x<think>1+2=3</think><answer>3</answer>"));
  EXPECT_FALSE(reasons_first("<think><answer>3</answer>1+2</think>"));  // answer inside
  // The tagged completion scores as fully formatted and correct.
  Problem p;
  p.answer = "3";
  EXPECT_EQ(format_reward(reasoned_completion("1+2=3", "3")), 1.0);
  EXPECT_EQ(accuracy_reward(p, reasoned_completion("1+2=3", "3")), 1.0);
}

TEST(Corpus, SharesLanguagesAndSplit) {
  CorpusSpec spec;
  spec.reasoning_share = 0.3;
  spec.wrong_share = 0.1;
  spec.foreign_reasoning_share = 0.5;
  const TaskMix mix = named_mix("add");
  const auto docs = make_corpus(mix, 4000, 7, spec);
  ASSERT_EQ(docs.size(), 4000u);
  size_t reasoned = 0, wrong = 0, zh_reasoned = 0, zh_in_english = 0;
  for (const auto& d : docs) {
    reasoned += d.reasoned;
    wrong += d.wrong;
    EXPECT_EQ(d.prompt.rfind("Q: ", 0), 0u);
    EXPECT_EQ(reasons_first(d.completion), d.reasoned) << d.completion;
    // Correct documents verify; wrong ones do not (one digit changed, in the trace too).
    const std::string q = d.prompt.substr(3, d.prompt.size() - 3 - 3);
    const bool zh = detect_language(q) == Lang::Zh;
    if (d.reasoned && zh) {
      ++zh_reasoned;
      zh_in_english += language_share(reasoning_text(d.completion), Lang::Zh) < 1.0;
    }
    if (d.reasoned && !zh) {
      EXPECT_EQ(language_share(reasoning_text(d.completion), Lang::En), 1.0);
    }
  }
  EXPECT_NEAR(reasoned / 4000.0, 0.3, 0.03);
  EXPECT_NEAR(wrong / 4000.0, 0.1, 0.02);
  EXPECT_NEAR(double(zh_in_english) / zh_reasoned, 0.5, 0.08);
  // Same seed, same corpus.
  const auto again = make_corpus(mix, 50, 7, spec);
  for (size_t i = 0; i < again.size(); ++i) EXPECT_EQ(again[i].completion, docs[i].completion);
}

TEST(Corpus, NeverContainsAHeldOutProblem) {
  const TaskMix mix = named_mix("add");
  std::set<std::string> held_out_prompts;
  for (const Problem& p : make_split(mix, Split::Eval, 300, 3))
    held_out_prompts.insert(apply_template(Template::QA, p.prompt));
  size_t checked = 0;
  for (const auto& d : make_corpus(mix, 20000, 11, CorpusSpec{})) {
    EXPECT_EQ(held_out_prompts.count(d.prompt), 0u) << d.prompt;
    ++checked;
  }
  EXPECT_EQ(checked, 20000u);
}

TEST(Corpus, WrongDocumentsFailAndRightOnesPass) {
  CorpusSpec spec;
  spec.reasoning_share = 1.0;
  spec.wrong_share = 0.5;
  const auto problems = make_split(named_mix("add-en"), Split::Train, 200, 5);
  // cold_start_examples are always right.
  for (size_t i = 0; i < problems.size(); ++i) {
    const auto cs = cold_start_examples({problems[i]}, Template::QA);
    ASSERT_EQ(cs.size(), 1u);
    EXPECT_EQ(accuracy_reward(problems[i], cs[0].completion), 1.0);
    EXPECT_EQ(format_reward(cs[0].completion), 1.0);
  }
  // In the corpus, the answer of a wrong document differs from the trace-free truth: recompute
  // the sum from the prompt.
  for (const auto& d : make_corpus(named_mix("add-en"), 400, 9, spec)) {
    const std::string expr = d.prompt.substr(std::string("Q: What is ").size(),
                                             d.prompt.size() - std::string("Q: What is ").size() - 4);
    long long sum = 0;
    size_t pos = 0;
    while (pos < expr.size()) {
      size_t plus = expr.find('+', pos);
      sum += std::stoll(expr.substr(pos, plus - pos));
      if (plus == std::string::npos) break;
      pos = plus + 1;
    }
    Problem p;
    p.answer = std::to_string(sum);
    EXPECT_EQ(accuracy_reward(p, d.completion) == 1.0, !d.wrong) << d.prompt << d.completion;
  }
}

TEST(Prompt, TemplatesAndNames) {
  EXPECT_EQ(apply_template(Template::R1Chat, "2+2?"), "<｜User｜>2+2?<｜Assistant｜>");
  EXPECT_EQ(apply_template(Template::QA, "2+2?"), "Q: 2+2?\nA:");
  for (Template t : {Template::QA, Template::R1Zero, Template::R1Chat})
    EXPECT_EQ(parse_template(template_name(t)), t);
  EXPECT_THROW(parse_template("chatml"), seekr::Error);
  EXPECT_THROW(named_mix("nope"), seekr::Error);
  EXPECT_EQ(named_mix("add").entries.size(), 2u);
}
