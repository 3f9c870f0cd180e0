// seekr convert: a checkpoint directory in another dtype (f32, bf16, f16, DeepSeek's block FP8).
#include <omp.h>

#include <chrono>
#include <cstdio>
#include <string>

#include "args.h"
#include "command.h"
#include "core/check.h"
#include "model/convert.h"

namespace {

const char* kUsage =
    R"(usage: seekr convert --model DIR --out DIR2 --dtype f32|bf16|f16|fp8 [--shard-size 5GB]

Reads a checkpoint directory (config.json + model.safetensors, or shards with
model.safetensors.index.json; F32, F16, BF16 or DeepSeek's FP8 with weight_scale_inv) and writes
it to DIR2 in another dtype. DIR2 must not exist or be empty; it is built under a temporary
sibling and renamed into place. config.json is rewritten and other small files (tokenizer.json,
generation_config.json, ...) are copied. See docs/checkpoint-format.md.

  --model DIR        source checkpoint directory
  --out DIR2         output directory
  --dtype T          fp8:  every Linear weight (*_proj.weight: attention, MLPs, experts,
                           eh_proj) as F8_E4M3 + F32 weight_scale_inv (128x128 blocks, as
                           DeepSeek-V3's release); other tensors keep their dtype;
                           config.json gains quantization_config
                     bf16, f16: every float tensor in that type, except
                           e_score_correction_bias (F32); FP8 weights are dequantised
                     f32:  everything dequantised to F32
  --shard-size S     write shards of at most S (5GB, 500MB, 2GiB, bytes) and an index
                     instead of one model.safetensors
  --threads N        tensors converted in parallel (default: OpenMP's thread count)
)";

std::string dtype_counts(const seekr::TensorStats& s) {
  std::string out;
  for (const auto& [dtype, n] : s.by_dtype)
    out += (out.empty() ? "" : ", ") + std::to_string(n) + " " + dtype;
  return out;
}

int run_convert(int argc, char** argv) {
  using namespace seekr;
  cli::Args args(argc, argv, kUsage);
  const std::string in = args.required("model");
  const std::string out = args.required("out");
  ConvertOptions opt;
  try {
    opt.dtype = parse_checkpoint_dtype(args.required("dtype"));
  } catch (const Error& e) {
    throw Error(std::string("--dtype: ") + e.what());
  }
  if (args.has("shard-size")) {
    try {
      opt.shard_bytes = parse_byte_size(args.str("shard-size", ""));
    } catch (const Error& e) {
      throw Error(std::string("--shard-size: ") + e.what());
    }
  }
  opt.threads = static_cast<int>(args.i64("threads", omp_get_max_threads()));
  SEEKR_REQUIRE(opt.threads >= 1, "--threads must be at least 1");
  args.finish();

  const auto t0 = std::chrono::steady_clock::now();
  const ConvertResult r = convert_checkpoint(in, out, opt);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("before: %zu tensors (%s), %llu bytes\n", r.in.tensors, dtype_counts(r.in).c_str(),
              static_cast<unsigned long long>(r.in.bytes));
  std::printf("after:  %zu tensors (%s), %llu bytes (%.1f%%)\n", r.out.tensors,
              dtype_counts(r.out).c_str(), static_cast<unsigned long long>(r.out.bytes),
              r.in.bytes
                  ? 100.0 * static_cast<double>(r.out.bytes) / static_cast<double>(r.in.bytes)
                  : 0.0);
  std::printf(
      "%zu weights quantised to FP8, %zu tensors copied unchanged, %zu not in the "
      "config's layout (kept)\n",
      r.quantized, r.passed_through, r.unknown);
  std::string copied;
  for (const std::string& f : r.copied_files) copied += " " + f;
  const std::string layout =
      r.shards ? std::to_string(r.shards) + " shards + index" : "model.safetensors";
  std::printf("wrote %s (%s, %s) in %.2f s; copied:%s\n", out.c_str(),
              checkpoint_dtype_name(opt.dtype), layout.c_str(), secs,
              copied.empty() ? " nothing" : copied.c_str());
  return 0;
}

}  // namespace

SEEKR_COMMAND("convert", "rewrite a checkpoint as f32, bf16, f16 or DeepSeek block FP8",
              run_convert);
