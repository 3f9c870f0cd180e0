#include "model/convert.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <climits>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/check.h"
#include "core/file_io.h"
#include "core/safetensors.h"
#include "core/workers.h"
#include "kernels/fp8.h"
#include "model/config.h"
#include "model/weights.h"

namespace seekr {
namespace {

namespace fs = std::filesystem;
using ojson = nlohmann::ordered_json;

constexpr const char* kQuantField = "quantization_config";
constexpr uint64_t kMaxCopiedFile = 64ull << 20;

std::string shape_str(const std::vector<int64_t>& shape) {
  return ojson(shape).dump();
}

ojson parse_json(const std::string& text, const std::string& origin) {
  try {
    return ojson::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw Error(str_cat(origin, ": not valid JSON: ", e.what()));
  }
}

// The file of `src` that holds `t` (a shard, for sharded checkpoints): what errors name.
std::string file_of(const TensorSource& src, const TensorView& t) {
  for (const SafetensorsFile& f : src.files())
    if (f.find(t.name) == &t) return f.path();
  return src.path();
}

std::string tensor_at(const TensorSource& src, const TensorView& t) {
  return str_cat(file_of(src, t), ": tensor \"", t.name, "\"");
}

int checked_int(const TensorSource& src, const TensorView& t, int64_t v) {
  SEEKR_REQUIRE(v <= INT_MAX, tensor_at(src, t), ": dimension ", v, " is too large");
  return static_cast<int>(v);
}

bool is_correction_bias(const std::string& name) {
  return name.ends_with(".e_score_correction_bias");
}

}  // namespace

// ---- the FP8 layout ----------------------------------------------------------------------------

std::optional<Fp8QuantConfig> parse_quantization_config(const std::string& config_json,
                                                        const std::string& origin) {
  const ojson j = parse_json(config_json, origin);
  SEEKR_REQUIRE(j.is_object(), origin, ": a config must be a JSON object");
  const auto it = j.find(kQuantField);
  if (it == j.end() || it->is_null()) return std::nullopt;
  auto fail = [&](const std::string& field, const std::string& what) -> Error {
    return Error(
        str_cat(origin, ": field '", kQuantField, field.empty() ? "" : ".", field, "' ", what));
  };
  if (!it->is_object()) throw fail("", "must be an object or null");
  const ojson& q = *it;
  // A string field that must equal `want` (the default when missing, unless required).
  auto expect_string = [&](const char* field, const char* want, bool required,
                           const char* supported) {
    const auto f = q.find(field);
    if (f == q.end() || f->is_null()) {
      if (required) throw fail(field, "is missing (seekr loads quant_method \"fp8\")");
      return;
    }
    if (!f->is_string()) throw fail(field, "must be a string");
    if (f->get<std::string>() != want)
      throw fail(field, str_cat("is \"", f->get<std::string>(), "\"; seekr supports ", supported));
  };
  expect_string("quant_method", "fp8", true, "\"fp8\" (DeepSeek's block-scaled FP8) only");
  expect_string("fmt", "e4m3", false, "\"e4m3\" (float8_e4m3fn weights) only");
  expect_string("activation_scheme", "dynamic", false,
                "\"dynamic\" (activations quantised online) only");
  if (const auto b = q.find("weight_block_size"); b != q.end() && !b->is_null()) {
    const bool ok = b->is_array() && b->size() == 2 && (*b)[0].is_number_integer() &&
                    (*b)[1].is_number_integer() && (*b)[0].get<int64_t>() == kFp8Block &&
                    (*b)[1].get<int64_t>() == kFp8Block;
    if (!ok)
      throw fail("weight_block_size",
                 str_cat("is ", b->dump(), "; seekr supports [", kFp8Block, ", ", kFp8Block, "]"));
  }
  Fp8QuantConfig out;
  if (const auto s = q.find("scale_fmt"); s != q.end() && !s->is_null()) {
    if (!s->is_string() || s->get<std::string>() != "ue8m0")
      throw fail("scale_fmt", str_cat("is ", s->dump(), "; seekr supports null or \"ue8m0\""));
    out.ue8m0_activation_scales = true;
  }
  return out;
}

std::string fp8_quantization_config_json() {
  return ojson{{"activation_scheme", "dynamic"},
               {"fmt", "e4m3"},
               {"quant_method", "fp8"},
               {"weight_block_size", {kFp8Block, kFp8Block}}}
      .dump();
}

bool is_scale_inv_name(const std::string& name) {
  return name.ends_with(kScaleInvSuffix);
}

bool is_fp8_linear_name(const std::string& name) {
  return name.ends_with("_proj.weight") || name.ends_with("_proj_with_mqa.weight");
}

Fp8Weight fp8_weight(const TensorSource& src, const TensorView& t) {
  const std::string at = tensor_at(src, t);
  SEEKR_REQUIRE(t.dtype == DType::F8_E4M3, at, " is ", dtype_name(t.dtype), ", not F8_E4M3");
  SEEKR_REQUIRE(t.shape.size() == 2, at, ": an F8_E4M3 weight must be 2-D, not shape ",
                shape_str(t.shape));
  Fp8Weight w;
  w.rows = checked_int(src, t, t.shape[0]);
  w.cols = checked_int(src, t, t.shape[1]);
  w.codes = t.data;
  const std::string scale_name = t.name + kScaleInvSuffix;
  const TensorView* s = src.find(scale_name);
  SEEKR_REQUIRE(s != nullptr, at, " is F8_E4M3 but the checkpoint has no \"", scale_name,
                "\" (FP8 weights need their 128x128 block scales)");
  const Fp8ScaleShape want = fp8_scale_shape(Fp8Tiling::k128x128, w.rows, w.cols);
  const std::vector<int64_t> want_shape{want.rows, want.cols};
  SEEKR_REQUIRE(s->shape == want_shape, tensor_at(src, *s), " has shape ", shape_str(s->shape),
                "; the ", shape_str(t.shape), " F8_E4M3 weight \"", t.name,
                "\" needs [ceil(rows/128), ceil(cols/128)] = ", shape_str(want_shape));
  SEEKR_REQUIRE(dtype_is_float(s->dtype), tensor_at(src, *s), " has dtype ", dtype_name(s->dtype),
                "; a weight_scale_inv must be F32");
  w.scale_inv.resize(static_cast<size_t>(s->numel()));
  copy_to_f32(*s, w.scale_inv.data());
  for (size_t i = 0; i < w.scale_inv.size(); ++i)
    SEEKR_REQUIRE(std::isfinite(w.scale_inv[i]), tensor_at(src, *s), ": block ", i / want.cols, ",",
                  i % want.cols, " holds the non-finite scale ", w.scale_inv[i]);
  return w;
}

void read_tensor_f32(const TensorSource& src, const TensorView& t, float* out) {
  if (t.dtype == DType::F8_E4M3) {
    const Fp8Weight w = fp8_weight(src, t);
    fp8_dequantize(w.codes, w.scale_inv.data(), out, w.rows, w.cols, Fp8Tiling::k128x128);
    return;
  }
  SEEKR_REQUIRE(dtype_is_float(t.dtype), tensor_at(src, t), " has dtype ", dtype_name(t.dtype),
                "; seekr reads float tensors (F32, F16, BF16, F64) and F8_E4M3 weights with a ",
                "weight_scale_inv");
  SEEKR_REQUIRE(is_scale_inv_name(t.name) || !src.find(t.name + kScaleInvSuffix), tensor_at(src, t),
                " is ", dtype_name(t.dtype), " but has a \"", t.name, kScaleInvSuffix,
                "\"; only F8_E4M3 weights carry scales");
  copy_to_f32(t, out);
}

void check_checkpoint_quantization(const TensorSource& src) {
  const fs::path p(src.path());
  fs::path dir = is_directory(src.path()) ? p : p.parent_path();
  if (dir.empty()) dir = ".";
  const std::string cfg = (dir / "config.json").string();
  if (file_exists(cfg)) parse_quantization_config(read_file(cfg), cfg);
}

// ---- conversion ---------------------------------------------------------------------------------

namespace {
constexpr std::pair<CheckpointDType, const char*> kDTypeNames[] = {{CheckpointDType::kF32, "f32"},
                                                                   {CheckpointDType::kBF16, "bf16"},
                                                                   {CheckpointDType::kF16, "f16"},
                                                                   {CheckpointDType::kFP8, "fp8"}};
}  // namespace

CheckpointDType parse_checkpoint_dtype(const std::string& s) {
  for (const auto& [t, name] : kDTypeNames)
    if (s == name) return t;
  throw Error(str_cat("unknown checkpoint dtype \"", s, "\"; expected f32, bf16, f16 or fp8"));
}

const char* checkpoint_dtype_name(CheckpointDType t) {
  for (const auto& [d, name] : kDTypeNames)
    if (d == t) return name;
  return "?";
}

uint64_t parse_byte_size(const std::string& s) {
  static const std::pair<const char*, uint64_t> kUnits[] = {
      {"KiB", 1ull << 10},   {"MiB", 1ull << 20},      {"GiB", 1ull << 30},
      {"TiB", 1ull << 40},   {"KB", 1000ull},          {"MB", 1000000ull},
      {"GB", 1000000000ull}, {"TB", 1000000000000ull}, {"B", 1ull}};
  std::string num = s;
  uint64_t unit = 1;
  for (const auto& [suffix, mult] : kUnits) {
    if (s.size() > std::strlen(suffix) && s.ends_with(suffix)) {
      num = s.substr(0, s.size() - std::strlen(suffix));
      unit = mult;
      break;
    }
  }
  char* end = nullptr;
  errno = 0;
  const double v = num.empty() ? -1 : std::strtod(num.c_str(), &end);
  SEEKR_REQUIRE(!num.empty() && *end == 0 && errno == 0 && v > 0 && v * unit < 1.8e19, "size \"", s,
                "\" is not a positive size such as 5GB, 500MB, 2GiB or 4096");
  return static_cast<uint64_t>(v * static_cast<double>(unit));
}

TensorStats tensor_stats(const TensorSource& src) {
  TensorStats st;
  for (const std::string& name : src.names()) {
    const TensorView& t = src.get(name);
    ++st.tensors;
    st.bytes += t.nbytes;
    ++st.by_dtype[dtype_name(t.dtype)];
  }
  return st;
}

namespace {

// One output tensor: its bytes are either the source's (mapped, no copy) or `owned`.
struct OutTensor {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  const void* data = nullptr;
  size_t nbytes = 0;
  std::vector<uint8_t> owned;
};

// What to do with one source tensor (its scale_inv, if any, travels with it).
struct Job {
  enum Kind { kKeep, kCast, kQuantize, kKeepFp8 } kind;
  const TensorView* src;
  DType target;  // kCast: F32/BF16/F16 (from any float dtype or a dequantised F8_E4M3)
  size_t out;    // index of its first output tensor (kQuantize / kKeepFp8: and out + 1)
};

DType float_target(CheckpointDType t, const std::string& name) {
  if (t == CheckpointDType::kBF16 && !is_correction_bias(name)) return DType::BF16;
  if (t == CheckpointDType::kF16 && !is_correction_bias(name)) return DType::F16;
  return DType::F32;
}

std::vector<float> read_f32(const TensorSource& src, const TensorView& t) {
  std::vector<float> x(static_cast<size_t>(t.numel()));
  read_tensor_f32(src, t, x.data());
  return x;
}

void own(OutTensor& o, std::vector<uint8_t> bytes) {
  o.owned = std::move(bytes);
  o.data = o.owned.data();
  o.nbytes = o.owned.size();
}

std::vector<uint8_t> to_bytes(const std::vector<float>& x, DType dtype) {
  std::vector<uint8_t> b(x.size() * dtype_size(dtype));
  from_f32(dtype, x.data(), b.data(), x.size());
  return b;
}

void run_job(const TensorSource& src, const Job& job, std::vector<OutTensor>& outs) {
  const TensorView& t = *job.src;
  OutTensor& o = outs[job.out];
  switch (job.kind) {
    case Job::kKeep:
      o.data = t.data;
      o.nbytes = t.nbytes;
      return;
    case Job::kCast:
      own(o, to_bytes(read_f32(src, t), job.target));
      return;
    case Job::kKeepFp8: {
      o.data = t.data;
      o.nbytes = t.nbytes;
      own(outs[job.out + 1], to_bytes(fp8_weight(src, t).scale_inv, DType::F32));
      return;
    }
    case Job::kQuantize: {
      const std::vector<float> x = read_f32(src, t);
      const int rows = static_cast<int>(t.shape[0]), cols = static_cast<int>(t.shape[1]);
      const Fp8ScaleShape ss = fp8_scale_shape(Fp8Tiling::k128x128, rows, cols);
      std::vector<uint8_t> q(x.size());
      std::vector<float> s(static_cast<size_t>(ss.rows) * ss.cols);
      fp8_quantize(x.data(), q.data(), s.data(), rows, cols, Fp8Tiling::k128x128,
                   Fp8ScaleFmt::kF32);
      own(o, std::move(q));
      own(outs[job.out + 1], to_bytes(s, DType::F32));
      return;
    }
  }
}

bool is_mtp_tensor(const ModelConfig& c, const std::string& name) {
  for (int k = 0; k < c.num_nextn_predict_layers; ++k)
    if (name.starts_with(str_cat("model.layers.", c.num_hidden_layers + k, "."))) return true;
  return false;
}

// Every model tensor present (MTP modules optional) with the shape the config implies.
void check_layout(const TensorSource& src, const ModelConfig& c, const std::string& config_path,
                  size_t* unknown) {
  const ModelLayout layout(c);
  for (const TensorSpec& s : layout.specs()) {
    const TensorView* t = src.find(s.name);
    SEEKR_REQUIRE(t || is_mtp_tensor(c, s.name), "checkpoint ", src.path(), ": missing tensor \"",
                  s.name, "\", which ", config_path, " implies");
    if (t)
      SEEKR_REQUIRE(t->shape == s.shape, tensor_at(src, *t), " has shape ", shape_str(t->shape),
                    "; ", config_path, " implies ", shape_str(s.shape));
  }
  *unknown = 0;
  for (const std::string& name : src.names())
    if (!is_scale_inv_name(name) && layout.find(name) < 0) ++*unknown;
}

std::vector<Job> plan(const TensorSource& src, CheckpointDType target,
                      std::vector<OutTensor>& outs) {
  std::vector<Job> jobs;
  auto add_out = [&](const std::string& name, DType dtype, const std::vector<int64_t>& shape) {
    outs.push_back(OutTensor{name, dtype, shape, nullptr, 0, {}});
    return outs.size() - 1;
  };
  for (const std::string& name : src.names()) {
    const TensorView& t = src.get(name);
    if (is_scale_inv_name(name)) {
      const std::string weight = name.substr(0, name.size() - std::strlen(kScaleInvSuffix));
      const TensorView* w = src.find(weight);
      SEEKR_REQUIRE(
          w && w->dtype == DType::F8_E4M3, tensor_at(src, t), " is a scale but \"", weight,
          "\" is ",
          w ? str_cat("not F8_E4M3 (", dtype_name(w->dtype), ")") : std::string("absent"));
      continue;  // converted with its weight
    }
    if (t.dtype == DType::F8_E4M3) {
      const Fp8Weight w = fp8_weight(src, t);  // validates the pair now, not in a worker
      if (target == CheckpointDType::kFP8) {
        const Fp8ScaleShape ss = fp8_scale_shape(Fp8Tiling::k128x128, w.rows, w.cols);
        const size_t o = add_out(name, DType::F8_E4M3, t.shape);
        add_out(name + kScaleInvSuffix, DType::F32, {ss.rows, ss.cols});
        jobs.push_back({Job::kKeepFp8, &t, DType::F8_E4M3, o});
      } else {
        const DType d = float_target(target, name);
        jobs.push_back({Job::kCast, &t, d, add_out(name, d, t.shape)});
      }
      continue;
    }
    if (!dtype_is_float(t.dtype)) {
      SEEKR_REQUIRE(
          t.dtype != DType::F8_E5M2, tensor_at(src, t),
          " is F8_E5M2; checkpoints store FP8 weights as F8_E4M3 with a weight_scale_inv");
      jobs.push_back({Job::kKeep, &t, t.dtype, add_out(name, t.dtype, t.shape)});
      continue;
    }
    // A float tensor. A stray scale is refused here, before the workers run (read_tensor_f32
    // would refuse it too).
    SEEKR_REQUIRE(!src.find(name + kScaleInvSuffix), tensor_at(src, t), " is ", dtype_name(t.dtype),
                  " but has a \"", name, kScaleInvSuffix, "\"; only F8_E4M3 weights carry scales");
    if (target == CheckpointDType::kFP8) {
      if (is_fp8_linear_name(name) && t.shape.size() == 2) {
        const Fp8ScaleShape ss = fp8_scale_shape(
            Fp8Tiling::k128x128, checked_int(src, t, t.shape[0]), checked_int(src, t, t.shape[1]));
        const size_t o = add_out(name, DType::F8_E4M3, t.shape);
        add_out(name + kScaleInvSuffix, DType::F32, {ss.rows, ss.cols});
        jobs.push_back({Job::kQuantize, &t, DType::F8_E4M3, o});
      } else {
        jobs.push_back({Job::kKeep, &t, t.dtype, add_out(name, t.dtype, t.shape)});
      }
      continue;
    }
    const DType d = float_target(target, name);
    if (d == t.dtype)
      jobs.push_back({Job::kKeep, &t, d, add_out(name, d, t.shape)});
    else
      jobs.push_back({Job::kCast, &t, d, add_out(name, d, t.shape)});
  }
  return jobs;
}

std::string output_config(const std::string& text, const std::string& origin,
                          CheckpointDType target) {
  ojson j = parse_json(text, origin);
  if (target == CheckpointDType::kFP8) {
    if (!j.contains(kQuantField) || j[kQuantField].is_null())
      j[kQuantField] = ojson::parse(fp8_quantization_config_json());
  } else {
    j.erase(kQuantField);
    j["torch_dtype"] = target == CheckpointDType::kF32    ? "float32"
                       : target == CheckpointDType::kBF16 ? "bfloat16"
                                                          : "float16";
  }
  return j.dump(2) + "\n";
}

void sync_dir(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd < 0) return;
  ::fsync(fd);
  ::close(fd);
}

// Files that are not tensors or config: carried over when small.
std::vector<fs::path> side_files(const std::string& dir) {
  std::vector<fs::path> out;
  for (const fs::directory_entry& e : fs::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (!e.is_regular_file() || name == "config.json" || name == "trainer_state.json" ||
        name.ends_with(".safetensors") || name.ends_with(".safetensors.index.json") ||
        name.find(".tmp.") != std::string::npos || e.file_size() > kMaxCopiedFile)
      continue;
    out.push_back(e.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

ConvertResult convert_checkpoint(const std::string& in, const std::string& out,
                                 const ConvertOptions& opt) {
  SEEKR_REQUIRE(is_directory(in), in, ": not a checkpoint directory (expected config.json and ",
                "model.safetensors or shards with model.safetensors.index.json)");
  const std::string config_path = (fs::path(in) / "config.json").string();
  SEEKR_REQUIRE(file_exists(config_path), in, ": has no config.json");
  const fs::path target = fs::path(out).lexically_normal();
  SEEKR_REQUIRE(!out.empty() && target.filename() != "", "invalid output directory \"", out, "\"");
  if (fs::exists(target)) {
    SEEKR_REQUIRE(fs::is_directory(target) && fs::is_empty(target), out,
                  " already exists and is not an empty directory; convert writes a new one");
  }

  const std::string config_text = read_file(config_path);
  const ModelConfig config = ModelConfig::from_json_text(config_text, config_path);
  parse_quantization_config(config_text, config_path);
  const TensorSource src = TensorSource::open(in);

  ConvertResult r;
  r.in = tensor_stats(src);
  check_layout(src, config, config_path, &r.unknown);
  std::vector<OutTensor> outs;
  const std::vector<Job> jobs = plan(src, opt.dtype, outs);

  std::atomic<size_t> next{0};
  run_workers(std::max(1, opt.threads), [&](int) {
    for (size_t i = next++; i < jobs.size(); i = next++) run_job(src, jobs[i], outs);
  });
  for (const Job& j : jobs) {
    r.quantized += j.kind == Job::kQuantize;
    r.passed_through += j.kind == Job::kKeep || j.kind == Job::kKeepFp8;
  }

  SafetensorsWriter writer;
  for (const OutTensor& o : outs) {
    writer.add(o.name, o.dtype, o.shape, o.data, o.nbytes);
    ++r.out.tensors;
    r.out.bytes += o.nbytes;
    ++r.out.by_dtype[dtype_name(o.dtype)];
  }
  writer.set_metadata("format", "pt");

  // Built under a temporary sibling, then renamed into place: `out` is complete or absent.
  const fs::path parent = target.has_parent_path() ? target.parent_path() : fs::path(".");
  make_dirs(parent.string());
  std::string tmpl = target.string() + ".tmp-XXXXXX";
  SEEKR_REQUIRE(::mkdtemp(tmpl.data()), "cannot create a temporary directory next to ", out, ": ",
                std::strerror(errno));
  const std::string tmp = tmpl;
  ::chmod(tmp.c_str(), 0755);  // mkdtemp makes it private; a model directory is shared
  try {
    if (opt.shard_bytes > 0)
      r.shards = writer.write_sharded(tmp, opt.shard_bytes);
    else
      writer.write((fs::path(tmp) / "model.safetensors").string());
    for (const fs::path& f : side_files(in)) {
      write_file_atomic((fs::path(tmp) / f.filename()).string(), read_file(f.string()));
      r.copied_files.push_back(f.filename().string());
    }
    write_file_atomic((fs::path(tmp) / "config.json").string(),
                      output_config(config_text, config_path, opt.dtype));
    sync_dir(tmp);
    // rename(2) replaces an empty directory and fails on anything else.
    SEEKR_REQUIRE(::rename(tmp.c_str(), target.c_str()) == 0, "cannot rename ", tmp, " to ", out,
                  ": ", std::strerror(errno));
    sync_dir(parent.string());
  } catch (...) {
    std::error_code ec;
    fs::remove_all(tmp, ec);
    throw;
  }
  return r;
}

}  // namespace seekr
