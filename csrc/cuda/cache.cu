// CUDA kernels of smartfrz::cache_store and smartfrz::cache_gather: move rows between a batch
// and a row cache with dtype conversion (int8 rows carry a per-row scale). The cache may live on
// the batch's GPU or in pinned host memory, which the kernels read and write directly (UVA).
//
// Work is split into (row, tile) pairs walked by a grid-stride loop; rows whose size and
// pointers allow it move as 8-element aligned vectors. With check=true the indices (and, for an
// int8 store, the values) are validated by one small kernel and one flag read (one stream sync)
// before anything is written; with check=false nothing syncs: out-of-range rows are skipped by a
// store and read as zeros by a gather.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/core/CachingHostAllocator.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <tuple>
#include <vector>

#include "../common.h"
#include "cuda_utils.cuh"

namespace smartfrz {
namespace {

using cuda::kThreads;

// The floating cache dtypes (int8 takes its own path).
#define SMARTFRZ_DISPATCH_FLOAT_CACHE(TYPE, NAME, ...)                                                        \
  AT_DISPATCH_SWITCH(TYPE, NAME, AT_DISPATCH_CASE(at::kFloat, __VA_ARGS__) AT_DISPATCH_CASE(at::kHalf, __VA_ARGS__) \
                                     AT_DISPATCH_CASE(at::kBFloat16, __VA_ARGS__))

constexpr int kVec = 8;            // elements per vector access on aligned rows
constexpr int kVecsPerThread = 2;  // vector accesses per thread in one tile

// Elements of a row handled by one block step, and the number of such tiles per row (at least 1,
// so that even an empty row gets its valid flag set).
template <int V>
__host__ __device__ constexpr int64_t tile_elems() {
  return static_cast<int64_t>(kThreads) * V * kVecsPerThread;
}

template <int V>
int64_t tiles_per_row(int64_t d) {
  return std::max<int64_t>(1, (d + tile_elems<V>() - 1) / tile_elems<V>());
}

// Index, in vectors of V elements from the row start, of this thread's u-th vector in `tile`.
template <int V>
__device__ __forceinline__ int64_t vec_index(int64_t tile, int u) {
  return tile * (tile_elems<V>() / V) + static_cast<int64_t>(u) * kThreads + threadIdx.x;
}

// Vector i of a row. Indexing a Vec pointer (rather than casting `row + i * V`) keeps nvcc's
// accesses 16-byte wide: with the cast, some kernels' stores were split into scalar ones.
template <typename T, int V>
__device__ __forceinline__ cuda::Vec<T, V> load_vec(const T* row, int64_t i) {
  return reinterpret_cast<const cuda::Vec<T, V>*>(row)[i];
}

template <typename T, int V>
__device__ __forceinline__ void store_vec(T* row, int64_t i, const cuda::Vec<T, V>& v) {
  reinterpret_cast<cuda::Vec<T, V>*>(row)[i] = v;
}

// ---------------------------------------------------------------------------------------------
// Validation (check=true)

// flags[0]: first out-of-range position; flags[1]: a duplicate index; flags[2]: a non-finite value.
template <typename src_t>
__global__ void __launch_bounds__(kThreads)
    check_store_kernel(const int64_t* __restrict__ idx, const int64_t* __restrict__ sorted, int64_t rows, int64_t n,
                       const src_t* __restrict__ x, int64_t x_numel, unsigned long long* flags) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t start = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  for (int64_t b = start; b < rows; b += stride) {
    const int64_t r = idx[b];
    if (r < 0 || r >= n) cuda::flag_position(&flags[0], rows, b);
    if (b > 0 && sorted[b] == sorted[b - 1]) flags[1] = 1;
  }
  for (int64_t i = start; i < x_numel; i += stride) {
    if (!isfinite(static_cast<float>(x[i]))) flags[2] = 1;
  }
}

// flags[0]: first out-of-range position; flags[1]: first position whose row was never stored.
__global__ void __launch_bounds__(kThreads)
    check_gather_kernel(const int64_t* __restrict__ idx, const bool* __restrict__ valid, int64_t rows, int64_t n,
                        unsigned long long* flags) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t b = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; b < rows; b += stride) {
    const int64_t r = idx[b];
    if (r < 0 || r >= n) {
      cuda::flag_position(&flags[0], rows, b);
    } else if (!valid[r]) {
      cuda::flag_position(&flags[1], rows, b);
    }
  }
}

// Launch a small validation kernel over `work` items and return its n_flags flags (one sync).
template <typename Launch>
std::vector<int64_t> run_check(const at::Tensor& idx, int64_t n_flags, int64_t work, cudaStream_t stream,
                               Launch launch) {
  at::Tensor flags = at::zeros({n_flags}, idx.options());
  const auto grid = static_cast<unsigned>(cuda::grid_size(work, kThreads));
  launch(grid, stream, reinterpret_cast<unsigned long long*>(flags.mutable_data_ptr<int64_t>()));
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return cuda::read_flags(flags);
}

// The index value at position `pos` (only read to word an error message).
int64_t index_at(const at::Tensor& idx, int64_t pos) { return idx.select(0, pos).item<int64_t>(); }

void raise_out_of_range(const char* op, const at::Tensor& idx, int64_t pos, int64_t n) {
  TORCH_CHECK_INDEX(false, op, ": index ", index_at(idx, pos), " out of range for a cache of ", n, " rows");
}

// ---------------------------------------------------------------------------------------------
// Store

template <typename src_t, typename dst_t, int V>
__global__ void __launch_bounds__(kThreads)
    store_rows_kernel(const src_t* __restrict__ x, const int64_t* __restrict__ idx, dst_t* __restrict__ cache,
                      bool* __restrict__ valid, int64_t rows, int64_t n, int64_t d, int64_t tiles) {
  for (int64_t step = blockIdx.x; step < rows * tiles; step += gridDim.x) {
    const int64_t b = step / tiles;
    const int64_t tile = step - b * tiles;
    const int64_t r = idx[b];
    if (r < 0 || r >= n) continue;  // only reachable with check=false: the row is skipped
    if (tile == 0 && threadIdx.x == 0) valid[r] = true;
    const src_t* src = x + b * d;
    dst_t* dst = cache + r * d;
#pragma unroll
    for (int u = 0; u < kVecsPerThread; ++u) {
      const int64_t i = vec_index<V>(tile, u);
      if (i * V >= d) break;  // d is a multiple of V
      const auto in = load_vec<src_t, V>(src, i);
      cuda::Vec<dst_t, V> out;
#pragma unroll
      for (int e = 0; e < V; ++e) out.v[e] = static_cast<dst_t>(static_cast<float>(in.v[e]));
      store_vec<dst_t, V>(dst, i, out);
    }
  }
}

// Per-row max |x| (fp32), combined across tiles with an integer atomicMax on the bits of a
// non-negative float (order-independent, so deterministic).
template <typename src_t, int V>
__global__ void __launch_bounds__(kThreads)
    row_amax_kernel(const src_t* __restrict__ x, const int64_t* __restrict__ idx, unsigned int* __restrict__ amax_bits,
                    int64_t rows, int64_t n, int64_t d, int64_t tiles) {
  __shared__ float s_max[kThreads];
  for (int64_t step = blockIdx.x; step < rows * tiles; step += gridDim.x) {
    const int64_t b = step / tiles;
    const int64_t tile = step - b * tiles;
    const int64_t r = idx[b];
    if (r < 0 || r >= n) continue;  // uniform across the block
    const src_t* src = x + b * d;
    float m = 0.0f;
#pragma unroll
    for (int u = 0; u < kVecsPerThread; ++u) {
      const int64_t i = vec_index<V>(tile, u);
      if (i * V >= d) break;
      const auto in = load_vec<src_t, V>(src, i);
#pragma unroll
      for (int e = 0; e < V; ++e) {
        const float v = fabsf(static_cast<float>(in.v[e]));
        if (isfinite(v)) m = fmaxf(m, v);  // amax over the finite values
      }
    }
    s_max[threadIdx.x] = m;
    __syncthreads();
    for (int half = kThreads / 2; half > 0; half >>= 1) {
      if (threadIdx.x < half) s_max[threadIdx.x] = fmaxf(s_max[threadIdx.x], s_max[threadIdx.x + half]);
      __syncthreads();
    }
    if (threadIdx.x == 0) atomicMax(&amax_bits[b], __float_as_uint(s_max[0]));
    __syncthreads();  // s_max is reused by the next step
  }
}

// q = clamp(rint(x * inv), -127, 127) with inv = 127 / amax (IEEE division, 0 when it overflows),
// scale = amax / 127 (0 with inv), NaN -> 0, +-inf -> +-127:
// the fp32 operations of reference.quantize_rows and the CPU kernel, each rounded explicitly so
// that the result is bit-identical.
template <typename src_t, int V>
__global__ void __launch_bounds__(kThreads)
    quantize_rows_kernel(const src_t* __restrict__ x, const int64_t* __restrict__ idx,
                         const unsigned int* __restrict__ amax_bits, int8_t* __restrict__ cache,
                         float* __restrict__ scales, bool* __restrict__ valid, int64_t rows, int64_t n, int64_t d,
                         int64_t tiles) {
  for (int64_t step = blockIdx.x; step < rows * tiles; step += gridDim.x) {
    const int64_t b = step / tiles;
    const int64_t tile = step - b * tiles;
    const int64_t r = idx[b];
    if (r < 0 || r >= n) continue;
    const float amax = __uint_as_float(amax_bits[b]);
    float inv = amax > 0.0f ? __fdiv_rn(kInt8Max, amax) : 0.0f;
    if (isinf(inv)) inv = 0.0f;  // amax below ~3.7e-37: the row stores as zeros with scale 0
    if (tile == 0 && threadIdx.x == 0) {
      scales[r] = inv > 0.0f ? __fdiv_rn(amax, kInt8Max) : 0.0f;
      valid[r] = true;
    }
    const src_t* src = x + b * d;
    int8_t* dst = cache + r * d;
#pragma unroll
    for (int u = 0; u < kVecsPerThread; ++u) {
      const int64_t i = vec_index<V>(tile, u);
      if (i * V >= d) break;
      const auto in = load_vec<src_t, V>(src, i);
      cuda::Vec<int8_t, V> out;
#pragma unroll
      for (int e = 0; e < V; ++e) {
        const float v = static_cast<float>(in.v[e]);
        float q = 0.0f;  // NaN stores 0 (check=false only)
        if (isinf(v)) {
          q = v > 0.0f ? kInt8Max : -kInt8Max;
        } else if (!isnan(v)) {
          q = fminf(kInt8Max, fmaxf(-kInt8Max, rintf(__fmul_rn(v, inv))));
        }
        out.v[e] = static_cast<int8_t>(q);
      }
      store_vec<int8_t, V>(dst, i, out);
    }
  }
}

// A pinned host buffer used by kernels on `stream`: tell the pinned-memory allocator, so that a block
// freed by Python is not handed out again before the stream has finished with it. Memory that the
// allocator does not own (cudaHostRegister) is left alone: its owner keeps it alive.
void record_host_use(const at::Tensor& t, const c10::cuda::CUDAStream& stream) {
  if (t.is_cuda() || t.storage().data() == nullptr) return;
  const c10::DataPtr& data = t.storage().data_ptr();
  (void)at::getHostAllocator(at::kCUDA)->record_event(data.get(), data.get_context(), stream.unwrap());
}

void record_host_buffers(const at::Tensor& cache, const at::Tensor& scales, const at::Tensor& valid) {
  if (cache.is_cuda()) return;
  const c10::cuda::CUDAStream stream = c10::cuda::getCurrentCUDAStream();
  record_host_use(cache, stream);
  record_host_use(scales, stream);
  record_host_use(valid, stream);
}

struct RowJob {
  const int64_t* idx;
  int64_t rows;
  int64_t n;
  int64_t d;
  cudaStream_t stream;
};

template <int V>
unsigned row_grid(const RowJob& job) {
  return static_cast<unsigned>(cuda::grid_size(job.rows * tiles_per_row<V>(job.d), 1));
}

template <typename src_t, typename dst_t, int V>
void launch_store(const src_t* x, dst_t* cache, bool* valid, const RowJob& job) {
  store_rows_kernel<src_t, dst_t, V><<<row_grid<V>(job), kThreads, 0, job.stream>>>(
      x, job.idx, cache, valid, job.rows, job.n, job.d, tiles_per_row<V>(job.d));
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

template <typename src_t, int V>
void launch_quantize(const src_t* x, int8_t* cache, float* scales, bool* valid, const RowJob& job,
                     const at::Tensor& idx) {
  at::Tensor amax = at::zeros({job.rows}, idx.options().dtype(at::kInt));
  auto* amax_bits = reinterpret_cast<unsigned int*>(amax.mutable_data_ptr<int32_t>());
  row_amax_kernel<src_t, V><<<row_grid<V>(job), kThreads, 0, job.stream>>>(x, job.idx, amax_bits, job.rows, job.n,
                                                                          job.d, tiles_per_row<V>(job.d));
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  quantize_rows_kernel<src_t, V><<<row_grid<V>(job), kThreads, 0, job.stream>>>(
      x, job.idx, amax_bits, cache, scales, valid, job.rows, job.n, job.d, tiles_per_row<V>(job.d));
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

void cache_store_cuda(at::Tensor& cache, at::Tensor& scales, at::Tensor& valid, const at::Tensor& x_in,
                      const at::Tensor& idx_in, bool check) {
  const char* op = "smartfrz.cache_store";
  check_store_inputs(cache, scales, valid, x_in, idx_in);
  cuda::check_host_side_buffers(op, cache, scales, valid);
  const c10::cuda::CUDAGuard guard(idx_in.device());
  const at::Tensor x = x_in.contiguous();
  const at::Tensor idx = idx_in.contiguous();
  const int64_t rows = idx.size(0);
  if (rows == 0) return;
  const int64_t n = cache.size(0);
  const int64_t d = row_numel(cache);
  const bool quantized = cache.scalar_type() == at::kChar;
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();

  if (check) {
    const at::Tensor sorted = rows > 1 ? std::get<0>(idx.sort()) : idx;
    const int64_t x_numel = quantized ? x.numel() : 0;  // non-finite values only matter for int8
    std::vector<int64_t> flags;
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "cache_store_check_cuda", [&] {
      const scalar_t* xs = x.const_data_ptr<scalar_t>();
      flags = run_check(idx, 3, std::max(rows, x_numel), stream,
                        [&](unsigned grid, cudaStream_t s, unsigned long long* f) {
                          check_store_kernel<scalar_t><<<grid, kThreads, 0, s>>>(
                              idx.const_data_ptr<int64_t>(), sorted.const_data_ptr<int64_t>(), rows, n, xs, x_numel,
                              f);
                        });
    });
    const int64_t bad = cuda::first_flagged(flags[0], rows);
    if (bad >= 0) raise_out_of_range(op, idx, bad, n);
    TORCH_CHECK_VALUE(flags[1] == 0, op, ": idx holds duplicate indices; store each row once per call");
    TORCH_CHECK_VALUE(flags[2] == 0, op, ": an int8 cache cannot store non-finite values");
  }

  const RowJob job{idx.const_data_ptr<int64_t>(), rows, n, d, stream};
  auto* valid_ptr = static_cast<bool*>(cuda::device_visible_ptr(op, valid));
  void* cache_ptr = cuda::device_visible_ptr(op, cache);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "cache_store_cuda", [&] {
    using src_t = scalar_t;
    const src_t* xs = x.const_data_ptr<src_t>();
    if (quantized) {
      auto* dst = static_cast<int8_t*>(cache_ptr);
      auto* scales_ptr = static_cast<float*>(cuda::device_visible_ptr(op, scales));
      if (d % kVec == 0 && cuda::is_vec_aligned<src_t, kVec>(xs) && cuda::is_vec_aligned<int8_t, kVec>(dst)) {
        launch_quantize<src_t, kVec>(xs, dst, scales_ptr, valid_ptr, job, idx);
      } else {
        launch_quantize<src_t, 1>(xs, dst, scales_ptr, valid_ptr, job, idx);
      }
      return;
    }
    SMARTFRZ_DISPATCH_FLOAT_CACHE(cache.scalar_type(), "cache_store_cuda_dst", [&] {
      auto* dst = static_cast<scalar_t*>(cache_ptr);
      if (d % kVec == 0 && cuda::is_vec_aligned<src_t, kVec>(xs) && cuda::is_vec_aligned<scalar_t, kVec>(dst)) {
        launch_store<src_t, scalar_t, kVec>(xs, dst, valid_ptr, job);
      } else {
        launch_store<src_t, scalar_t, 1>(xs, dst, valid_ptr, job);
      }
    });
  });
  record_host_buffers(cache, scales, valid);
}

// ---------------------------------------------------------------------------------------------
// Gather

template <typename src_t, typename dst_t, int V, bool kQuantized>
__global__ void __launch_bounds__(kThreads)
    gather_rows_kernel(const src_t* __restrict__ cache, const float* __restrict__ scales,
                       const int64_t* __restrict__ idx, dst_t* __restrict__ out, int64_t rows, int64_t n, int64_t d,
                       int64_t tiles) {
  for (int64_t step = blockIdx.x; step < rows * tiles; step += gridDim.x) {
    const int64_t b = step / tiles;
    const int64_t tile = step - b * tiles;
    const int64_t r = idx[b];
    const bool in_range = r >= 0 && r < n;  // out of range (check=false): the row reads as zeros
    const float scale = kQuantized && in_range ? scales[r] : 1.0f;
    const src_t* src = cache + (in_range ? r : 0) * d;
    dst_t* dst = out + b * d;
#pragma unroll
    for (int u = 0; u < kVecsPerThread; ++u) {
      const int64_t i = vec_index<V>(tile, u);
      if (i * V >= d) break;
      cuda::Vec<dst_t, V> res;
      if (in_range) {
        const auto in = load_vec<src_t, V>(src, i);
#pragma unroll
        for (int e = 0; e < V; ++e) {
          const float v = static_cast<float>(in.v[e]);
          res.v[e] = static_cast<dst_t>(kQuantized ? __fmul_rn(v, scale) : v);
        }
      } else {
#pragma unroll
        for (int e = 0; e < V; ++e) res.v[e] = static_cast<dst_t>(0.0f);
      }
      store_vec<dst_t, V>(dst, i, res);
    }
  }
}

template <typename src_t, typename dst_t, bool kQuantized>
void launch_gather(const src_t* cache, const float* scales, dst_t* out, const RowJob& job) {
  if (job.d % kVec == 0 && cuda::is_vec_aligned<src_t, kVec>(cache) && cuda::is_vec_aligned<dst_t, kVec>(out)) {
    gather_rows_kernel<src_t, dst_t, kVec, kQuantized><<<row_grid<kVec>(job), kThreads, 0, job.stream>>>(
        cache, scales, job.idx, out, job.rows, job.n, job.d, tiles_per_row<kVec>(job.d));
  } else {
    gather_rows_kernel<src_t, dst_t, 1, kQuantized><<<row_grid<1>(job), kThreads, 0, job.stream>>>(
        cache, scales, job.idx, out, job.rows, job.n, job.d, tiles_per_row<1>(job.d));
  }
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

at::Tensor cache_gather_cuda(const at::Tensor& cache, const at::Tensor& scales, const at::Tensor& valid,
                             const at::Tensor& idx_in, at::ScalarType dtype, bool check) {
  const char* op = "smartfrz.cache_gather";
  check_gather_inputs(cache, scales, valid, idx_in, dtype);
  cuda::check_host_side_buffers(op, cache, scales, valid);
  const c10::cuda::CUDAGuard guard(idx_in.device());
  const at::Tensor idx = idx_in.contiguous();
  const int64_t rows = idx.size(0);
  const int64_t n = cache.size(0);
  const int64_t d = row_numel(cache);
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  at::Tensor out = at::empty(gather_shape(cache, rows), idx.options().dtype(dtype));
  if (rows == 0) return out;

  if (check) {
    const auto* valid_ptr = static_cast<const bool*>(cuda::device_visible_ptr(op, valid));
    const std::vector<int64_t> flags =
        run_check(idx, 2, rows, stream, [&](unsigned grid, cudaStream_t s, unsigned long long* f) {
          check_gather_kernel<<<grid, kThreads, 0, s>>>(idx.const_data_ptr<int64_t>(), valid_ptr, rows, n, f);
        });
    const int64_t bad = cuda::first_flagged(flags[0], rows);
    if (bad >= 0) raise_out_of_range(op, idx, bad, n);
    const int64_t unset = cuda::first_flagged(flags[1], rows);
    if (unset >= 0) {
      TORCH_CHECK_VALUE(false, op, ": row ", index_at(idx, unset), " was never stored in the cache");
    }
  }
  if (d == 0) return out;

  const RowJob job{idx.const_data_ptr<int64_t>(), rows, n, d, stream};
  const void* cache_ptr = cuda::device_visible_ptr(op, cache);
  const auto* scales_ptr = static_cast<const float*>(cuda::device_visible_ptr(op, scales));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, dtype, "cache_gather_cuda", [&] {
    using dst_t = scalar_t;
    dst_t* dst = out.mutable_data_ptr<dst_t>();
    if (cache.scalar_type() == at::kChar) {
      launch_gather<int8_t, dst_t, true>(static_cast<const int8_t*>(cache_ptr), scales_ptr, dst, job);
      return;
    }
    SMARTFRZ_DISPATCH_FLOAT_CACHE(cache.scalar_type(), "cache_gather_cuda_src", [&] {
      launch_gather<scalar_t, dst_t, false>(static_cast<const scalar_t*>(cache_ptr), scales_ptr, dst, job);
    });
  });
  record_host_buffers(cache, scales, valid);
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(smartfrz, CUDA, m) {
  m.impl("cache_store", &cache_store_cuda);
  m.impl("cache_gather", &cache_gather_cuda);
}

}  // namespace smartfrz
