// CPU kernels of smartfrz::cache_store and smartfrz::cache_gather: move rows between a batch and
// a row cache with dtype conversion (int8 rows carry a per-row scale). Float caches convert with
// ATen's vectorised casts and move rows with memcpy; int8 rows are (de)quantised in one pass.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "../common.h"

namespace smartfrz {
namespace {

constexpr int64_t kRowGrain = 16;

void check_range(const char* op, const int64_t* idx, int64_t rows, int64_t n) {
  for (int64_t b = 0; b < rows; ++b) {
    TORCH_CHECK_INDEX(idx[b] >= 0 && idx[b] < n, op, ": index ", idx[b], " out of range for a cache of ", n, " rows");
  }
}

void check_unique(const int64_t* idx, int64_t rows) {
  std::vector<int64_t> sorted(idx, idx + rows);
  std::sort(sorted.begin(), sorted.end());
  const bool unique = std::adjacent_find(sorted.begin(), sorted.end()) == sorted.end();
  TORCH_CHECK_VALUE(unique, "smartfrz.cache_store: idx holds duplicate indices; store each row once per call");
}

// Move whole rows of `row_bytes` between a batch and the cache: scatter (batch row b -> cache row
// idx[b], skipping out-of-range rows) or gather (cache row idx[b] -> batch row b, zeros out of range).
void copy_rows(const char* src, char* dst, const int64_t* idx, int64_t rows, int64_t n, int64_t row_bytes,
               bool scatter) {
  at::parallel_for(0, rows, kRowGrain, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      const int64_t r = idx[b];
      const bool in_range = r >= 0 && r < n;
      if (scatter) {
        if (in_range) std::memcpy(dst + r * row_bytes, src + b * row_bytes, row_bytes);
      } else if (in_range) {
        std::memcpy(dst + b * row_bytes, src + r * row_bytes, row_bytes);
      } else {
        std::memset(dst + b * row_bytes, 0, row_bytes);
      }
    }
  });
}

template <typename src_t>
void check_finite_rows(const src_t* x, int64_t count) {
  for (int64_t i = 0; i < count; ++i) {
    TORCH_CHECK_VALUE(std::isfinite(static_cast<float>(x[i])),
                      "smartfrz.cache_store: an int8 cache cannot store non-finite values");
  }
}

// Per-row symmetric int8 (see reference.quantize_rows for the rule): amax over the finite values,
// inv = 127/amax unless that overflows (amax below ~3.7e-37, e.g. subnormal rows), which stores the row
// as zeros with scale 0; NaN stores 0 and +-inf saturates to +-127 (reachable only with check=false).
template <typename src_t>
void quantize_row(const src_t* src, int8_t* dst, float* scale, int64_t row) {
  float amax = 0.0f;
  for (int64_t j = 0; j < row; ++j) {
    const float v = std::abs(static_cast<float>(src[j]));
    if (std::isfinite(v)) amax = std::max(amax, v);
  }
  float inv = amax > 0.0f ? kInt8Max / amax : 0.0f;
  if (std::isinf(inv)) inv = 0.0f;
  for (int64_t j = 0; j < row; ++j) {
    const float v = static_cast<float>(src[j]);
    float q = 0.0f;
    if (std::isinf(v)) {
      q = v > 0.0f ? kInt8Max : -kInt8Max;
    } else if (!std::isnan(v)) {
      q = std::min(kInt8Max, std::max(-kInt8Max, std::nearbyint(v * inv)));
    }
    dst[j] = static_cast<int8_t>(q);
  }
  *scale = inv > 0.0f ? amax / kInt8Max : 0.0f;
}

// int8 caches: per-row symmetric quantisation straight from the batch (one pass per row).
void store_int8(const at::Tensor& x, at::Tensor& cache, at::Tensor& scales, const int64_t* ix, int64_t rows, int64_t n,
                int64_t row, bool check) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "cache_store_int8_cpu", [&] {
    const scalar_t* xs = x.const_data_ptr<scalar_t>();
    if (check) check_finite_rows(xs, rows * row);
    int8_t* dst = cache.mutable_data_ptr<int8_t>();
    float* sc = scales.mutable_data_ptr<float>();
    at::parallel_for(0, rows, kRowGrain, [&](int64_t begin, int64_t end) {
      for (int64_t b = begin; b < end; ++b) {
        const int64_t r = ix[b];
        if (r >= 0 && r < n) quantize_row(xs + b * row, dst + r * row, sc + r, row);
      }
    });
  });
}

void cache_store_cpu(at::Tensor& cache, at::Tensor& scales, at::Tensor& valid, const at::Tensor& x_in,
                     const at::Tensor& idx_in, bool check) {
  const char* op = "smartfrz.cache_store";
  check_store_inputs(cache, scales, valid, x_in, idx_in);
  const at::Tensor x = x_in.contiguous();
  const at::Tensor idx = idx_in.contiguous();
  const int64_t rows = idx.size(0);
  const int64_t n = cache.size(0);
  const int64_t row = row_numel(cache);
  const int64_t* ix = idx.const_data_ptr<int64_t>();
  if (check) {
    check_range(op, ix, rows, n);
    check_unique(ix, rows);
  }
  if (cache.scalar_type() == at::kChar) {
    store_int8(x, cache, scales, ix, rows, n, row, check);
  } else {
    // Float caches: ATen's vectorised conversion of the batch, then one memcpy per row.
    const at::Tensor converted = x.reshape({rows, row}).to(cache.scalar_type()).contiguous();
    copy_rows(static_cast<const char*>(converted.const_data_ptr()), static_cast<char*>(cache.mutable_data_ptr()), ix,
              rows, n, row * cache.element_size(), /*scatter=*/true);
  }
  bool* vd = valid.mutable_data_ptr<bool>();
  for (int64_t b = 0; b < rows; ++b) {
    if (ix[b] >= 0 && ix[b] < n) vd[ix[b]] = true;
  }
}

// int8 caches: dequantise (q * scale in fp32) and cast in one pass per row; zeros out of range.
void gather_int8(const at::Tensor& cache, const at::Tensor& scales, at::Tensor& out, const int64_t* ix, int64_t rows,
                 int64_t n, int64_t row) {
  const int8_t* src = cache.const_data_ptr<int8_t>();
  const float* sc = scales.const_data_ptr<float>();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, out.scalar_type(), "cache_gather_int8_cpu", [&] {
    scalar_t* dst = out.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, rows, kRowGrain, [&](int64_t begin, int64_t end) {
      for (int64_t b = begin; b < end; ++b) {
        const int64_t r = ix[b];
        const bool in_range = r >= 0 && r < n;
        for (int64_t j = 0; j < row; ++j) {
          dst[b * row + j] =
              in_range ? static_cast<scalar_t>(static_cast<float>(src[r * row + j]) * sc[r]) : static_cast<scalar_t>(0.0f);
        }
      }
    });
  });
}

at::Tensor cache_gather_cpu(const at::Tensor& cache, const at::Tensor& scales, const at::Tensor& valid,
                            const at::Tensor& idx_in, at::ScalarType dtype, bool check) {
  const char* op = "smartfrz.cache_gather";
  check_gather_inputs(cache, scales, valid, idx_in, dtype);
  const at::Tensor idx = idx_in.contiguous();
  const int64_t rows = idx.size(0);
  const int64_t n = cache.size(0);
  const int64_t row = row_numel(cache);
  const int64_t* ix = idx.const_data_ptr<int64_t>();
  if (check) {
    check_range(op, ix, rows, n);
    const bool* vd = valid.const_data_ptr<bool>();
    for (int64_t b = 0; b < rows; ++b) {
      TORCH_CHECK_VALUE(vd[ix[b]], op, ": row ", ix[b], " was never stored in the cache");
    }
  }
  at::Tensor out = at::empty(gather_shape(cache, rows), idx.options().dtype(dtype));
  if (cache.scalar_type() == at::kChar) {
    gather_int8(cache, scales, out, ix, rows, n, row);
    return out;
  }
  // Float caches: one memcpy per row (zeros out of range), then ATen's vectorised conversion.
  at::Tensor moved = dtype == cache.scalar_type() ? out : at::empty(out.sizes(), out.options().dtype(cache.scalar_type()));
  copy_rows(static_cast<const char*>(cache.const_data_ptr()), static_cast<char*>(moved.mutable_data_ptr()), ix, rows, n,
            row * cache.element_size(), /*scatter=*/false);
  if (!moved.is_same(out)) out.copy_(moved);
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(smartfrz, CPU, m) {
  m.impl("cache_store", &cache_store_cpu);
  m.impl("cache_gather", &cache_gather_cpu);
}

}  // namespace smartfrz
