// Input validation shared by the CPU and CUDA kernels. Messages and exception types match
// smartfrz/ops/reference.py and smartfrz/ops/predictor.py: TORCH_CHECK_TYPE -> TypeError, TORCH_CHECK_VALUE -> ValueError,
// TORCH_CHECK_INDEX -> IndexError.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <vector>

#include "predictor_math.h"

namespace smartfrz {

constexpr int64_t kStatColumns = 4;  // l2_norm, delta_l2_norm, nonfinite, max_abs
constexpr float kInt8Max = 127.0f;

inline bool is_float_dtype(at::ScalarType t) {
  return t == at::kFloat || t == at::kHalf || t == at::kBFloat16 || t == at::kDouble;
}

inline bool is_cache_dtype(at::ScalarType t) {
  return t == at::kFloat || t == at::kHalf || t == at::kBFloat16 || t == at::kChar;
}

inline void check_record_inputs(const std::vector<at::Tensor>& weights, const at::Tensor& sample_idx,
                                const c10::optional<at::Tensor>& prev) {
  const char* op = "smartfrz.record_weights";
  TORCH_CHECK_VALUE(!weights.empty(), op, ": weights must be a non-empty list of tensors");
  TORCH_CHECK_TYPE(sample_idx.scalar_type() == at::kLong, op, ": sample_idx must be int64, got ",
                   sample_idx.scalar_type());
  const int64_t n_layers = static_cast<int64_t>(weights.size());
  TORCH_CHECK_VALUE(sample_idx.dim() == 2 && sample_idx.size(0) == n_layers, op,
                    ": sample_idx must have shape [L=", n_layers, ", K], got ", sample_idx.sizes());
  TORCH_CHECK_VALUE(sample_idx.size(1) > 0, op, ": K (sample_idx.shape[1]) must be positive");
  for (int64_t i = 0; i < n_layers; ++i) {
    const at::Tensor& w = weights[i];
    TORCH_CHECK_TYPE(is_float_dtype(w.scalar_type()), op, ": weights[", i, "] has unsupported dtype ",
                     w.scalar_type());
    TORCH_CHECK_VALUE(w.device() == sample_idx.device(), op, ": weights[", i, "] is on ", w.device(),
                      ", sample_idx on ", sample_idx.device());
    TORCH_CHECK_VALUE(w.numel() > 0, op, ": weights[", i, "] is empty");
  }
  if (prev.has_value()) {
    const at::Tensor& p = *prev;
    TORCH_CHECK_TYPE(p.scalar_type() == at::kFloat, op, ": prev must be float32, got ", p.scalar_type());
    TORCH_CHECK_VALUE(p.sizes() == sample_idx.sizes(), op, ": prev must have shape ", sample_idx.sizes(),
                      ", got ", p.sizes());
    TORCH_CHECK_VALUE(p.device() == sample_idx.device(), op, ": prev is on ", p.device(), ", sample_idx on ",
                      sample_idx.device());
  }
}

inline int64_t row_numel(const at::Tensor& cache) {
  int64_t n = 1;
  for (int64_t d = 1; d < cache.dim(); ++d) n *= cache.size(d);
  return n;
}

inline void check_cache_buffers(const char* op, const at::Tensor& cache, const at::Tensor& scales,
                                const at::Tensor& valid) {
  TORCH_CHECK_TYPE(is_cache_dtype(cache.scalar_type()), op, ": cache dtype ", cache.scalar_type(),
                   " is not one of float32, float16, bfloat16, int8");
  TORCH_CHECK_VALUE(cache.dim() >= 2, op, ": cache must have shape [N, ...] with at least 2 dims");
  TORCH_CHECK_VALUE(cache.is_contiguous(), op, ": cache must be contiguous");
  const int64_t n = cache.size(0);
  TORCH_CHECK_TYPE(scales.scalar_type() == at::kFloat, op, ": scales must be float32, got ", scales.scalar_type());
  TORCH_CHECK_TYPE(valid.scalar_type() == at::kBool, op, ": valid must be bool, got ", valid.scalar_type());
  TORCH_CHECK_VALUE(scales.dim() == 1 && scales.size(0) == n, op, ": scales must have shape [", n, "], got ",
                    scales.sizes());
  TORCH_CHECK_VALUE(valid.dim() == 1 && valid.size(0) == n, op, ": valid must have shape [", n, "], got ",
                    valid.sizes());
  TORCH_CHECK_VALUE(scales.device() == cache.device() && valid.device() == cache.device(), op,
                    ": cache, scales and valid must be on one device");
  TORCH_CHECK_VALUE(scales.is_contiguous() && valid.is_contiguous(), op, ": scales and valid must be contiguous");
}

inline void check_idx(const char* op, const at::Tensor& idx) {
  TORCH_CHECK_TYPE(idx.scalar_type() == at::kLong, op, ": idx must be int64, got ", idx.scalar_type());
  TORCH_CHECK_VALUE(idx.dim() == 1, op, ": idx must be 1-D, got shape ", idx.sizes());
}

// The cache lives with the data, or in pinned host memory read/written by a CUDA kernel.
inline void check_cache_device(const char* op, const at::Tensor& cache, const at::Tensor& other) {
  if (cache.device() == other.device()) return;
  TORCH_CHECK_VALUE(cache.device().is_cpu() && other.device().is_cuda() && cache.is_pinned(), op, ": cache on ",
                    cache.device(), " cannot serve tensors on ", other.device(),
                    " (a host cache used from CUDA must be in pinned memory)");
}

inline void check_store_inputs(const at::Tensor& cache, const at::Tensor& scales, const at::Tensor& valid,
                               const at::Tensor& x, const at::Tensor& idx) {
  const char* op = "smartfrz.cache_store";
  check_cache_buffers(op, cache, scales, valid);
  check_idx(op, idx);
  TORCH_CHECK_TYPE(is_float_dtype(x.scalar_type()), op, ": x has unsupported dtype ", x.scalar_type());
  const int64_t rows = idx.size(0);
  const int64_t row = row_numel(cache);
  TORCH_CHECK_VALUE(x.dim() >= 1 && x.size(0) == rows && x.numel() == rows * row, op, ": x must hold ", rows,
                    " rows of ", row, " elements, got shape ", x.sizes());
  TORCH_CHECK_VALUE(x.device() == idx.device(), op, ": x is on ", x.device(), ", idx on ", idx.device());
  check_cache_device(op, cache, x);
}

inline void check_gather_inputs(const at::Tensor& cache, const at::Tensor& scales, const at::Tensor& valid,
                                const at::Tensor& idx, at::ScalarType dtype) {
  const char* op = "smartfrz.cache_gather";
  check_cache_buffers(op, cache, scales, valid);
  check_idx(op, idx);
  TORCH_CHECK_TYPE(is_float_dtype(dtype), op, ": output dtype ", dtype, " is not a float dtype");
  check_cache_device(op, cache, idx);
}

// Shape of a gather result: [B, *cache.shape[1:]].
inline std::vector<int64_t> gather_shape(const at::Tensor& cache, int64_t rows) {
  std::vector<int64_t> shape{rows};
  for (int64_t d = 1; d < cache.dim(); ++d) shape.push_back(cache.size(d));
  return shape;
}

// Validation of smartfrz::predictor_logits from shapes, dtypes and devices (smartfrz/ops/predictor.py
// check_predictor_inputs); the suffix rule on `valid` is checked by each kernel on the data.
inline PredictorDims check_predictor_inputs(const at::Tensor& emb, const at::Tensor& valid, const at::Tensor& context,
                                            at::TensorList params, int64_t heads) {
  const char* op = "smartfrz.predictor_logits";
  TORCH_CHECK_TYPE(emb.scalar_type() == at::kFloat, op, ": emb must be float32, got ", emb.scalar_type());
  TORCH_CHECK_VALUE(emb.dim() == 3 && emb.size(1) >= 2, op, ": emb must be [N, W>=2, D], got ", emb.sizes());
  const int64_t n = emb.size(0), w = emb.size(1);
  TORCH_CHECK_TYPE(valid.scalar_type() == at::kBool, op, ": valid must be bool, got ", valid.scalar_type());
  TORCH_CHECK_VALUE(valid.dim() == 2 && valid.size(0) == n && valid.size(1) == w, op, ": valid must be [", n, ", ",
                    w, "], got ", valid.sizes());
  TORCH_CHECK_TYPE(context.scalar_type() == at::kFloat, op, ": context must be float32, got ", context.scalar_type());
  TORCH_CHECK_VALUE(context.dim() == 2 && context.size(0) == n, op, ": context must be [", n, ", C], got ",
                    context.sizes());
  TORCH_CHECK_VALUE(static_cast<int64_t>(params.size()) == kPredictorParams, op, ": params must be the ",
                    static_cast<int64_t>(kPredictorParams), " tensors of PREDICTOR_PARAMS, got ", params.size());
  for (int64_t i = 0; i < kPredictorParams; ++i) {
    TORCH_CHECK_TYPE(params[i].scalar_type() == at::kFloat, op, ": params[", i, "] must be float32, got ",
                     params[i].scalar_type());
  }
  TORCH_CHECK_VALUE(valid.device() == emb.device() && context.device() == emb.device(), op,
                    ": valid and context must be on emb's device ", emb.device());
  for (int64_t i = 0; i < kPredictorParams; ++i) {
    TORCH_CHECK_VALUE(params[i].device() == emb.device(), op, ": params[", i, "] is on ", params[i].device(), ", emb on ",
                      emb.device());
  }
  TORCH_CHECK_VALUE(params[kToken0W].dim() == 2 && params[kHead0W].dim() == 2, op,
                    ": params token.0.weight and head.0.weight must be 2-D");
  const PredictorDims dims{w, emb.size(2), params[kToken0W].size(0), heads, params[kHead0W].size(0), context.size(1)};
  TORCH_CHECK_VALUE(heads >= 1 && dims.hid >= 1 && dims.hid % heads == 0, op, ": hidden=", dims.hid,
                    " must be a positive multiple of heads=", heads, " >= 1");
  const int64_t h = dims.hid, summary = kWindowFeatures + 2 * dims.c;
  const std::vector<std::vector<int64_t>> shapes = {
      {kTokenFeatures}, {kTokenFeatures}, {kWindowFeatures}, {kWindowFeatures}, {h, kTokenFeatures}, {h}, {h, h}, {h},
      {w, h}, {h}, {h}, {h, h}, {h}, {h, h}, {h, h}, {h}, {h, h}, {h}, {dims.head_hidden, 2 * h + summary},
      {dims.head_hidden}, {1, dims.head_hidden}, {1}, {1, summary}, {1}};
  for (int64_t i = 0; i < kPredictorParams; ++i) {
    TORCH_CHECK_VALUE(params[i].sizes() == at::IntArrayRef(shapes[i]), op, ": params[", i, "] (PREDICTOR_PARAMS order) must have shape ",
                      at::IntArrayRef(shapes[i]), ", got ", params[i].sizes());
  }
  return dims;
}

// The tensors' data pointers in PREDICTOR_PARAMS order (they must outlive the kernel: the caller keeps them).
inline PredictorParams predictor_param_ptrs(const std::vector<at::Tensor>& params) {
  PredictorParams out{};
  for (int64_t i = 0; i < kPredictorParams; ++i) out.p[i] = params[i].const_data_ptr<float>();
  return out;
}

}  // namespace smartfrz
