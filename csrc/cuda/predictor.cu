// CUDA kernel of smartfrz::predictor_logits: one thread per window runs predictor_logit_one
// (csrc/predictor_math.h, the CPU kernel's code) with its scratch in global memory. A stage judges
// tens to hundreds of layers, so one launch replaces the ~200 launches of the eager forward; the
// suffix rule on `valid` is checked in the kernel and read back with the logits' one sync.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <vector>

#include "../common.h"
#include "cuda_utils.cuh"

namespace smartfrz {
namespace {

constexpr int kWindowThreads = 128;  // threads (windows) per block

__global__ void __launch_bounds__(kWindowThreads)
    predictor_logits_kernel(const float* __restrict__ emb, const bool* __restrict__ valid,
                            const float* __restrict__ context, PredictorParams params, PredictorDims dims, int64_t n,
                            int64_t scratch_n, float* __restrict__ scratch, float* __restrict__ logits,
                            unsigned long long* bad_row) {
  const int64_t r = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (r >= n) return;
  const bool* row = valid + r * dims.w;
  bool ok = row[dims.w - 1];
  for (int64_t t = 1; t < dims.w && ok; ++t) ok = !row[t - 1] || row[t];
  if (!ok) {
    cuda::flag_position(bad_row, n, r);
    logits[r] = 0.0f;
    return;
  }
  logits[r] = predictor_logit_one(emb + r * dims.w * dims.d, row, context + r * dims.c, params, dims,
                                  scratch + r * scratch_n);
}

at::Tensor predictor_logits_cuda(const at::Tensor& emb_in, const at::Tensor& valid_in, const at::Tensor& context_in,
                                 at::TensorList param_list, int64_t heads) {
  const PredictorDims dims = check_predictor_inputs(emb_in, valid_in, context_in, param_list, heads);
  const c10::cuda::CUDAGuard guard(emb_in.device());
  const at::Tensor emb = emb_in.contiguous(), valid = valid_in.contiguous(), context = context_in.contiguous();
  std::vector<at::Tensor> params;
  for (const at::Tensor& p : param_list) params.push_back(p.contiguous());
  const int64_t n = emb.size(0);
  at::Tensor logits = at::empty({n}, emb.options());
  if (n == 0) return logits;
  const int64_t scratch_n = predictor_scratch_floats(dims);
  at::Tensor scratch = at::empty({n, scratch_n}, emb.options());
  at::Tensor bad_row = at::zeros({1}, emb.options().dtype(at::kLong));
  const auto blocks = static_cast<unsigned>((n + kWindowThreads - 1) / kWindowThreads);
  predictor_logits_kernel<<<blocks, kWindowThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
      emb.const_data_ptr<float>(), valid.const_data_ptr<bool>(), context.const_data_ptr<float>(),
      predictor_param_ptrs(params), dims, n, scratch_n, scratch.mutable_data_ptr<float>(),
      logits.mutable_data_ptr<float>(), reinterpret_cast<unsigned long long*>(bad_row.mutable_data_ptr<int64_t>()));
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  const int64_t bad = cuda::first_flagged(cuda::read_flags(bad_row)[0], n);  // the one sync
  TORCH_CHECK_VALUE(bad < 0, "smartfrz.predictor_logits: each row of valid must be a suffix of True ending at the ",
                    "latest snapshot (row ", bad, " is not)");
  return logits;
}

}  // namespace

TORCH_LIBRARY_IMPL(smartfrz, CUDA, m) { m.impl("predictor_logits", &predictor_logits_cuda); }

}  // namespace smartfrz
