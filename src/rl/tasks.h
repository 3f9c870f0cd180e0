// Verifiable problems: procedural generators (deterministic from a seed, with difficulty
// knobs), user JSONL datasets, and train/eval splits that are disjoint by construction.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/rng.h"
#include "rl/countdown.h"
#include "rl/text.h"

namespace seekr::rl {

enum class Verifier {
  Number,     // exact numeric equality (parse_number on both sides)
  Countdown,  // check_countdown against `numbers` and the target in `answer`
  Exact,      // equality after collapse_spaces (case-sensitive)
};
const char* verifier_name(Verifier v);  // "number" / "countdown" / "exact"

struct Problem {
  std::string task;  // generator family ("add", "mul", "countdown", ...) or "jsonl"
  Lang lang = Lang::En;
  std::string prompt;  // the question alone; apply_template adds the surrounding text
  std::string answer;  // the exact answer (for countdown: the target)
  Verifier verifier = Verifier::Number;
  std::vector<int64_t> numbers;  // countdown only
  // Canonical, language-independent problem text: the English and Chinese versions of one
  // problem (and commutative reorderings of one sum) share it, so splits keep them together.
  std::string key;
  std::string solution;  // a reference reasoning trace in `lang`, when the generator has one
};

// True when `extracted` (an already extracted answer) is correct for p.
bool verify(const Problem& p, std::string_view extracted);

enum class ArithOp { Add, Sub, Mul, Mixed };
enum class AdditionTrace {
  Columns,     // addition_scratchpad
  FixedWidth,  // fixed_width_addition_scratchpad
  Peeling,     // peeling_addition_scratchpad
};
struct ArithmeticSpec {
  ArithOp op = ArithOp::Add;
  int digits = 3;  // every operand has exactly this many digits
  int terms = 3;
  // Additions only: which reference trace the generator writes.
  AdditionTrace trace = AdditionTrace::Columns;
};
struct BoolSpec {
  int ops = 4;  // binary operators (& |) in the expression; each leaf may be negated
};
struct SortSpec {
  int words = 5;
};

enum class TaskKind { Arithmetic, Countdown, BoolEval, WordSort };
struct TaskSpec {
  TaskKind kind = TaskKind::Arithmetic;
  Lang lang = Lang::En;
  ArithmeticSpec arith;
  CountdownSpec countdown;
  BoolSpec boolean;
  SortSpec sort;
};

Problem generate(const TaskSpec& spec, Rng& rng);

// Column-by-column addition trace: "3+6+9=18 carry 1; 2+5+8+1=16 carry 1; 1+4+7+1=13 carry 1;
// answer 1368" (Chinese: "进位", "答案"). Operands are non-negative decimal strings.
std::string addition_scratchpad(const std::vector<std::string>& operands, Lang lang);
// The same column addition with every column of one shape, so that each digit a small model
// must look up sits at a fixed distance from where it is written: all digits of the column (0
// for a shorter operand), then the carry in, the sum zero-padded to the widest possible sum,
// the carry out even when it is 0, and the answer's digits found so far; no digit follows a
// space, so the space before the prompt's first number is the only such pair in a document:
//   "1+3+1+0=05 carry=0 ->5;2+2+7+0=11 carry=1 ->15;7+3+9+1=20 carry=2 ->015;answer=2015"
// The R1 pipeline's trace: on three 2-digit numbers its 0.85M-parameter teacher learns it
// (docs/r1.md), where it does not learn to restate the numbers the peeling trace needs.
std::string fixed_width_addition_scratchpad(const std::vector<std::string>& operands, Lang lang);
// Column addition where every step only reads what sits next to an anchor: each step restates
// the numbers still to add, adds their last digits (the ones just before "+" and ":") and the
// carry, and writes the digits found so far; the numbers of the next step are the previous
// ones without their last digit (a copy), and the answer is the carry and those digits:
//   "721+323+971: 1+3+1+0=05 carry 0 -> 5; 72+32+97: 2+2+7+0=11 carry 1 -> 15;
//    7+3+9: 7+3+9+1=20 carry 2 -> 015; answer 2015"
// A RoPE model this small learns to find the last digit of a number far sooner than the
// middle one. Operands must be non-negative decimal strings of the same length.
std::string peeling_addition_scratchpad(const std::vector<std::string>& operands, Lang lang);
// Long multiplication of two operands: one partial product per digit of b, then the column
// addition of the shifted partial products.
std::string multiplication_scratchpad(const std::string& a, const std::string& b, Lang lang);

struct TaskMix {
  struct Entry {
    TaskSpec spec;
    double weight = 1;
  };
  std::vector<Entry> entries;
};
// The default curriculum (docs/rl-tasks.md): mostly three 3-digit additions in English and
// Chinese, with multiplication, Countdown and boolean evaluation alongside.
TaskMix default_mix();
// A mix by name: "default"; "add" (three 3-digit additions, half English, half Chinese, with
// the fixed-width scratchpad), "add2" (three 2-digit numbers), "add3x2" (two 3-digit numbers),
// "add-en", "add-zh", "add-varwidth" (addition_scratchpad), "add-peel" (the peeling trace);
// "mul", "countdown", "bool", "sort" (half and half). Throws seekr::Error naming an unknown
// name.
TaskMix named_mix(std::string_view name);

// 64-bit hash of p.key (FNV-1a, then a splitmix finaliser so every bit is mixed).
uint64_t problem_hash(const Problem& p);
// The split is a pure function of the hash: a problem is held out iff its hash falls in the
// first eval_fraction of the range, so no training stream can ever produce a held-out problem.
bool is_held_out(const Problem& p, double eval_fraction);

enum class Split { Train, Eval };

// An endless deterministic stream of problems of one split drawn from a mix.
class ProblemSampler {
 public:
  ProblemSampler(TaskMix mix, Split split, uint64_t seed, double eval_fraction = 0.1);
  Problem next();

 private:
  TaskMix mix_;
  Split split_;
  double eval_fraction_;
  double total_weight_ = 0;
  Rng rng_;
};

// n problems of a split. Eval sets hold distinct keys; training sets may repeat problems.
// Throws seekr::Error if the mix cannot supply n distinct held-out problems.
std::vector<Problem> make_split(const TaskMix& mix, Split split, size_t n, uint64_t seed,
                                double eval_fraction = 0.1);

// JSONL, one problem per line: {"prompt": str, "answer": str|int, "verifier":
// "number"|"countdown"|"exact" (default "number"), "numbers": [int] (countdown), "lang":
// "en"|"zh" (default: detected from the prompt), "task", "key", "solution" (optional)}.
// Errors name file:line and the field.
std::vector<Problem> load_problems_jsonl(const std::string& path);
std::string problem_to_json(const Problem& p);  // one line, readable by load_problems_jsonl

}  // namespace seekr::rl
