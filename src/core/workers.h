// Coarse data parallelism on this machine's few cores: W workers, each running whole
// single-threaded jobs (a share of the prompts, a share of the micro-batches), synchronised once
// at the end. A barrier per kernel costs milliseconds on this VM and an OpenMP pool spinning
// against OpenBLAS's fights it for the cores; one join per batch of work does neither.
#pragma once

#include <cblas.h>
#include <omp.h>

#include <exception>
#include <vector>

namespace seekr {

// Runs fn(0) .. fn(W - 1) on up to W OpenMP threads (all on this thread when W <= 1). BLAS is
// single-threaded meanwhile, and OpenMP regions inside fn run on their worker's thread alone
// (nested parallelism is off by default). The first worker exception is rethrown here, after
// every worker has finished.
template <class Fn>
void run_workers(int W, Fn&& fn) {
  if (W <= 1) {
    fn(0);
    return;
  }
  const int saved_blas = openblas_get_num_threads();
  openblas_set_num_threads(1);
  std::vector<std::exception_ptr> errors(static_cast<size_t>(W));
#pragma omp parallel num_threads(W)
  {
    // A runtime may grant fewer threads than asked: every worker index still runs.
    for (int w = omp_get_thread_num(); w < W; w += omp_get_num_threads()) {
      try {
        fn(w);
      } catch (...) {
        errors[static_cast<size_t>(w)] = std::current_exception();
      }
    }
  }
  openblas_set_num_threads(saved_blas);
  for (const std::exception_ptr& e : errors)
    if (e) std::rethrow_exception(e);
}

}  // namespace seekr
