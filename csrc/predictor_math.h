// The attention freeze predictor's forward pass for one window, shared by the CPU kernel (one call
// per window, windows in parallel) and the CUDA kernel (one thread per window). It follows
// smartfrz/ops/predictor.py (attention_logits with dropout off) operation by operation, in float32, so
// the two agree up to the order of float sums. Scratch memory comes from the caller
// (predictor_scratch_floats), so no size is fixed at compile time.
#pragma once

#include <cmath>
#include <cstdint>

// Host and device code, always inlined: into each CPU clone (csrc/cpu/multiversion.h) and into the kernel.
#ifdef __CUDACC__
#define SMARTFRZ_HD __host__ __device__ __forceinline__
#else
#define SMARTFRZ_HD inline __attribute__((always_inline))
#endif

namespace smartfrz {

constexpr int64_t kTokenFeatures = 5;
constexpr int64_t kWindowFeatures = 9;
constexpr float kLogFloor = 1e-12f;
constexpr float kTiny = 1e-30f;
constexpr float kLayerNormEps = 1e-5f;

// Positions in the params list: smartfrz/ops/_schemas.py PREDICTOR_PARAMS, the only definition.
enum PredictorParam : int {
  kTokenMean,
  kTokenStd,
  kWindowMean,
  kWindowStd,
  kToken0W,
  kToken0B,
  kToken2W,
  kToken2B,
  kTime,
  kNormW,
  kNormB,
  kQW,
  kQB,
  kKW,
  kVW,
  kVB,
  kOutW,
  kOutB,
  kHead0W,
  kHead0B,
  kHead3W,
  kHead3B,
  kSkipW,
  kSkipB,
  kPredictorParams  // their number
};

struct PredictorParams {
  const float* p[kPredictorParams];
};

struct PredictorDims {
  int64_t w;            // snapshots per window
  int64_t d;            // embedding width
  int64_t hid;          // token width
  int64_t heads;        // attention heads (hid % heads == 0)
  int64_t head_hidden;  // width of the head MLP
  int64_t c;            // context columns
};

// Floats of scratch one window needs.
SMARTFRZ_HD int64_t predictor_scratch_floats(const PredictorDims& s) {
  const int64_t summary = kWindowFeatures + 2 * s.c;
  return 2 * s.w * s.d + 8 * s.w + s.w * kTokenFeatures + s.w * s.hid + s.hid + 2 * s.heads * s.hid + s.heads * s.w +
         3 * s.hid + summary + 2 * s.hid + summary + s.head_hidden;
}

SMARTFRZ_HD float clamp(float x, float lo, float hi) { return fminf(fmaxf(x, lo), hi); }

SMARTFRZ_HD float log_ratio(float num, float den) { return logf(fmaxf(num / (den + kTiny), kLogFloor)) / 10.0f; }

// a . b over n floats, in kDotLanes independent partial sums (a fixed order, so the compiler may
// vectorise the lanes without reassociating anything) added up at the end, then the tail.
constexpr int kDotLanes = 8;
SMARTFRZ_HD float dot(const float* a, const float* b, int64_t n) {
  float lane[kDotLanes] = {};
  int64_t i = 0;
  for (; i + kDotLanes <= n; i += kDotLanes) {
    for (int l = 0; l < kDotLanes; ++l) lane[l] += a[i + l] * b[i + l];
  }
  float acc = 0.0f;
  for (int l = 0; l < kDotLanes; ++l) acc += lane[l];
  for (; i < n; ++i) acc += a[i] * b[i];
  return acc;
}

// y[o] = b[o] + sum_i W[o, i] x[i] for W [out, in] row-major (torch's Linear layout).
SMARTFRZ_HD void linear(const float* w, const float* b, const float* x, int64_t in, int64_t out, float* y) {
  for (int64_t o = 0; o < out; ++o) y[o] = dot(w + o * in, x, in) + b[o];
}

// Scale-free tokens [W, 5] and window features [9] of one window (model docs: window_features).
// emb [W, D]; valid [W] is a suffix of true values.
SMARTFRZ_HD void window_features_one(const float* emb, const bool* valid, const PredictorDims& s, float* scratch,
                                     float* tokens, float* feats) {
  const int64_t w = s.w, d = s.d, m = w - 1;
  int64_t n_valid = 0;
  for (int64_t t = 0; t < w; ++t) n_valid += valid[t] ? 1 : 0;
  const int64_t first = w - n_valid;  // padded positions read the earliest real snapshot
  const float* latest = emb + (w - 1) * d;
  float* moves = scratch;  // [W-1 (+1 spare), D] step vectors e_{t+1} - e_t, padded positions filled
  float* dist = moves + w * d;
  float* step = dist + w;
  float* okf = step + w;
  float* consec = okf + w;
  float* log_step = consec + w;
  float* pos_c = log_step + w;
  float* along = pos_c + w;
  float* rank = along + w;
  float* diff = rank + w;  // [W, D] e_t - e_latest, padded positions filled
  const float ref = sqrtf(dot(latest, latest, d));
  for (int64_t a = 0; a < w; ++a) {
    const float* ea = emb + (valid[a] ? a : first) * d;
    for (int64_t k = 0; k < d; ++k) diff[a * d + k] = ea[k] - latest[k];
    if (a + 1 < w) {
      const float* next = emb + (valid[a + 1] ? a + 1 : first) * d;
      for (int64_t k = 0; k < d; ++k) moves[a * d + k] = next[k] - ea[k];
    }
  }
  float n_steps = 0.0f;
  for (int64_t t = 0; t < m; ++t) {
    dist[t] = sqrtf(dot(diff + t * d, diff + t * d, d));
    step[t] = sqrtf(dot(moves + t * d, moves + t * d, d));
    okf[t] = valid[t] ? 1.0f : 0.0f;
    n_steps += okf[t];
  }
  const float count = fmaxf(n_steps, 1.0f);
  float spread = 0.0f, mean_step = 0.0f, step_sum = 0.0f;
  for (int64_t t = 0; t < m; ++t) {
    spread += dist[t] * dist[t] * okf[t];
    mean_step += step[t] * okf[t];
  }
  step_sum = mean_step;
  spread = sqrtf(spread / count);
  mean_step /= count;
  const float net = dist[0];
  float consec_sum = 0.0f, consec_n = 0.0f;
  consec[0] = 0.0f;
  for (int64_t j = 0; j + 1 < m; ++j) {  // consecutive-step cosine at t = j + 2 (real when snapshot j is)
    const float cos = dot(moves + (j + 1) * d, moves + j * d, d) / (step[j + 1] * step[j] + kTiny);
    consec[j + 1] = valid[j] ? clamp(cos, -1.0f, 1.0f) : 0.0f;
    consec_sum += consec[j + 1];
    consec_n += valid[j] ? 1.0f : 0.0f;
  }
  float pos_mean = 0.0f, mean_log = 0.0f;
  for (int64_t t = 0; t < m; ++t) {
    along[t] = -dot(moves + t * d, diff, d);  // step . (e_latest - e_first)
    log_step[t] = log_ratio(step[t], ref);
    pos_mean += static_cast<float>(t) * okf[t];
    mean_log += log_step[t] * okf[t];
  }
  pos_mean /= count;
  mean_log /= count;
  float pos_var = 0.0f, log_var = 0.0f;
  for (int64_t t = 0; t < m; ++t) {
    pos_c[t] = (static_cast<float>(t) - pos_mean) * okf[t];
    pos_var += pos_c[t] * pos_c[t] * okf[t];
    const float dl = log_step[t] - mean_log;
    log_var += dl * dl * okf[t];
  }
  const float pos_std = fmaxf(sqrtf(pos_var / count), kTiny);
  const float fifth = fmaxf(floorf(n_steps / 5.0f), 1.0f);
  float trend = 0.0f, late_sum = 0.0f, late_n = 0.0f, early_sum = 0.0f, early_n = 0.0f, cum = 0.0f;
  for (int64_t t = 0; t < m; ++t) {
    cum += okf[t];
    rank[t] = cum;
    trend += log_step[t] * pos_c[t] / pos_std * okf[t];
    const float early = okf[t] * (rank[t] <= fifth ? 1.0f : 0.0f);
    const float late = okf[t] * (rank[t] > n_steps - fifth ? 1.0f : 0.0f);
    early_sum += log_step[t] * early;
    early_n += early;
    late_sum += log_step[t] * late;
    late_n += late;
  }
  for (int64_t t = 0; t < w * kTokenFeatures; ++t) tokens[t] = 0.0f;
  for (int64_t t = 0; t < m; ++t) {
    if (!valid[t]) continue;  // the step into t + 1 is padding
    tokens[t * kTokenFeatures] = dist[t] / (spread + kTiny);
    float* next = tokens + (t + 1) * kTokenFeatures;
    next[1] = step[t] / (mean_step + kTiny);
    next[2] = log_step[t];
    next[3] = consec[t];
    next[4] = clamp(along[t] / (step[t] * net + kTiny), -1.0f, 1.0f);
  }
  feats[0] = log_ratio(spread, ref);
  feats[1] = log_ratio(mean_step, ref);
  feats[2] = clamp(net / (step_sum + kTiny), 0.0f, 1.0f);  // path efficiency
  feats[3] = consec_sum / fmaxf(consec_n, 1.0f);
  feats[4] = trend / count;
  feats[5] = sqrtf(log_var / count);
  feats[6] = log_step[m - 1];
  feats[7] = late_sum / fmaxf(late_n, 1.0f) - early_sum / fmaxf(early_n, 1.0f);
  feats[8] = static_cast<float>(n_valid) / static_cast<float>(w);
}

// The logit of one window: emb [W, D], valid [W] (a suffix of true), ctx [C] (NaN = unknown).
SMARTFRZ_HD float predictor_logit_one(const float* emb, const bool* valid, const float* ctx,
                                      const PredictorParams& params, const PredictorDims& s, float* scratch) {
  const float* const* p = params.p;
  const int64_t w = s.w, hid = s.hid, heads = s.heads, dh = hid / heads;
  const int64_t summary_n = kWindowFeatures + 2 * s.c;
  float* feature_scratch = scratch;
  float* tokens = feature_scratch + 2 * w * s.d + 8 * w;  // [W, 5]
  float* h = tokens + w * kTokenFeatures;           // [W, H]
  float* hidden = h + w * hid;                      // [H]
  float* qk = hidden + hid;                         // [heads, H]
  float* pooled = qk + heads * hid;                 // [heads, H]
  float* scores = pooled + heads * hid;             // [heads, W]
  float* q = scores + heads * w;                    // [H]
  float* attended = q + hid;                        // [H]
  float* out = attended + hid;                      // [H]
  float* summary = out + hid;                       // [9 + 2C]
  float* head_in = summary + summary_n;             // [2H + 9 + 2C]
  float* z = head_in + 2 * hid + summary_n;         // [head_hidden]

  window_features_one(emb, valid, s, feature_scratch, tokens, summary);
  for (int64_t f = 0; f < kWindowFeatures; ++f) summary[f] = (summary[f] - p[kWindowMean][f]) / p[kWindowStd][f];
  for (int64_t c = 0; c < s.c; ++c) {
    const bool unknown = ctx[c] != ctx[c];  // NaN (no -ffast-math here)
    summary[kWindowFeatures + c] = unknown ? 0.0f : ctx[c];
    summary[kWindowFeatures + s.c + c] = unknown ? 1.0f : 0.0f;
  }
  for (int64_t t = 0; t < w; ++t) {
    float* tok = tokens + t * kTokenFeatures;
    for (int64_t f = 0; f < kTokenFeatures; ++f) tok[f] = (tok[f] - p[kTokenMean][f]) / p[kTokenStd][f];
    linear(p[kToken0W], p[kToken0B], tok, kTokenFeatures, hid, hidden);
    for (int64_t j = 0; j < hid; ++j) hidden[j] = fmaxf(hidden[j], 0.0f);
    float* ht = h + t * hid;
    linear(p[kToken2W], p[kToken2B], hidden, hid, hid, ht);
    float mean = 0.0f;
    for (int64_t j = 0; j < hid; ++j) {
      ht[j] += p[kTime][t * hid + j];
      mean += ht[j];
    }
    mean /= static_cast<float>(hid);
    float var = 0.0f;
    for (int64_t j = 0; j < hid; ++j) var += (ht[j] - mean) * (ht[j] - mean);
    const float inv = 1.0f / sqrtf(var / static_cast<float>(hid) + kLayerNormEps);
    for (int64_t j = 0; j < hid; ++j) ht[j] = (ht[j] - mean) * inv * p[kNormW][j] + p[kNormB][j];
  }
  const float* latest = h + (w - 1) * hid;
  linear(p[kQW], p[kQB], latest, hid, hid, q);
  const float scale = 1.0f / sqrtf(static_cast<float>(dh));
  for (int64_t i = 0; i < heads; ++i) {
    // the key projection folded into the query: qk_i = Wk_i^T q_i, so score_iw = qk_i . h_w
    for (int64_t j = 0; j < hid; ++j) {
      float acc = 0.0f;
      for (int64_t a = 0; a < dh; ++a) acc += q[i * dh + a] * p[kKW][(i * dh + a) * hid + j];
      qk[i * hid + j] = acc;
    }
    float top = -INFINITY;
    for (int64_t t = 0; t < w; ++t) {
      scores[i * w + t] = valid[t] ? dot(qk + i * hid, h + t * hid, hid) * scale : -INFINITY;
      top = fmaxf(top, scores[i * w + t]);
    }
    float total = 0.0f;
    for (int64_t t = 0; t < w; ++t) {
      scores[i * w + t] = valid[t] ? expf(scores[i * w + t] - top) : 0.0f;
      total += scores[i * w + t];
    }
    for (int64_t j = 0; j < hid; ++j) {
      float acc = 0.0f;
      for (int64_t t = 0; t < w; ++t) acc += scores[i * w + t] / total * h[t * hid + j];
      pooled[i * hid + j] = acc;
    }
    // the value projection after pooling: head i's slice of V h, averaged = Wv_i pooled_i
    for (int64_t a = 0; a < dh; ++a) {
      attended[i * dh + a] = dot(pooled + i * hid, p[kVW] + (i * dh + a) * hid, hid) + p[kVB][i * dh + a];
    }
  }
  linear(p[kOutW], p[kOutB], attended, hid, hid, out);
  for (int64_t j = 0; j < hid; ++j) {
    head_in[j] = out[j];
    head_in[hid + j] = latest[j];
  }
  for (int64_t f = 0; f < summary_n; ++f) head_in[2 * hid + f] = summary[f];
  linear(p[kHead0W], p[kHead0B], head_in, 2 * hid + summary_n, s.head_hidden, z);
  float logit = p[kHead3B][0] + p[kSkipB][0];
  for (int64_t j = 0; j < s.head_hidden; ++j) {
    const float gelu = 0.5f * z[j] * (1.0f + erff(z[j] * 0.70710678118654752f));
    logit += p[kHead3W][j] * gelu;
  }
  return logit + dot(p[kSkipW], summary, summary_n);
}

}  // namespace smartfrz
