// CPU kernel of smartfrz::predictor_logits: the attention predictor's forward for N windows in one
// call, windows in parallel, each through predictor_logit_one (csrc/predictor_math.h). Replaces the
// ~200 small PyTorch ops of the eager forward, whose dispatch dominated a freezing stage.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <vector>

#include "../common.h"
#include "multiversion.h"

namespace smartfrz {
namespace {

constexpr int64_t kWindowsPerTask = 16;  // windows per parallel task (one window is a few microseconds)

void check_valid_suffix(const bool* valid, int64_t n, int64_t w) {
  for (int64_t r = 0; r < n; ++r) {
    const bool* row = valid + r * w;
    bool ok = row[w - 1];
    for (int64_t t = 1; t < w && ok; ++t) ok = !row[t - 1] || row[t];
    TORCH_CHECK_VALUE(ok, "smartfrz.predictor_logits: each row of valid must be a suffix of True ending at the latest ",
                      "snapshot (row ", r, " is not)");
  }
}

// Logits of windows [begin, end) with one scratch buffer; the per-window math is inlined into each clone.
SMARTFRZ_MULTIVERSION void logits_range(const float* emb, const bool* valid, const float* context,
                                        const PredictorParams& params, const PredictorDims& dims, int64_t begin,
                                        int64_t end, float* scratch, float* out) {
  for (int64_t r = begin; r < end; ++r) {
    out[r] = predictor_logit_one(emb + r * dims.w * dims.d, valid + r * dims.w, context + r * dims.c, params, dims,
                                 scratch);
  }
}

at::Tensor predictor_logits_cpu(const at::Tensor& emb_in, const at::Tensor& valid_in, const at::Tensor& context_in,
                                at::TensorList param_list, int64_t heads) {
  const PredictorDims dims = check_predictor_inputs(emb_in, valid_in, context_in, param_list, heads);
  const at::Tensor emb = emb_in.contiguous(), valid = valid_in.contiguous(), context = context_in.contiguous();
  std::vector<at::Tensor> params;
  for (const at::Tensor& p : param_list) params.push_back(p.contiguous());
  const int64_t n = emb.size(0);
  check_valid_suffix(valid.const_data_ptr<bool>(), n, dims.w);
  at::Tensor logits = at::empty({n}, emb.options());
  const PredictorParams ptrs = predictor_param_ptrs(params);
  const float* e = emb.const_data_ptr<float>();
  const bool* v = valid.const_data_ptr<bool>();
  const float* c = context.const_data_ptr<float>();
  float* out = logits.mutable_data_ptr<float>();
  const int64_t scratch_n = predictor_scratch_floats(dims);
  at::parallel_for(0, n, kWindowsPerTask, [&](int64_t begin, int64_t end) {
    std::vector<float> scratch(scratch_n);
    logits_range(e, v, c, ptrs, dims, begin, end, scratch.data(), out);
  });
  return logits;
}

}  // namespace

TORCH_LIBRARY_IMPL(smartfrz, CPU, m) { m.impl("predictor_logits", &predictor_logits_cpu); }

}  // namespace smartfrz
