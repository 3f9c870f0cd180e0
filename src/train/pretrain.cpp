#include "train/pretrain.h"

#include <cblas.h>
#include <glob.h>
#include <omp.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <sstream>

#include "core/check.h"
#include "core/file_io.h"
#include "core/rng.h"
#include "kernels/ops.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"
#include "train/checkpoint.h"
#include "train/data.h"
#include "train/metrics.h"

namespace seekr {

// ---- Trainer -------------------------------------------------------------------------------

Trainer::Trainer(Model& model, const TrainHyper& hp)
    : model_(model),
      hp_(hp),
      optimizer_(param_segments(model.layout()), model.params().size(), hp.adamw),
      graph_(std::make_unique<TrainGraph>(model)) {}

Trainer::~Trainer() = default;

StepResult Trainer::step(std::span<const int32_t* const> micro, int B, int T, double lr) {
  StepResult r;
  step(micro, B, T, lr, r);
  return r;
}

void Trainer::step(std::span<const int32_t* const> micro, int B, int T, double lr,
                   StepResult& r) {
  const ModelConfig& c = model_.config();
  const int A = static_cast<int>(micro.size());
  const int N = B * T, V = c.vocab_size, D = c.num_nextn_predict_layers;
  const int layers = c.num_hidden_layers + D;
  SEEKR_CHECK(A > 0 && B > 0 && T > D);
  // With λ = 0 the MTP modules would only cost time; their parameters then get no gradient.
  const bool run_mtp = D > 0 && hp_.mtp_lambda > 0;
  TrainOptions topt;
  // The graph adds the balance-loss gradient unscaled, so accumulation scales α instead.
  topt.balance_alpha = static_cast<float>(hp_.balance_alpha / A);
  topt.mtp = run_mtp;
  topt.precision = hp_.precision;

  r.loss = r.ce = r.mtp = r.balance = r.grad_norm = 0;
  r.load.resize(layers);
  for (int l = 0; l < layers; ++l)
    r.load[l].assign(c.is_moe_layer(l) ? c.n_routed_experts : 0, 0);  // keeps its capacity

  model_.zero_grads();
  inputs_.resize(N);
  targets_.resize(N);
  dmtp_.assign(D, nullptr);
  std::vector<float*>& dmtp = dmtp_;
  for (int a = 0; a < A; ++a) {
    const int32_t* tok = micro[a];  // [B, T+1]
    for (int b = 0; b < B; ++b)
      for (int i = 0; i < T; ++i) {
        inputs_[size_t(b) * T + i] = tok[size_t(b) * (T + 1) + i];
        targets_[size_t(b) * T + i] = tok[size_t(b) * (T + 1) + i + 1];
      }
    graph_->forward(inputs_.data(), B, T, topt);

    // Main CE: mean over the N targets; its gradient also carries the 1/A of accumulation.
    float* logits = graph_->logits();
    r.ce += cross_entropy_forward_backward(logits, targets_.data(), logits, N, V,
                                           static_cast<float>(1.0 / (double(N) * A))) /
            N;
    if (run_mtp) {
      const double w = hp_.mtp_lambda / D;
      for (int k = 1; k <= D; ++k) {
        const int Tk = T - k, rows = B * Tk;
        SEEKR_CHECK(graph_->mtp_rows(k) == rows);
        mtp_targets_.resize(rows);
        for (int b = 0; b < B; ++b)
          for (int i = 0; i < Tk; ++i)
            mtp_targets_[size_t(b) * Tk + i] = tok[size_t(b) * (T + 1) + i + k + 1];
        float* lk = graph_->mtp_logits(k);
        const double ce_k =
            cross_entropy_forward_backward(lk, mtp_targets_.data(), lk, rows, V,
                                           static_cast<float>(w / (double(rows) * A))) /
            rows;
        r.mtp += w * ce_k;
        dmtp[k - 1] = lk;
      }
    }
    r.balance += graph_->balance_loss();  // already times α/A
    const auto& load = graph_->expert_load();
    for (int l = 0; l < layers && l < static_cast<int>(load.size()); ++l)
      for (size_t e = 0; e < load[l].size() && e < r.load[l].size(); ++e)
        r.load[l][e] += load[l][e];

    graph_->backward(logits, dmtp);
  }
  r.ce /= A;
  r.mtp /= A;
  r.loss = r.ce + r.mtp + r.balance;

  std::vector<float>& grads = model_.grads();
  r.grad_norm = hp_.clip > 0 ? clip_grad_norm(grads.data(), grads.size(), hp_.clip)
                             : std::sqrt(sum_of_squares(grads.data(), grads.size()));
  SEEKR_REQUIRE(std::isfinite(r.grad_norm) && std::isfinite(r.loss), "training diverged: loss ",
                r.loss, ", gradient norm ", r.grad_norm, " at optimizer step ",
                optimizer_.steps() + 1, " (the last checkpoint is intact; try a lower --lr)");
  optimizer_.step(model_.params().data(), grads.data(), lr);
  if (hp_.bias_gamma > 0) model_.update_correction_bias(r.load, static_cast<float>(hp_.bias_gamma));
}

double Trainer::eval_ce(const int32_t* tokens, int B, int T) {
  const int N = B * T;
  inputs_.resize(N);
  targets_.resize(N);
  for (int b = 0; b < B; ++b)
    for (int i = 0; i < T; ++i) {
      inputs_[size_t(b) * T + i] = tokens[size_t(b) * (T + 1) + i];
      targets_[size_t(b) * T + i] = tokens[size_t(b) * (T + 1) + i + 1];
    }
  TrainOptions topt;
  topt.balance_alpha = 0.0f;
  topt.mtp = false;
  graph_->forward(inputs_.data(), B, T, topt);
  float* logits = graph_->logits();
  return cross_entropy_forward_backward(logits, targets_.data(), logits, N,
                                        model_.config().vocab_size, 0.0f) /
         N;
}

// ---- options -------------------------------------------------------------------------------

nlohmann::json PretrainOptions::to_json() const {
  return {{"config", config_path},
          {"tokenizer", tokenizer_path},
          {"data", train_shards},
          {"valid", valid_shards},
          {"out", out_dir},
          {"resume", resume_dir},
          {"steps", steps},
          {"batch", batch},
          {"seq", seq},
          {"accum", accum},
          {"schedule", schedule.to_json()},
          {"weight_decay", hyper.adamw.weight_decay},
          {"beta1", hyper.adamw.beta1},
          {"beta2", hyper.adamw.beta2},
          {"eps", hyper.adamw.eps},
          {"bf16_moments", hyper.adamw.bf16_moments},
          {"precision", precision_name(hyper.precision)},
          {"clip", hyper.clip},
          {"mtp_lambda", hyper.mtp_lambda},
          {"balance_alpha", hyper.balance_alpha},
          {"bias_gamma", hyper.bias_gamma},
          {"seed", seed},
          {"shuffle", shuffle},
          {"append_eos", append_eos},
          {"save_every", save_every},
          {"eval_every", eval_every},
          {"eval_batches", eval_batches},
          {"threads", threads},
          {"peak_gflops", peak_gflops}};
}

void PretrainOptions::validate() const {
  SEEKR_REQUIRE(!config_path.empty() || !resume_dir.empty(),
                "missing --config (or --resume a checkpoint)");
  SEEKR_REQUIRE(!train_shards.empty(), "missing --data: no training shards");
  SEEKR_REQUIRE(!out_dir.empty(), "missing --out");
  SEEKR_REQUIRE(steps >= 1, "--steps must be at least 1; got ", steps);
  SEEKR_REQUIRE(batch >= 1, "--batch must be at least 1; got ", batch);
  SEEKR_REQUIRE(seq >= 2, "--seq must be at least 2; got ", seq);
  SEEKR_REQUIRE(accum >= 1, "--accum must be at least 1; got ", accum);
  SEEKR_REQUIRE(hyper.adamw.weight_decay >= 0, "--weight-decay must be >= 0");
  SEEKR_REQUIRE(hyper.adamw.beta1 >= 0 && hyper.adamw.beta1 < 1 && hyper.adamw.beta2 >= 0 &&
                    hyper.adamw.beta2 < 1,
                "--beta1 and --beta2 must lie in [0, 1)");
  SEEKR_REQUIRE(hyper.adamw.eps > 0, "--eps must be positive");
  SEEKR_REQUIRE(hyper.mtp_lambda >= 0, "--mtp-lambda must be >= 0");
  SEEKR_REQUIRE(hyper.balance_alpha >= 0, "--balance-alpha must be >= 0");
  SEEKR_REQUIRE(hyper.bias_gamma >= 0, "--bias-gamma must be >= 0");
  SEEKR_REQUIRE(save_every >= 0 && eval_every >= 0, "--save-every and --eval-every must be >= 0");
  SEEKR_REQUIRE(eval_batches >= 1, "--eval-batches must be at least 1");
  SEEKR_REQUIRE(stop_at >= 0, "--stop-at must be >= 0");
  SEEKR_REQUIRE(threads >= 0, "--threads must be >= 0");
  SEEKR_REQUIRE(peak_gflops >= 0, "--peak-gflops must be >= 0");
  SEEKR_REQUIRE(log_every >= 1, "--log-every must be at least 1");
  LrSchedule s = schedule;
  s.total_steps = steps;
  s.validate();
}

namespace {
std::vector<std::string> expand_glob_or_empty(const std::string& pattern) {
  std::vector<std::string> out;
  glob_t g{};
  if (::glob(pattern.c_str(), 0, nullptr, &g) == 0)
    for (size_t i = 0; i < g.gl_pathc; ++i) out.emplace_back(g.gl_pathv[i]);
  globfree(&g);
  return out;
}
}  // namespace

std::vector<std::string> expand_glob(const std::string& pattern) {
  std::vector<std::string> out;
  std::stringstream parts(pattern);
  std::string part;
  while (std::getline(parts, part, ',')) {
    if (part.empty()) continue;
    const auto found = expand_glob_or_empty(part);
    SEEKR_REQUIRE(!found.empty(), "no file matches '", part, "'");
    out.insert(out.end(), found.begin(), found.end());
  }
  SEEKR_REQUIRE(!out.empty(), "no file matches '", pattern, "'");
  return out;
}

// ---- the run -------------------------------------------------------------------------------

namespace {

std::atomic<bool> g_interrupted{false};

extern "C" void on_interrupt(int) {
  g_interrupted.store(true);
  std::signal(SIGINT, SIG_DFL);  // a second Ctrl-C kills at once
}

// Installs the SIGINT handler for the run's lifetime: training stops after the current step
// and saves a checkpoint.
class InterruptGuard {
 public:
  InterruptGuard() {
    g_interrupted.store(false);
    previous_ = std::signal(SIGINT, on_interrupt);
  }
  ~InterruptGuard() { std::signal(SIGINT, previous_); }

 private:
  void (*previous_)(int);
};

}  // namespace

PretrainSummary run_pretrain(const PretrainOptions& opt) {
  opt.validate();
  if (opt.threads > 0) {
    omp_set_num_threads(opt.threads);
    openblas_set_num_threads(opt.threads);
  }
  const int threads = omp_get_max_threads();
  make_dirs(opt.out_dir);

  const bool resume = !opt.resume_dir.empty();
  const ModelConfig config =
      resume ? checkpoint_config(opt.resume_dir) : ModelConfig::from_file(opt.config_path);
  SEEKR_REQUIRE(opt.seq <= config.max_position_embeddings, "--seq ", opt.seq,
                " exceeds the model's max_position_embeddings ", config.max_position_embeddings);
  SEEKR_REQUIRE(opt.seq > config.num_nextn_predict_layers, "--seq ", opt.seq,
                " must exceed the number of MTP modules ", config.num_nextn_predict_layers);

  std::string tokenizer_path = opt.tokenizer_path;
  if (tokenizer_path.empty() && resume && file_exists(opt.resume_dir + "/tokenizer.json"))
    tokenizer_path = opt.resume_dir + "/tokenizer.json";
  if (!tokenizer_path.empty()) {
    const Tokenizer tok = Tokenizer::from_file(tokenizer_path);
    SEEKR_REQUIRE(tok.vocab_size() <= config.vocab_size, tokenizer_path, " has ", tok.vocab_size(),
                  " tokens but the model's vocab_size is ", config.vocab_size);
  }

  std::optional<int32_t> eos;
  if (opt.append_eos) {
    SEEKR_REQUIRE(config.eos_token_id >= 0, "--append-eos needs eos_token_id in the config");
    eos = config.eos_token_id;
  }
  DataLoader train(opt.train_shards, opt.batch, opt.seq, opt.seed, opt.shuffle, eos);
  SEEKR_REQUIRE(train.vocab_size() <= static_cast<uint64_t>(config.vocab_size),
                "the training shards hold ids up to ", train.vocab_size(),
                " but the model's vocab_size is ", config.vocab_size);
  std::unique_ptr<DataLoader> valid;
  std::string valid_start;
  if (!opt.valid_shards.empty()) {
    valid = std::make_unique<DataLoader>(opt.valid_shards, opt.batch, opt.seq, opt.seed,
                                         /*shuffle=*/false, eos);
    SEEKR_REQUIRE(valid->vocab_size() <= static_cast<uint64_t>(config.vocab_size),
                  "the validation shards hold ids beyond the model's vocab_size");
    valid_start = valid->state_json();
  }

  Model model(config);
  Trainer trainer(model, opt.hyper);
  TrainerState state;
  state.schedule = opt.schedule;
  state.schedule.total_steps = opt.steps;
  Rng rng(opt.seed);
  if (resume) {
    const TrainerState saved = load_checkpoint(opt.resume_dir, model, trainer.optimizer());
    state.step = saved.step;
    state.tokens_seen = saved.tokens_seen;
    train.load_state_json(saved.data_state);
    rng.set_state(saved.rng);
    SEEKR_REQUIRE(state.step < opt.steps, opt.resume_dir, " is at step ", state.step,
                  "; nothing to do for --steps ", opt.steps);
    SEEKR_REQUIRE(opt.stop_at == 0 || opt.stop_at > state.step, opt.resume_dir, " is at step ",
                  state.step, "; --stop-at ", opt.stop_at, " would train nothing");
  } else {
    model.init_weights(rng.next_u64());
  }

  const double flops_per_token = train_flops_per_token(config, opt.seq);
  const double peak_gflops =
      opt.peak_gflops > 0 ? opt.peak_gflops : kDefaultPeakGflopsPerThread * threads;
  const std::string ckpt_dir = opt.out_dir + "/checkpoint";
  // A run killed while saving leaves its half-written checkpoint.tmp-XXXXXX behind.
  for (const auto& stale : expand_glob_or_empty(ckpt_dir + ".tmp-*")) {
    std::error_code ec;
    std::filesystem::remove_all(stale, ec);
  }
  MetricsLog log(opt.out_dir + "/metrics.jsonl");
  log.append({{"type", "start"},
              {"step", state.step},
              {"resumed_from", opt.resume_dir},
              {"parameters", config.num_parameters()},
              {"flops_per_token", flops_per_token},
              {"peak_gflops", peak_gflops},
              {"threads", threads},
              {"options", opt.to_json()}});

  const bool tty = isatty(STDERR_FILENO);
  bool warned_plot = false;
  auto save = [&]() {
    state.data_state = train.state_json();
    state.rng = rng.state();
    state.options = opt.to_json();
    save_checkpoint(ckpt_dir, model, trainer.optimizer(), state, tokenizer_path);
    if (!opt.plot) return;
    std::string why;
    if (plot_metrics(log.path(), opt.out_dir + "/loss", &why).empty() && !warned_plot) {
      std::fprintf(stderr, "%swarning: no loss plot: %s\n", tty && opt.progress ? "\n" : "",
                   why.c_str());
      warned_plot = true;
    }
  };
  PretrainSummary summary;
  summary.first_step = state.step;
  summary.checkpoint_dir = ckpt_dir;
  auto evaluate = [&]() {
    valid->load_state_json(valid_start);
    std::vector<int32_t> tokens;
    double sum = 0;
    for (int i = 0; i < opt.eval_batches; ++i) {
      valid->next(tokens);
      sum += trainer.eval_ce(tokens.data(), opt.batch, opt.seq);
    }
    const double loss = sum / opt.eval_batches;
    summary.valid_losses.push_back(loss);
    log.append({{"type", "eval"}, {"step", state.step}, {"valid_loss", loss}});
    std::fprintf(stderr, "%sstep %lld  valid loss %.4f\n", tty && opt.progress ? "\n" : "",
                 static_cast<long long>(state.step), loss);
  };

  InterruptGuard guard;
  std::vector<std::vector<int32_t>> micro(opt.accum);
  std::vector<const int32_t*> ptrs(opt.accum);
  const int64_t tokens_per_step = int64_t(opt.batch) * opt.seq * opt.accum;
  const int64_t end = opt.stop_at > 0 ? std::min(opt.steps, opt.stop_at) : opt.steps;
  double later_steps_seconds = 0;
  int64_t timed = 0;
  while (state.step < end) {
    const auto t0 = std::chrono::steady_clock::now();
    for (int a = 0; a < opt.accum; ++a) {
      train.next(micro[a]);
      ptrs[a] = micro[a].data();
    }
    const double lr = state.schedule.lr(state.step);
    const StepResult r = trainer.step(ptrs, opt.batch, opt.seq, lr);
    ++state.step;
    state.tokens_seen += tokens_per_step;
    summary.losses.push_back(r.loss);
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    // The first step pays for allocations; the average leaves it out once there are others.
    if (timed++ > 0) later_steps_seconds += dt;
    const double avg_step = timed > 1 ? later_steps_seconds / double(timed - 1) : dt;

    const bool last = state.step == end;
    if (state.step % opt.log_every == 0 || last) {
      StepMetrics m;
      m.step = state.step;
      m.total_steps = opt.steps;
      m.tokens_seen = state.tokens_seen;
      m.loss = r.loss;
      m.ce = r.ce;
      m.mtp = r.mtp;
      m.balance = r.balance;
      m.lr = lr;
      m.grad_norm = r.grad_norm;
      m.step_seconds = dt;
      m.tokens_per_second = tokens_per_step / dt;
      m.mfu = m.tokens_per_second * flops_per_token / (peak_gflops * 1e9);
      m.eta_seconds = avg_step * static_cast<double>(opt.steps - state.step);
      m.balance_stats = max_violation(r.load);
      log.append(m.to_json());
      if (opt.progress) std::fprintf(stderr, tty ? "\r%s\x1b[K" : "%s\n", progress_line(m).c_str());
    }
    const bool interrupted = g_interrupted.load();
    if (valid && ((opt.eval_every > 0 && state.step % opt.eval_every == 0) ||
                  (last && state.step == opt.steps)))
      evaluate();
    if ((opt.save_every > 0 && state.step % opt.save_every == 0) || last || interrupted) save();
    if (interrupted) {
      std::fprintf(stderr, "\ninterrupted: checkpoint at step %lld saved to %s\n",
                   static_cast<long long>(state.step), ckpt_dir.c_str());
      break;
    }
  }
  if (opt.progress && tty) std::fprintf(stderr, "\n");
  summary.last_step = state.step;
  return summary;
}

}  // namespace seekr
