// A fixed run of InferenceSession decode steps whose outputs tests compare across thread counts
// (the fast decode path must give the same bits at any count).
#pragma once

#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <vector>

#include "model/model.h"

namespace seekr {

// At `threads` OpenMP threads (restored afterwards): prefills `prompt` into slot 0 of a 3-slot
// session, then runs 6 steps of 1, 2, 3, 1, 2, 3 rows over slots 0-2 (slots 1 and 2 start
// empty), each followed by the MTP module over the same rows. Returns every step's logits,
// hidden states and MTP logits, concatenated.
inline std::vector<float> decode_trace(const Model& model, const std::vector<int32_t>& prompt,
                                       int threads) {
  const int V = model.config().vocab_size, d = model.config().hidden_size;
  const int saved = omp_get_max_threads();
  omp_set_num_threads(threads);
  InferenceSession s(model, 3, 32);
  std::vector<float> out, logits(size_t(3) * V), hidden(size_t(3) * d), mtp(size_t(3) * V);
  std::vector<int32_t> slots(prompt.size(), 0), pos(prompt.size());
  std::iota(pos.begin(), pos.end(), 0);
  s.forward(prompt.data(), slots.data(), pos.data(), int(prompt.size()), nullptr,
            std::vector<uint8_t>(prompt.size(), 0).data());
  int32_t tok = 7;
  for (int step = 0; step < 6; ++step) {
    const int n = 1 + step % 3;
    std::vector<int32_t> toks, sl, ps, next, mpos;
    for (int i = 0; i < n; ++i) {
      toks.push_back((tok + 5 * i) % V);
      sl.push_back(i);
      ps.push_back(s.length(i));
      next.push_back((tok + 5 * i + 1) % V);
      // Only rows whose MTP position follows on from the slot's MTP cache can join it.
      mpos.push_back(s.mtp_length(i));
    }
    s.forward(toks.data(), sl.data(), ps.data(), n, logits.data(), nullptr, hidden.data());
    s.mtp_forward(hidden.data(), next.data(), sl.data(), mpos.data(), n, mtp.data());
    out.insert(out.end(), logits.begin(), logits.begin() + size_t(n) * V);
    out.insert(out.end(), hidden.begin(), hidden.begin() + size_t(n) * d);
    out.insert(out.end(), mtp.begin(), mtp.begin() + size_t(n) * V);
    tok =
        static_cast<int32_t>(std::max_element(logits.begin(), logits.begin() + V) - logits.begin());
  }
  omp_set_num_threads(saved);
  return out;
}

}  // namespace seekr
