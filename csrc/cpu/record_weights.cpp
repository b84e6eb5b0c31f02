// CPU kernel of smartfrz::record_weights: sample K weights per layer and compute per-layer
// statistics for a whole list of tensors in one call. Work is split into fixed-size chunks over
// all layers (as the CUDA kernel does); chunk partials are combined per layer in chunk order, so
// the result does not depend on the number of threads.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <tuple>
#include <type_traits>

#include "../common.h"
#include "multiversion.h"

namespace smartfrz {
namespace {

constexpr int64_t kChunk = 1 << 15;

struct Chunk {
  int64_t layer;
  int64_t start;
  int64_t end;
};

struct Partial {
  double sumsq = 0.0;
  int64_t nonfinite = 0;
  double max_abs = 0.0;
};

constexpr int kLanes = 16;  // independent accumulators: the loops pipeline and vectorise, in a fixed order
constexpr int64_t kBlock = 64 * kLanes;  // elements summed in the weight's precision before a double flush

// Exact pass: double accumulation with a finiteness test per element. Used when the fast pass sees a
// non-finite value (or an overflow), so counting non-finite weights costs nothing in the common case.
template <typename scalar_t>
Partial reduce_chunk_exact(const scalar_t* p, int64_t len) {
  Partial out;
  for (int64_t i = 0; i < len; ++i) {
    const double v = static_cast<double>(p[i]);
    const bool finite = std::isfinite(v);
    out.sumsq += v * v;
    out.nonfinite += finite ? 0 : 1;
    const double a = finite ? std::abs(v) : 0.0;
    out.max_abs = a > out.max_abs ? a : out.max_abs;
  }
  return out;
}

// |v| as an integer whose order is that of |v| for every non-NaN v (the IEEE bits without the sign),
// so the running maximum is an integer max, which vectorises where a float max with NaN rules does not.
template <typename acc_t>
using bits_t = std::conditional_t<std::is_same_v<acc_t, double>, int64_t, int32_t>;

template <typename acc_t>
inline bits_t<acc_t> abs_bits(acc_t v) {
  bits_t<acc_t> b;
  std::memcpy(&b, &v, sizeof(b));
  return b & std::numeric_limits<bits_t<acc_t>>::max();
}

// Fast pass: squares summed in float (double for double weights) over blocks of kBlock, each block's
// lanes flushed into a double, and |v| maximised as integer bits; no branch in the loops, so they
// vectorise. The order is fixed, so the result does not depend on the thread count.
template <typename scalar_t>
SMARTFRZ_MULTIVERSION Partial reduce_chunk(const scalar_t* data, int64_t start, int64_t end) {
  using acc_t = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;
  const int64_t len = end - start;
  const scalar_t* p = data + start;
  double sumsq = 0.0;
  bits_t<acc_t> max_bits[kLanes] = {};
  int64_t i = 0;
  for (; i + kBlock <= len; i += kBlock) {
    acc_t v[kBlock];
    for (int64_t j = 0; j < kBlock; ++j) v[j] = static_cast<acc_t>(p[i + j]);
    acc_t sq[kLanes] = {};
    for (int64_t j = 0; j < kBlock; j += kLanes) {
      for (int lane = 0; lane < kLanes; ++lane) sq[lane] += v[j + lane] * v[j + lane];
    }
    for (int64_t j = 0; j < kBlock; j += kLanes) {
      for (int lane = 0; lane < kLanes; ++lane) max_bits[lane] = std::max(max_bits[lane], abs_bits(v[j + lane]));
    }
    for (int lane = 0; lane < kLanes; ++lane) sumsq += static_cast<double>(sq[lane]);
  }
  for (; i < len; ++i) {
    const acc_t v = static_cast<acc_t>(p[i]);
    sumsq += static_cast<double>(v) * static_cast<double>(v);
    max_bits[0] = std::max(max_bits[0], abs_bits(v));
  }
  if (!std::isfinite(sumsq)) return reduce_chunk_exact(p, len);  // inf/nan present, or a float overflow
  bits_t<acc_t> top = 0;
  for (int lane = 0; lane < kLanes; ++lane) top = std::max(top, max_bits[lane]);
  acc_t max_abs;
  std::memcpy(&max_abs, &top, sizeof(max_abs));
  Partial out;
  out.sumsq = sumsq;
  out.max_abs = static_cast<double>(max_abs);
  return out;
}

Partial reduce_chunk_any(const at::Tensor& w, int64_t start, int64_t end) {
  Partial p;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, w.scalar_type(), "record_weights_cpu", [&] {
    p = reduce_chunk(w.const_data_ptr<scalar_t>(), start, end);
  });
  return p;
}

void check_sample_range(const std::vector<at::Tensor>& weights, const at::Tensor& idx) {
  const int64_t k = idx.size(1);
  const int64_t* ix = idx.const_data_ptr<int64_t>();
  for (int64_t l = 0; l < static_cast<int64_t>(weights.size()); ++l) {
    const int64_t n = weights[l].numel();
    const int64_t* row = ix + l * k;
    const bool ok = std::all_of(row, row + k, [n](int64_t v) { return v >= 0 && v < n; });
    TORCH_CHECK_INDEX(ok, "smartfrz.record_weights: sample_idx[", l, "] out of range for weights[", l, "] with ", n,
                      " elements");
  }
}

void gather_samples(const std::vector<at::Tensor>& weights, const at::Tensor& idx, at::Tensor& samples) {
  const int64_t k = idx.size(1);
  const int64_t* ix = idx.const_data_ptr<int64_t>();
  float* out = samples.mutable_data_ptr<float>();
  at::parallel_for(0, static_cast<int64_t>(weights.size()), 1, [&](int64_t begin, int64_t end) {
    for (int64_t l = begin; l < end; ++l) {
      AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, weights[l].scalar_type(), "record_samples_cpu", [&] {
        const scalar_t* data = weights[l].const_data_ptr<scalar_t>();
        for (int64_t j = 0; j < k; ++j) out[l * k + j] = static_cast<float>(data[ix[l * k + j]]);
      });
    }
  });
}

std::tuple<at::Tensor, at::Tensor> record_weights_cpu(at::TensorList weight_list, const at::Tensor& sample_idx,
                                                      const c10::optional<at::Tensor>& prev, bool with_stats) {
  std::vector<at::Tensor> weights(weight_list.begin(), weight_list.end());
  check_record_inputs(weights, sample_idx, prev);
  for (auto& w : weights) w = w.contiguous();  // flat positions are row-major; a strided weight is copied
  const at::Tensor idx = sample_idx.contiguous();
  check_sample_range(weights, idx);

  const int64_t n_layers = static_cast<int64_t>(weights.size());
  const int64_t k = idx.size(1);
  at::Tensor samples = at::empty({n_layers, k}, idx.options().dtype(at::kFloat));
  gather_samples(weights, idx, samples);
  if (!with_stats) return {samples, at::empty({n_layers, 0}, idx.options().dtype(at::kFloat))};  // no weight pass

  std::vector<Chunk> chunks;
  for (int64_t l = 0; l < n_layers; ++l) {
    const int64_t n = weights[l].numel();
    for (int64_t s = 0; s < n; s += kChunk) chunks.push_back({l, s, std::min(n, s + kChunk)});
  }
  std::vector<Partial> partials(chunks.size());
  at::parallel_for(0, static_cast<int64_t>(chunks.size()), 1, [&](int64_t begin, int64_t end) {
    for (int64_t c = begin; c < end; ++c) {
      partials[c] = reduce_chunk_any(weights[chunks[c].layer], chunks[c].start, chunks[c].end);
    }
  });

  at::Tensor stats = at::zeros({n_layers, kStatColumns}, idx.options().dtype(at::kFloat));
  float* st = stats.mutable_data_ptr<float>();
  std::vector<Partial> totals(n_layers);
  for (size_t c = 0; c < chunks.size(); ++c) {  // fixed order: deterministic
    Partial& t = totals[chunks[c].layer];
    t.sumsq += partials[c].sumsq;
    t.nonfinite += partials[c].nonfinite;
    t.max_abs = std::max(t.max_abs, partials[c].max_abs);
  }
  const float* s = samples.const_data_ptr<float>();
  const at::Tensor prev_contig = prev.has_value() ? prev->contiguous() : at::Tensor();
  const float* p = prev.has_value() ? prev_contig.const_data_ptr<float>() : nullptr;
  for (int64_t l = 0; l < n_layers; ++l) {
    double delta = 0.0;
    if (p != nullptr) {
      for (int64_t j = 0; j < k; ++j) {
        const double d = static_cast<double>(s[l * k + j] - p[l * k + j]);
        delta += d * d;
      }
    }
    st[l * kStatColumns + 0] = static_cast<float>(std::sqrt(totals[l].sumsq));
    st[l * kStatColumns + 1] = static_cast<float>(std::sqrt(delta));
    st[l * kStatColumns + 2] = static_cast<float>(totals[l].nonfinite);
    st[l * kStatColumns + 3] = static_cast<float>(totals[l].max_abs);
  }
  return {samples, stats};
}

}  // namespace

TORCH_LIBRARY_IMPL(smartfrz, CPU, m) { m.impl("record_weights", &record_weights_cpu); }

}  // namespace smartfrz
