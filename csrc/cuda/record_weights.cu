// CUDA kernel of smartfrz::record_weights, in the style of multi_tensor_apply: a host-built
// metadata table (data pointer, numel, first chunk, dtype of every weight, then the layer of every
// chunk) goes to the device in one copy, one launch computes partial statistics for fixed-size
// chunks of all weights at once,
// and a second launch (one block per layer) combines each layer's partials in chunk order and
// gathers its K samples. Every sum has a fixed order, so results are deterministic.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <cub/block/block_reduce.cuh>

#include <cstdint>
#include <limits>
#include <tuple>
#include <vector>

#include "../common.h"
#include "cuda_utils.cuh"

namespace smartfrz {
namespace {

using cuda::kThreads;

constexpr int64_t kChunk = 1 << 14;  // elements per block of the statistics pass

enum DtypeCode : int64_t { kCodeFloat = 0, kCodeHalf = 1, kCodeBFloat16 = 2, kCodeDouble = 3 };

// One row of the per-layer metadata; the host fills L of them, followed by an int32 layer id per chunk.
struct TensorMeta {
  int64_t ptr;
  int64_t numel;
  int64_t first_chunk;  // index of this weight's first chunk; its chunks are consecutive
  int64_t dtype;        // a DtypeCode
};
static_assert(sizeof(TensorMeta) == 4 * sizeof(int64_t), "TensorMeta must be 4 int64 of the table");

// Statistics of one chunk: sum of squares (double), max |w| over finite values, non-finite count.
struct Partial {
  double sumsq;
  float max_abs;
  int nonfinite;
};

// A layer's totals: the chunk partials combined plus the change against prev.
struct LayerSums {
  double sumsq;
  double delta;
  float max_abs;
  int64_t nonfinite;
};

// Combining operators for cub::BlockReduce (a fixed order for a fixed block size: deterministic).
struct CombinePartial {
  __device__ __forceinline__ Partial operator()(const Partial& a, const Partial& b) const {
    return Partial{a.sumsq + b.sumsq, fmaxf(a.max_abs, b.max_abs), a.nonfinite + b.nonfinite};
  }
};

struct CombineLayerSums {
  __device__ __forceinline__ LayerSums operator()(const LayerSums& a, const LayerSums& b) const {
    return LayerSums{a.sumsq + b.sumsq, a.delta + b.delta, fmaxf(a.max_abs, b.max_abs), a.nonfinite + b.nonfinite};
  }
};

int64_t dtype_code(at::ScalarType t) {
  switch (t) {
    case at::kFloat:
      return kCodeFloat;
    case at::kHalf:
      return kCodeHalf;
    case at::kBFloat16:
      return kCodeBFloat16;
    default:
      TORCH_CHECK_TYPE(t == at::kDouble, "smartfrz.record_weights: unsupported dtype ", t);
      return kCodeDouble;
  }
}

template <typename T>
__device__ __forceinline__ const T* typed(int64_t ptr) {
  return reinterpret_cast<const T*>(static_cast<uintptr_t>(ptr));
}

// Squares are summed in double: no overflow for large fp32 values, and close to the reference.
// The finiteness test and max|w| stay in fp32 (one fp32 -> fp64 conversion per element).
template <typename T>
__device__ __forceinline__ void accumulate(T x, double& sumsq, float& max_abs, int& nonfinite) {
  const float f = static_cast<float>(x);
  const double v = f;
  sumsq += v * v;
  if (isfinite(f)) {
    max_abs = fmaxf(max_abs, fabsf(f));
  } else {
    ++nonfinite;
  }
}

// fp64 weights: tested in double; max|w| is kept in fp32, which equals the fp32 cast of the
// double max because rounding is monotonic (a finite value beyond the fp32 range gives inf, as
// the reference's cast does).
__device__ __forceinline__ void accumulate(double v, double& sumsq, float& max_abs, int& nonfinite) {
  sumsq += v * v;
  if (isfinite(v)) {
    max_abs = fmaxf(max_abs, static_cast<float>(fabs(v)));
  } else {
    ++nonfinite;
  }
}

// This thread's share of one chunk. Elements are taken in groups of V (16 bytes), group g by
// thread g % blockDim.x, then the < V tail elements one per thread. The order is the same whether
// the groups are loaded as one 16-byte vector (aligned data) or element by element.
template <typename T>
__device__ void accumulate_chunk(const T* __restrict__ p, int64_t len, double& sumsq, float& max_abs,
                                 int& nonfinite) {
  constexpr int V = 16 / sizeof(T);
  const int64_t groups = len / V;
  if (cuda::is_vec_aligned<T, V>(p)) {
    const auto* pv = reinterpret_cast<const cuda::Vec<T, V>*>(p);
    for (int64_t g = threadIdx.x; g < groups; g += blockDim.x) {
      const cuda::Vec<T, V> vec = pv[g];
#pragma unroll
      for (int j = 0; j < V; ++j) accumulate(vec.v[j], sumsq, max_abs, nonfinite);
    }
  } else {
    for (int64_t g = threadIdx.x; g < groups; g += blockDim.x) {
#pragma unroll
      for (int j = 0; j < V; ++j) accumulate(p[g * V + j], sumsq, max_abs, nonfinite);
    }
  }
  const int64_t tail = groups * V + threadIdx.x;
  if (tail < len) accumulate(p[tail], sumsq, max_abs, nonfinite);
}

// One block per chunk of any weight: the chunk's Partial, reduced with cub::BlockReduce.
__global__ void __launch_bounds__(kThreads)
    chunk_stats_kernel(const TensorMeta* __restrict__ meta, const int* __restrict__ chunk_layer,
                       Partial* __restrict__ partials) {
  using Reduce = cub::BlockReduce<Partial, kThreads>;
  __shared__ typename Reduce::TempStorage temp;
  const int64_t chunk = blockIdx.x;
  const int tid = threadIdx.x;
  const TensorMeta m = meta[chunk_layer[chunk]];
  const int64_t start = (chunk - m.first_chunk) * kChunk;
  const int64_t len = min(kChunk, m.numel - start);
  double sumsq = 0.0;
  float max_abs = 0.0f;
  int nonfinite = 0;
  switch (m.dtype) {
    case kCodeFloat:
      accumulate_chunk(typed<float>(m.ptr) + start, len, sumsq, max_abs, nonfinite);
      break;
    case kCodeHalf:
      accumulate_chunk(typed<c10::Half>(m.ptr) + start, len, sumsq, max_abs, nonfinite);
      break;
    case kCodeBFloat16:
      accumulate_chunk(typed<c10::BFloat16>(m.ptr) + start, len, sumsq, max_abs, nonfinite);
      break;
    default:
      accumulate_chunk(typed<double>(m.ptr) + start, len, sumsq, max_abs, nonfinite);
      break;
  }
  const Partial total = Reduce(temp).Reduce(Partial{sumsq, max_abs, nonfinite}, CombinePartial{});
  if (tid == 0) partials[chunk] = total;
}

__device__ __forceinline__ float load_as_float(const TensorMeta& m, int64_t pos) {
  switch (m.dtype) {
    case kCodeFloat:
      return typed<float>(m.ptr)[pos];
    case kCodeHalf:
      return static_cast<float>(typed<c10::Half>(m.ptr)[pos]);
    case kCodeBFloat16:
      return static_cast<float>(typed<c10::BFloat16>(m.ptr)[pos]);
    default:
      return static_cast<float>(typed<double>(m.ptr)[pos]);
  }
}

// One block per layer: combine its chunk partials, gather its K samples and the change against
// prev. An index out of range is never read: its sample is 0 and the layer is flagged. Without
// statistics (partials and stats null) it only gathers the samples.
__global__ void __launch_bounds__(kThreads)
    layer_stats_kernel(const TensorMeta* __restrict__ meta, const Partial* __restrict__ partials,
                       const int64_t* __restrict__ idx, const float* __restrict__ prev, int64_t n_layers, int64_t k,
                       float* __restrict__ samples, float* __restrict__ stats, unsigned long long* bad_layer) {
  using Reduce = cub::BlockReduce<LayerSums, kThreads>;
  __shared__ typename Reduce::TempStorage temp;
  const int64_t layer = blockIdx.x;
  const int tid = threadIdx.x;
  const TensorMeta m = meta[layer];
  const int64_t n_chunks = (m.numel + kChunk - 1) / kChunk;
  double sumsq = 0.0;
  float max_abs = 0.0f;
  int64_t nonfinite = 0;
  for (int64_t c = tid; partials != nullptr && c < n_chunks; c += blockDim.x) {
    const Partial p = partials[m.first_chunk + c];
    sumsq += p.sumsq;
    max_abs = fmaxf(max_abs, p.max_abs);
    nonfinite += p.nonfinite;
  }
  double delta = 0.0;
  bool out_of_range = false;
  for (int64_t j = tid; j < k; j += blockDim.x) {
    const int64_t at = layer * k + j;
    const int64_t pos = idx[at];
    float sample = 0.0f;
    if (pos >= 0 && pos < m.numel) {
      sample = load_as_float(m, pos);
    } else {
      out_of_range = true;
    }
    samples[at] = sample;
    if (prev != nullptr && stats != nullptr) {
      const double d = static_cast<double>(__fsub_rn(sample, prev[at]));  // fp32 difference, as the reference
      delta += d * d;
    }
  }
  if (out_of_range) cuda::flag_position(bad_layer, n_layers, layer);
  if (stats == nullptr) return;  // the whole block returns together: no thread is left waiting in the reduce
  const LayerSums total = Reduce(temp).Reduce(LayerSums{sumsq, delta, max_abs, nonfinite}, CombineLayerSums{});
  if (tid == 0) {
    float* row = stats + layer * kStatColumns;
    row[0] = static_cast<float>(sqrt(total.sumsq));
    row[1] = static_cast<float>(sqrt(total.delta));
    row[2] = static_cast<float>(total.nonfinite);
    row[3] = total.max_abs;
  }
}

std::tuple<at::Tensor, at::Tensor> record_weights_cuda(at::TensorList weight_list, const at::Tensor& sample_idx,
                                                       const c10::optional<at::Tensor>& prev, bool with_stats) {
  std::vector<at::Tensor> weights(weight_list.begin(), weight_list.end());
  check_record_inputs(weights, sample_idx, prev);
  const c10::cuda::CUDAGuard guard(sample_idx.device());
  for (auto& w : weights) w = w.contiguous();  // flat positions are row-major; a strided weight is copied
  const at::Tensor idx = sample_idx.contiguous();
  const at::Tensor prev_contig = prev.has_value() ? prev->contiguous() : at::Tensor();
  const int64_t n_layers = static_cast<int64_t>(weights.size());
  const int64_t k = idx.size(1);

  int64_t n_chunks = 0;  // without statistics no chunk is reduced
  for (const at::Tensor& w : weights) n_chunks += with_stats ? (w.numel() + kChunk - 1) / kChunk : 0;
  TORCH_CHECK_VALUE(n_chunks <= std::numeric_limits<int>::max(), "smartfrz.record_weights: ", n_chunks,
                    " chunks of ", kChunk, " elements exceed one launch");
  // The table as int64: L rows of TensorMeta, then n_chunks int32 layer ids (padded to 8 bytes).
  const int64_t table_len = n_layers * 4 + (n_chunks + 1) / 2;
  at::Tensor table_host = at::empty({table_len}, at::TensorOptions().dtype(at::kLong).pinned_memory(true));
  auto* rows = reinterpret_cast<TensorMeta*>(table_host.mutable_data_ptr<int64_t>());
  auto* chunk_layer = reinterpret_cast<int*>(rows + n_layers);
  for (int64_t l = 0, chunk = 0; l < n_layers; ++l) {
    const at::Tensor& w = weights[l];
    rows[l] = TensorMeta{static_cast<int64_t>(reinterpret_cast<uintptr_t>(w.const_data_ptr())), w.numel(), chunk,
                         dtype_code(w.scalar_type())};
    for (const int64_t end = chunk + (with_stats ? (w.numel() + kChunk - 1) / kChunk : 0); chunk < end; ++chunk) {
      chunk_layer[chunk] = static_cast<int>(l);
    }
  }
  // Pinned source + non_blocking: an async copy on the current stream; the caching host
  // allocator keeps the buffer alive until the copy has run.
  const at::Tensor table = table_host.to(idx.device(), /*non_blocking=*/true);

  const at::TensorOptions on_device = idx.options();
  at::Tensor partials = at::empty({n_chunks * static_cast<int64_t>(sizeof(Partial))}, on_device.dtype(at::kByte));
  at::Tensor samples = at::empty({n_layers, k}, on_device.dtype(at::kFloat));
  at::Tensor stats = at::empty({n_layers, with_stats ? kStatColumns : 0}, on_device.dtype(at::kFloat));
  at::Tensor bad_layer = at::zeros({1}, on_device.dtype(at::kLong));
  const auto* meta_ptr = reinterpret_cast<const TensorMeta*>(table.const_data_ptr<int64_t>());
  const auto* chunk_layer_ptr = reinterpret_cast<const int*>(meta_ptr + n_layers);
  auto* partial_ptr = reinterpret_cast<Partial*>(partials.mutable_data_ptr<uint8_t>());

  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  if (with_stats) {
    chunk_stats_kernel<<<static_cast<unsigned>(n_chunks), kThreads, 0, stream>>>(meta_ptr, chunk_layer_ptr,
                                                                                 partial_ptr);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  layer_stats_kernel<<<static_cast<unsigned>(n_layers), kThreads, 0, stream>>>(
      meta_ptr, with_stats ? partial_ptr : nullptr, idx.const_data_ptr<int64_t>(),
      prev.has_value() ? prev_contig.const_data_ptr<float>() : nullptr, n_layers, k,
      samples.mutable_data_ptr<float>(), with_stats ? stats.mutable_data_ptr<float>() : nullptr,
      reinterpret_cast<unsigned long long*>(bad_layer.mutable_data_ptr<int64_t>()));
  C10_CUDA_KERNEL_LAUNCH_CHECK();

  const int64_t bad = cuda::first_flagged(cuda::read_flags(bad_layer)[0], n_layers);  // the one sync
  if (bad >= 0) {
    TORCH_CHECK_INDEX(false, "smartfrz.record_weights: sample_idx[", bad, "] out of range for weights[", bad,
                      "] with ", weights[bad].numel(), " elements");
  }
  return {samples, stats};
}

}  // namespace

TORCH_LIBRARY_IMPL(smartfrz, CUDA, m) { m.impl("record_weights", &record_weights_cuda); }

}  // namespace smartfrz
