// Input validation shared by the CPU and CUDA kernels. Messages and exception types match
// smartfrz/ops/reference.py: TORCH_CHECK_TYPE -> TypeError, TORCH_CHECK_VALUE -> ValueError,
// TORCH_CHECK_INDEX -> IndexError.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <vector>

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

}  // namespace smartfrz
