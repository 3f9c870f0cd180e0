// seekr export gguf: a checkpoint as a GGUF file for llama.cpp (architecture deepseek2).
#include <cstdio>
#include <string>

#include "args.h"
#include "command.h"
#include "core/check.h"
#include "model/gguf_export.h"

namespace {

const char* kUsage =
    R"(usage: seekr export gguf --model DIR --out FILE.gguf [options]

Writes a checkpoint directory (config.json, safetensors weights, tokenizer.json) as one GGUF
file that llama.cpp loads as architecture deepseek2 (checked against llama.cpp v0.5.0, the one
node-llama-cpp 3.22.1 bundles). The file is written atomically. See docs/gguf-export.md.

  --model DIR        checkpoint directory
  --out FILE         output .gguf path
  --type T           matrix type: f32 (default), f16 or bf16; norms, biases and the router
                     always stay f32
  --no-mtp           leave the MTP module out (it is kept when llama.cpp can run it: one
                     module, q-LoRA, MoE layer; otherwise it is dropped with a warning)
  --name NAME        general.name (default: the directory's name)

The vocabulary is the checkpoint's byte-level BPE tokenizer.json, padded with unused tokens up
to vocab_size. Without one, or with more tokens than vocab_size, a synthetic vocabulary (BOS,
EOS, the 256 byte tokens, placeholders) is written instead, with a warning: llama.cpp loads it
and runs token ids exactly, but its text tokenization is not the model's.

Configs llama.cpp cannot compute exactly are refused with an error naming the config field.
)";

int run_export(int argc, char** argv) {
  using namespace seekr;
  cli::Args args(argc, argv, kUsage, {"no-mtp"});
  const auto& pos = args.positional();
  SEEKR_REQUIRE(pos.size() == 1 && pos[0] == "gguf",
                "expected 'seekr export gguf ...' (the only export format); see --help");
  const std::string dir = args.required("model");
  const std::string out = args.required("out");
  GgufExportOptions opt;
  try {
    opt.type = parse_ggml_type(args.str("type", "f32"));
  } catch (const Error& e) {
    throw Error(std::string("--type: ") + e.what());
  }
  opt.mtp = !args.flag("no-mtp");
  opt.name = args.str("name", "");
  args.finish();

  const GgufExportResult r = export_gguf(dir, out, opt);
  for (const std::string& w : r.warnings) std::fprintf(stderr, "warning: %s\n", w.c_str());
  std::printf(
      "wrote %s: %zu tensors (%s matrices), %zu metadata keys, %.1f MB; MTP %s; %s vocabulary\n",
      out.c_str(), r.tensors, ggml_type_name(opt.type), r.kv, r.bytes / 1e6,
      r.mtp_included ? "included" : "not included",
      r.synthetic_vocab ? "synthetic" : "tokenizer.json");
  return 0;
}

}  // namespace

SEEKR_COMMAND("export", "write a checkpoint in another format (gguf: for llama.cpp)", run_export);
