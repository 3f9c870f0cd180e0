// seekr data: turn text into token shards (prepare) and look inside a shard (inspect).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "args.h"
#include "command.h"
#include "core/check.h"
#include "core/file_io.h"
#include "tokenizer/tokenizer.h"
#include "train/data.h"

namespace seekr::cli {
namespace {

const char* kUsage = R"(usage:
  seekr data prepare --tokenizer TOKENIZER.json --out DIR [options] INPUT...
  seekr data inspect SHARD.bin [--tokens N] [--tokenizer TOKENIZER.json]

prepare: tokenizes documents into shards DIR/<name>-00000.bin, DIR/<name>-00001.bin, ...
  Each plain-text INPUT file is one document; with --jsonl each line of each INPUT is one
  document, a JSON object whose --field holds the text (scripts/corpus.sh writes such files).
  Empty documents are skipped. Documents are never split across shards.
  --name NAME           shard name prefix (default train)
  --jsonl               inputs are JSON Lines
  --field F             JSONL field with the text (default text)
  --append-eos          write an end-of-sequence id after every document
  --eos-token TOKEN     the token for --append-eos (default: the first of
                        <｜end▁of▁sentence｜>, <|endoftext|>, </s>, <eos> in the vocabulary)
  --shard-tokens N      start a new shard once one holds N tokens (default 67108864)
  --threads N           encoding threads (default 1; output is identical for any N)

inspect: prints a shard's header, document sizes and its first tokens (decoded too if a
  tokenizer is given).
  --tokens N            how many tokens to print (default 32)
)";

// Writes numbered shards, starting the next one when the current one is full.
class Sharder {
 public:
  Sharder(std::string dir, std::string name, uint64_t vocab, uint64_t shard_tokens)
      : dir_(std::move(dir)), name_(std::move(name)), vocab_(vocab), limit_(shard_tokens) {}

  void add(std::span<const int32_t> doc) {
    if (!cur_) {
      char file[64];
      std::snprintf(file, sizeof file, "-%05zu.bin", paths_.size());
      paths_.push_back(dir_ + "/" + name_ + file);
      cur_ = std::make_unique<ShardWriter>(paths_.back(), vocab_);
    }
    cur_->add_document(doc);
    ++docs_;
    tokens_ += doc.size();
    if (cur_->token_count() >= limit_) flush();
  }

  void flush() {
    if (cur_) cur_->finish();
    cur_.reset();
  }

  uint64_t docs() const { return docs_; }
  uint64_t tokens() const { return tokens_; }
  const std::vector<std::string>& paths() const { return paths_; }

 private:
  std::string dir_, name_;
  uint64_t vocab_, limit_;
  std::unique_ptr<ShardWriter> cur_;
  std::vector<std::string> paths_;
  uint64_t docs_ = 0, tokens_ = 0;
};

// Encodes documents a batch at a time, in parallel, and hands them on in input order so
// the shards do not depend on the thread count.
class Encoder {
 public:
  Encoder(const Tokenizer& tok, int threads, std::optional<int32_t> eos, Sharder& out)
      : tok_(tok), threads_(threads), eos_(eos), out_(out) {}

  void add(std::string text) {
    if (text.empty()) {
      ++skipped_;
      return;
    }
    pending_bytes_ += text.size();
    pending_.push_back(std::move(text));
    if (pending_.size() >= 4096 || pending_bytes_ >= (64u << 20)) drain();
  }

  void drain() {
    std::vector<std::vector<int32_t>> ids(pending_.size());
    auto work = [&](size_t t) {
      for (size_t i = t; i < pending_.size(); i += threads_) {
        ids[i] = tok_.encode(pending_[i]);
        if (eos_) ids[i].push_back(*eos_);
      }
    };
    std::vector<std::thread> pool;
    for (size_t t = 1; t < threads_; ++t) pool.emplace_back(work, t);
    work(0);
    for (auto& th : pool) th.join();
    for (const auto& d : ids) out_.add(d);
    pending_.clear();
    pending_bytes_ = 0;
  }

  uint64_t skipped() const { return skipped_; }

 private:
  const Tokenizer& tok_;
  size_t threads_;
  std::optional<int32_t> eos_;
  Sharder& out_;
  std::vector<std::string> pending_;
  size_t pending_bytes_ = 0;
  uint64_t skipped_ = 0;
};

std::optional<int32_t> find_eos(const Tokenizer& tok, const std::string& requested) {
  if (!requested.empty()) {
    auto id = tok.token_to_id(requested);
    SEEKR_REQUIRE(id, "--eos-token '", requested, "' is not in the tokenizer's vocabulary");
    return id;
  }
  for (const char* t : {"<｜end▁of▁sentence｜>", "<|endoftext|>", "</s>", "<eos>"})
    if (auto id = tok.token_to_id(t)) return id;
  throw Error(
      "--append-eos: the tokenizer has none of the usual end-of-sequence tokens; "
      "name one with --eos-token");
}

void read_jsonl(const std::string& path, const std::string& field, Encoder& enc) {
  std::ifstream in(path, std::ios::binary);
  SEEKR_REQUIRE(in, "cannot open ", path);
  std::string line;
  for (uint64_t lineno = 1; std::getline(in, line); ++lineno) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {
      throw Error(str_cat(path, ":", lineno, ": invalid JSON: ", e.what()));
    }
    SEEKR_REQUIRE(j.is_object() && j.contains(field) && j[field].is_string(), path, ":", lineno,
                  ": no string field '", field, "'");
    enc.add(j[field].get<std::string>());
  }
  SEEKR_REQUIRE(in.eof(), "read error in ", path);
}

int prepare(Args& args) {
  const std::string tok_path = args.required("tokenizer");
  const std::string out_dir = args.required("out");
  const std::string name = args.str("name", "train");
  const bool jsonl = args.flag("jsonl");
  const std::string field = args.str("field", "text");
  const bool append_eos = args.flag("append-eos");
  const std::string eos_token = args.str("eos-token", "");
  const long long shard_tokens = args.i64("shard-tokens", 1ll << 26);
  const long long threads = args.i64("threads", 1);
  args.finish();
  const auto& inputs = args.positional();
  SEEKR_REQUIRE(inputs.size() >= 2, "prepare: no input files (see --help)");
  SEEKR_REQUIRE(shard_tokens >= 1, "--shard-tokens must be >= 1");
  SEEKR_REQUIRE(threads >= 1 && threads <= 256, "--threads must be in [1, 256]");
  SEEKR_REQUIRE(!args.has("field") || jsonl, "--field needs --jsonl");

  const Tokenizer tok = Tokenizer::from_file(tok_path);
  const std::optional<int32_t> eos =
      append_eos ? find_eos(tok, eos_token) : std::optional<int32_t>();
  make_dirs(out_dir);

  const auto t0 = std::chrono::steady_clock::now();
  Sharder sharder(out_dir, name, static_cast<uint64_t>(tok.vocab_size()), shard_tokens);
  Encoder enc(tok, static_cast<int>(threads), eos, sharder);
  for (size_t i = 1; i < inputs.size(); ++i) {
    if (jsonl)
      read_jsonl(inputs[i], field, enc);
    else
      enc.add(read_file(inputs[i]));
  }
  enc.drain();
  sharder.flush();
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  for (const auto& p : sharder.paths()) std::printf("wrote %s\n", p.c_str());
  std::printf("documents: %llu (%llu empty skipped)\ntokens: %llu%s\nshards: %zu\n",
              static_cast<unsigned long long>(sharder.docs()),
              static_cast<unsigned long long>(enc.skipped()),
              static_cast<unsigned long long>(sharder.tokens()),
              eos ? str_cat(" (including one EOS id ", *eos, " per document)").c_str() : "",
              sharder.paths().size());
  std::printf("time: %.2f s, %.0f tokens/s\n", secs,
              secs > 0 ? static_cast<double>(sharder.tokens()) / secs : 0.0);
  return 0;
}

int inspect(Args& args) {
  const long long n = args.i64("tokens", 32);
  const std::string tok_path = args.str("tokenizer", "");
  args.finish();
  SEEKR_REQUIRE(args.positional().size() == 2, "inspect: give exactly one shard file");
  SEEKR_REQUIRE(n >= 0, "--tokens must be >= 0");
  const std::string& path = args.positional()[1];
  const TokenShard shard(path);

  const auto off = shard.doc_offsets();
  uint64_t lo = UINT64_MAX, hi = 0;
  for (uint64_t d = 0; d < shard.doc_count(); ++d) {
    lo = std::min(lo, off[d + 1] - off[d]);
    hi = std::max(hi, off[d + 1] - off[d]);
  }
  std::printf(
      "file: %s\nformat: SEEKRTOK version %u\nvocab_size: %llu\ntoken_width: %u bytes\n"
      "token_count: %llu\ndoc_count: %llu\n",
      path.c_str(), kShardVersion, static_cast<unsigned long long>(shard.vocab_size()),
      shard.token_width(), static_cast<unsigned long long>(shard.token_count()),
      static_cast<unsigned long long>(shard.doc_count()));
  if (shard.doc_count() > 0)
    std::printf("doc_tokens: min %llu, mean %.1f, max %llu\n", static_cast<unsigned long long>(lo),
                static_cast<double>(shard.token_count()) / static_cast<double>(shard.doc_count()),
                static_cast<unsigned long long>(hi));

  std::vector<int32_t> first(std::min<uint64_t>(n, shard.token_count()));
  shard.copy_tokens(0, first.size(), first.data());
  std::printf("first %zu tokens:", first.size());
  for (int32_t t : first) std::printf(" %d", t);
  std::printf("\n");
  if (!tok_path.empty()) {
    const Tokenizer tok = Tokenizer::from_file(tok_path);
    SEEKR_REQUIRE(static_cast<uint64_t>(tok.vocab_size()) <= shard.vocab_size(), tok_path,
                  ": vocab_size ", tok.vocab_size(), " is larger than the shard's ",
                  shard.vocab_size());
    std::printf("decoded: %s\n", nlohmann::json(tok.decode(first)).dump().c_str());
  }
  return 0;
}

int run_data(int argc, char** argv) {
  Args args(argc, argv, kUsage, {"jsonl", "append-eos"});
  const auto& pos = args.positional();
  SEEKR_REQUIRE(!pos.empty(), "data: give a subcommand, prepare or inspect (see --help)");
  if (pos[0] == "prepare") return prepare(args);
  if (pos[0] == "inspect") return inspect(args);
  throw Error(str_cat("data: unknown subcommand '", pos[0], "' (prepare or inspect)"));
}

}  // namespace
}  // namespace seekr::cli

namespace {
int run_data_cmd(int argc, char** argv) {
  return seekr::cli::run_data(argc, argv);
}
}  // namespace

SEEKR_COMMAND("data", "tokenize text into token shards; inspect a shard", run_data_cmd);
