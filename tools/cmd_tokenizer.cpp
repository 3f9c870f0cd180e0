// seekr tokenizer {encode, decode, train}: byte-level BPE tokenizers in HF tokenizer.json format.
#include <chrono>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "args.h"
#include "command.h"
#include "core/check.h"
#include "core/file_io.h"
#include "tokenizer/tokenizer.h"

namespace seekr::cli {
namespace {

const char* kUsage =
    "usage: seekr tokenizer <encode|decode|train> [options]\n"
    "\n"
    "Byte-level BPE tokenizers stored as Hugging Face tokenizer.json files; encoding matches the\n"
    "HF tokenizers library id for id (e.g. DeepSeek-V3's tokenizer.json).\n"
    "\n"
    "  encode --tokenizer FILE [--add-special-tokens] [--jsonl] [FILES...]\n"
    "      Prints one JSON array of ids per document. A document is a whole file (or all of\n"
    "      stdin when no FILES are given); with --jsonl, each input line is a JSON object whose\n"
    "      \"text\" field is one document. --add-special-tokens applies the tokenizer's\n"
    "      post_processor (e.g. a BOS id from TemplateProcessing).\n"
    "\n"
    "  decode --tokenizer FILE [--skip-special-tokens] [--jsonl] [FILES...]\n"
    "      Reads JSON lines, each an array of ids (or an object with an \"ids\" array), and\n"
    "      prints each decoded document followed by a newline; with --jsonl prints\n"
    "      {\"text\": ...} lines instead, which `encode --jsonl` reads back.\n"
    "\n"
    "  train --vocab-size N --out FILE [--special LIST] [--bos TOKEN] [--min-frequency K]\n"
    "        [--max-digits D] [--jsonl] FILES...\n"
    "      Learns a byte-level BPE vocabulary of N tokens (special tokens, then the 256 bytes,\n"
    "      then merges) with DeepSeek-V3's pre-tokenizer; deterministic. LIST is\n"
    "      comma-separated, e.g. \"<｜begin▁of▁sentence｜>,<｜end▁of▁sentence｜>\"; specials get\n"
    "      ids 0.. in that order. --bos makes `encode --add-special-tokens` prepend that special.\n"
    "      Pairs seen fewer than K times (default 2) are not merged. The output is written\n"
    "      atomically.\n";

std::string read_stdin() {
  std::ostringstream ss;
  ss << std::cin.rdbuf();
  return ss.str();
}

// Calls fn(content, name) for each input file, or for all of stdin when there are none.
template <typename Fn>
void for_each_input(const std::vector<std::string>& files, Fn fn) {
  if (files.empty()) return fn(read_stdin(), std::string("<stdin>"));
  for (const auto& f : files) fn(read_file(f), f);
}

// Calls fn(json, where) for each non-empty line of content; where is "name:line".
template <typename Fn>
void for_each_json_line(const std::string& content, const std::string& name, Fn fn) {
  std::istringstream in(content);
  size_t lineno = 0;
  for (std::string line; std::getline(in, line);) {
    ++lineno;
    if (line.empty() || line == "\r") continue;
    std::string where = str_cat(name, ":", lineno);
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {
      throw Error(str_cat(where, ": not valid JSON: ", e.what()));
    }
    fn(j, where);
  }
}

// Calls fn(text) for every document in the inputs (see kUsage).
template <typename Fn>
void for_each_document(const std::vector<std::string>& files, bool jsonl, Fn fn) {
  for_each_input(files, [&](const std::string& content, const std::string& name) {
    if (!jsonl) return fn(content);
    for_each_json_line(content, name, [&](const nlohmann::json& j, const std::string& where) {
      SEEKR_REQUIRE(j.is_object() && j.contains("text") && j["text"].is_string(), where,
                    ": expected an object with a string field \"text\"");
      fn(j["text"].get<std::string>());
    });
  });
}

// The options encode and decode share: --tokenizer, --jsonl, one boolean flag, input files.
struct CodecOptions {
  Tokenizer tok;
  bool flag, jsonl;
  std::vector<std::string> files;
};

CodecOptions parse_codec_options(int argc, char** argv, const std::string& flag) {
  Args args(argc, argv, kUsage, {flag, "jsonl"});
  CodecOptions o{
      Tokenizer::from_file(args.required("tokenizer")), args.flag(flag), args.flag("jsonl"), {}};
  args.finish();
  o.files = args.positional();
  return o;
}

int encode(int argc, char** argv) {
  CodecOptions o = parse_codec_options(argc, argv, "add-special-tokens");
  std::string line;
  for_each_document(o.files, o.jsonl, [&](const std::string& text) {
    line = "[";
    for (int32_t id : o.tok.encode(text, /*add_special_tokens=*/o.flag)) {
      if (line.size() > 1) line += ',';
      line += std::to_string(id);
    }
    line += "]\n";
    std::fwrite(line.data(), 1, line.size(), stdout);
  });
  return 0;
}

int decode(int argc, char** argv) {
  CodecOptions o = parse_codec_options(argc, argv, "skip-special-tokens");
  for_each_input(o.files, [&](const std::string& content, const std::string& name) {
    for_each_json_line(content, name, [&](const nlohmann::json& j, const std::string& where) {
      std::vector<int32_t> ids;
      try {
        ids = (j.is_object() ? j.at("ids") : j).get<std::vector<int32_t>>();
      } catch (const nlohmann::json::exception& e) {
        throw Error(
            str_cat(where, ": expected a JSON array of ids or {\"ids\": [...]}: ", e.what()));
      }
      std::string text = o.tok.decode(ids, /*skip_special_tokens=*/o.flag);
      std::string out = o.jsonl ? nlohmann::json{{"text", text}}.dump() : text;
      out += '\n';
      std::fwrite(out.data(), 1, out.size(), stdout);
    });
  });
  return 0;
}

std::vector<std::string> split_commas(const std::string& s) {
  std::vector<std::string> out;
  if (s.empty()) return out;
  size_t start = 0;
  while (true) {
    size_t c = s.find(',', start);
    out.push_back(s.substr(start, c - start));
    if (c == std::string::npos) break;
    start = c + 1;
  }
  return out;
}

int train(int argc, char** argv) {
  Args args(argc, argv, kUsage, {"jsonl"});
  BpeTrainConfig cfg;
  cfg.vocab_size = static_cast<int>(args.i64("vocab-size", 4096));
  cfg.special_tokens = split_commas(args.str("special", ""));
  cfg.bos_token = args.str("bos", "");
  cfg.min_frequency = args.i64("min-frequency", 2);
  cfg.max_digits = static_cast<int>(args.i64("max-digits", 3));
  std::string out = args.required("out");
  bool jsonl = args.flag("jsonl");
  args.finish();
  SEEKR_REQUIRE(!args.positional().empty(), "train needs at least one input file (see --help)");
  auto t0 = std::chrono::steady_clock::now();
  std::vector<std::string> docs;
  size_t bytes = 0;
  for_each_document(args.positional(), jsonl, [&](const std::string& text) {
    bytes += text.size();
    docs.push_back(text);
  });
  Tokenizer tok = train_bpe(docs, cfg);
  tok.save(out);
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::fprintf(stderr, "trained %d tokens on %zu documents (%.1f MB) in %.1f s -> %s\n",
               tok.vocab_size(), docs.size(), bytes / 1e6, secs, out.c_str());
  if (tok.vocab_size() < cfg.vocab_size)
    std::fprintf(stderr, "note: stopped below --vocab-size %d: no pair occurs %lld+ times\n",
                 cfg.vocab_size, static_cast<long long>(cfg.min_frequency));
  return 0;
}

}  // namespace

int tokenizer_run(int argc, char** argv) {
  if (argc < 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h") {
    std::printf("%s", kUsage);
    return argc < 2 ? 2 : 0;
  }
  std::string action = argv[1];
  if (action == "encode") return encode(argc - 1, argv + 1);
  if (action == "decode") return decode(argc - 1, argv + 1);
  if (action == "train") return train(argc - 1, argv + 1);
  throw Error(str_cat("unknown action '", action, "' (expected encode, decode or train)"));
}

SEEKR_COMMAND("tokenizer", "encode/decode text with a tokenizer.json; train a byte-level BPE",
              tokenizer_run);

}  // namespace seekr::cli
