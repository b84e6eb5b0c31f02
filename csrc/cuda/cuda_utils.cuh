// Helpers shared by the CUDA kernels: launch sizing, aligned vector access, device-visible
// pointers of pinned host tensors, and reading the error flags the kernels set.
#pragma once

#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <vector>

namespace smartfrz {
namespace cuda {

constexpr int kThreads = 256;         // threads per block of every kernel
constexpr int kMaxBlocksPerSm = 16;  // cap of a grid-stride launch, in blocks per multiprocessor

// Blocks for a grid-stride loop over `work` items handled `per_block` at a time (at least 1).
inline int64_t grid_size(int64_t work, int64_t per_block) {
  int device = 0;
  int sms = 0;
  C10_CUDA_CHECK(cudaGetDevice(&device));
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  const int64_t wanted = (work + per_block - 1) / per_block;
  return std::max<int64_t>(1, std::min<int64_t>(wanted, static_cast<int64_t>(sms) * kMaxBlocksPerSm));
}

// V elements of T loaded or stored with one aligned access (the data must be aligned to its size).
template <typename T, int V>
struct alignas(sizeof(T) * V) Vec {
  T v[V];
};

// Whether `ptr` can be accessed as Vec<T, V> from element 0 on.
template <typename T, int V>
__host__ __device__ inline bool is_vec_aligned(const void* ptr) {
  return reinterpret_cast<uintptr_t>(ptr) % (sizeof(T) * V) == 0;
}

// The address through which kernels on the current device reach `t`'s data: the data pointer of
// a CUDA tensor, or the mapped address of a pinned host tensor (the same pointer under UVA, asked
// from the driver so that memory registered with cudaHostRegister works as well).
inline void* device_visible_ptr(const char* op, const at::Tensor& t) {
  void* ptr = t.data_ptr();
  if (t.is_cuda() || ptr == nullptr) return ptr;
  cudaPointerAttributes attr{};
  const cudaError_t err = cudaPointerGetAttributes(&attr, ptr);
  if (err != cudaSuccess) {
    (void)cudaGetLastError();  // clear it, so that a later launch check does not report it
    TORCH_CHECK_VALUE(false, op, ": cannot map host memory for CUDA: ", cudaGetErrorString(err));
  }
  TORCH_CHECK_VALUE(attr.type == cudaMemoryTypeHost && attr.devicePointer != nullptr, op,
                    ": host memory is not mapped for the current CUDA device (a host cache used from CUDA "
                    "must be in pinned memory)");
  return attr.devicePointer;
}

// A host cache written or read by a CUDA kernel: its scales and valid flags must be reachable too.
inline void check_host_side_buffers(const char* op, const at::Tensor& cache, const at::Tensor& scales,
                                    const at::Tensor& valid) {
  if (cache.is_cuda()) return;
  TORCH_CHECK_VALUE(scales.is_pinned() && valid.is_pinned(), op,
                    ": scales and valid of a host cache used from CUDA must be in pinned memory");
}

// Copy a small int64 flag tensor to the host (one stream synchronisation) and return its values.
inline std::vector<int64_t> read_flags(const at::Tensor& flags) {
  const at::Tensor host = flags.to(at::kCPU);
  const int64_t* f = host.const_data_ptr<int64_t>();
  return std::vector<int64_t>(f, f + host.numel());
}

// Position flags hold (rows - first bad position), 0 when none: atomicMax keeps the first one.
inline int64_t first_flagged(int64_t flag, int64_t rows) { return flag > 0 ? rows - flag : -1; }

__device__ __forceinline__ void flag_position(unsigned long long* flag, int64_t rows, int64_t pos) {
  atomicMax(flag, static_cast<unsigned long long>(rows - pos));
}

}  // namespace cuda
}  // namespace smartfrz
