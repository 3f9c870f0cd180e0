// Scalar references for the fast kernels: the plainest loops that implement each formula, in
// double where sums are long. Slow on purpose; only tests call them.
#include <cmath>
#include <vector>

#include "core/check.h"
#include "kernels/ops.h"

namespace seekr::ref {

void gemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda,
          const float* B, int ldb, float beta, float* C, int ldc) {
  for (int i = 0; i < M; ++i) {
    for (int j = 0; j < N; ++j) {
      double acc = 0.0;
      for (int p = 0; p < K; ++p) {
        const float a =
            trans_a ? A[static_cast<int64_t>(p) * lda + i] : A[static_cast<int64_t>(i) * lda + p];
        const float b =
            trans_b ? B[static_cast<int64_t>(j) * ldb + p] : B[static_cast<int64_t>(p) * ldb + j];
        acc += static_cast<double>(a) * b;
      }
      float& c = C[static_cast<int64_t>(i) * ldc + j];
      c = static_cast<float>(alpha * acc + (beta == 0.0f ? 0.0 : static_cast<double>(beta) * c));
    }
  }
}

void matmul_xwt(const float* x, const float* w, float* y, int N, int in, int out, float beta) {
  for (int n = 0; n < N; ++n) {
    for (int o = 0; o < out; ++o) {
      double acc = 0.0;
      for (int i = 0; i < in; ++i) {
        acc += static_cast<double>(x[static_cast<int64_t>(n) * in + i]) *
               w[static_cast<int64_t>(o) * in + i];
      }
      float& yv = y[static_cast<int64_t>(n) * out + o];
      yv = static_cast<float>(acc + (beta == 0.0f ? 0.0 : static_cast<double>(beta) * yv));
    }
  }
}

void rmsnorm_forward(const float* x, const float* w, float* y, float* rstd, int N, int d,
                     float eps) {
  for (int n = 0; n < N; ++n) {
    const float* xr = x + static_cast<int64_t>(n) * d;
    double ss = 0.0;
    for (int j = 0; j < d; ++j) ss += static_cast<double>(xr[j]) * xr[j];
    const double r = 1.0 / std::sqrt(ss / d + eps);
    rstd[n] = static_cast<float>(r);
    for (int j = 0; j < d; ++j)
      y[static_cast<int64_t>(n) * d + j] = static_cast<float>(xr[j] * r * w[j]);
  }
}

void rmsnorm_backward(const float* dy, const float* x, const float* w, const float* rstd, float* dx,
                      float* dw, int N, int d, float beta) {
  for (int n = 0; n < N; ++n) {
    const int64_t off = static_cast<int64_t>(n) * d;
    const double r = rstd[n];
    double dot = 0.0;  // Σ dy·w·x
    for (int j = 0; j < d; ++j) dot += static_cast<double>(dy[off + j]) * w[j] * x[off + j];
    for (int j = 0; j < d; ++j) {
      const double g = dy[off + j] * w[j] * r - x[off + j] * r * r * r * dot / d;
      dx[off + j] = static_cast<float>(beta == 0.0f ? g : g + beta * dx[off + j]);
      dw[j] += static_cast<float>(dy[off + j] * x[off + j] * r);
    }
  }
}

void swiglu_forward(const float* g, const float* u, float* a, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const double sig = 1.0 / (1.0 + std::exp(-static_cast<double>(g[i])));
    a[i] = static_cast<float>(g[i] * sig * u[i]);
  }
}

void swiglu_backward(const float* da, const float* g, const float* u, float* dg, float* du,
                     int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const double sig = 1.0 / (1.0 + std::exp(-static_cast<double>(g[i])));
    dg[i] = static_cast<float>(da[i] * u[i] * (sig + g[i] * sig * (1.0 - sig)));
    du[i] = static_cast<float>(da[i] * g[i] * sig);
  }
}

void attention_forward(const AttentionShape& s, const float* q, const float* k, const float* v,
                       float* probs, float* out) {
  const int T = s.T;
  for (int b = 0; b < s.B; ++b) {
    for (int h = 0; h < s.H; ++h) {
      float* P = probs + (static_cast<int64_t>(b) * s.H + h) * T * T;
      for (int i = 0; i < T; ++i) {
        const float* qi = q + (static_cast<int64_t>(b) * T + i) * s.q_stride + h * s.dqk;
        std::vector<double> sc(i + 1);
        double mx = -INFINITY;
        for (int j = 0; j <= i; ++j) {
          const float* kj = k + (static_cast<int64_t>(b) * T + j) * s.k_stride + h * s.dqk;
          double d = 0.0;
          for (int c = 0; c < s.dqk; ++c) d += static_cast<double>(qi[c]) * kj[c];
          sc[j] = d * s.scale;
          mx = std::max(mx, sc[j]);
        }
        double sum = 0.0;
        for (int j = 0; j <= i; ++j) sum += (sc[j] = std::exp(sc[j] - mx));
        for (int j = 0; j < T; ++j) {
          P[static_cast<int64_t>(i) * T + j] = j <= i ? static_cast<float>(sc[j] / sum) : 0.0f;
        }
        float* oi = out + (static_cast<int64_t>(b) * T + i) * (s.H * s.dv) + h * s.dv;
        for (int c = 0; c < s.dv; ++c) {
          double acc = 0.0;
          for (int j = 0; j <= i; ++j) {
            acc += sc[j] / sum * v[(static_cast<int64_t>(b) * T + j) * s.v_stride + h * s.dv + c];
          }
          oi[c] = static_cast<float>(acc);
        }
      }
    }
  }
}

void attention_backward(const AttentionShape& s, const float* q, const float* k, const float* v,
                        const float* probs, const float* dout, float* dq, float* dk, float* dv) {
  const int T = s.T;
  const int64_t out_stride = static_cast<int64_t>(s.H) * s.dv;
  for (int b = 0; b < s.B; ++b) {
    for (int h = 0; h < s.H; ++h) {
      const float* P = probs + (static_cast<int64_t>(b) * s.H + h) * T * T;
      auto Q = [&](int t, int c) {
        return q[(static_cast<int64_t>(b) * T + t) * s.q_stride + h * s.dqk + c];
      };
      auto K = [&](int t, int c) {
        return k[(static_cast<int64_t>(b) * T + t) * s.k_stride + h * s.dqk + c];
      };
      auto Vv = [&](int t, int c) {
        return v[(static_cast<int64_t>(b) * T + t) * s.v_stride + h * s.dv + c];
      };
      auto dO = [&](int t, int c) {
        return dout[(static_cast<int64_t>(b) * T + t) * out_stride + h * s.dv + c];
      };
      std::vector<double> gq(static_cast<size_t>(T) * s.dqk, 0.0), gk(gq.size(), 0.0);
      std::vector<double> gv(static_cast<size_t>(T) * s.dv, 0.0);
      for (int i = 0; i < T; ++i) {
        std::vector<double> dp(i + 1);
        double rowdot = 0.0;
        for (int j = 0; j <= i; ++j) {
          const double p = P[static_cast<int64_t>(i) * T + j];
          double d = 0.0;
          for (int c = 0; c < s.dv; ++c) {
            d += static_cast<double>(dO(i, c)) * Vv(j, c);
            gv[static_cast<size_t>(j) * s.dv + c] += p * dO(i, c);
          }
          dp[j] = d;
          rowdot += p * d;
        }
        for (int j = 0; j <= i; ++j) {
          const double ds = P[static_cast<int64_t>(i) * T + j] * (dp[j] - rowdot) * s.scale;
          for (int c = 0; c < s.dqk; ++c) {
            gq[static_cast<size_t>(i) * s.dqk + c] += ds * K(j, c);
            gk[static_cast<size_t>(j) * s.dqk + c] += ds * Q(i, c);
          }
        }
      }
      for (int t = 0; t < T; ++t) {
        const int64_t row = static_cast<int64_t>(b) * T + t;
        for (int c = 0; c < s.dqk; ++c) {
          dq[row * s.q_stride + h * s.dqk + c] =
              static_cast<float>(gq[static_cast<size_t>(t) * s.dqk + c]);
          dk[row * s.k_stride + h * s.dqk + c] =
              static_cast<float>(gk[static_cast<size_t>(t) * s.dqk + c]);
        }
        for (int c = 0; c < s.dv; ++c) {
          dv[row * s.v_stride + h * s.dv + c] =
              static_cast<float>(gv[static_cast<size_t>(t) * s.dv + c]);
        }
      }
    }
  }
}

double cross_entropy_forward_backward(const float* logits, const int32_t* targets, float* dlogits,
                                      int N, int V, float scale) {
  double loss = 0.0;
  std::vector<double> row(V);
  for (int n = 0; n < N; ++n) {
    const int64_t off = static_cast<int64_t>(n) * V;
    const int32_t t = targets[n];
    if (t < 0) {
      for (int j = 0; j < V; ++j) dlogits[off + j] = 0.0f;
      continue;
    }
    SEEKR_CHECK(t < V, "target ", t, " out of range for vocab ", V);
    double mx = -INFINITY;
    for (int j = 0; j < V; ++j) mx = std::max(mx, static_cast<double>(row[j] = logits[off + j]));
    double sum = 0.0;
    for (int j = 0; j < V; ++j) sum += std::exp(row[j] - mx);
    const double lse = mx + std::log(sum);
    loss += lse - row[t];
    for (int j = 0; j < V; ++j) {
      dlogits[off + j] =
          static_cast<float>(scale * (std::exp(row[j] - lse) - (j == t ? 1.0 : 0.0)));
    }
  }
  return loss;
}

void log_prob_of_targets(const float* logits, const int32_t* targets, float* logp, int N, int V) {
  for (int n = 0; n < N; ++n) {
    const float* row = logits + static_cast<int64_t>(n) * V;
    const int32_t t = targets[n];
    if (t < 0) {
      logp[n] = 0.0f;
      continue;
    }
    SEEKR_CHECK(t < V, "target ", t, " out of range for vocab ", V);
    double mx = -INFINITY;
    for (int j = 0; j < V; ++j) mx = std::max(mx, static_cast<double>(row[j]));
    double sum = 0.0;
    for (int j = 0; j < V; ++j) sum += std::exp(row[j] - mx);
    logp[n] = static_cast<float>(row[t] - mx - std::log(sum));
  }
}

}  // namespace seekr::ref
