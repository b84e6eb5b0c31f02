// Operator schemas of the smartfrz library. Kernels register per dispatch key in csrc/cpu and
// csrc/cuda; a CPU-only build simply lacks the CUDA registrations. Keep these strings identical
// to smartfrz/ops/_schemas.py (tests/test_ops_schema.py checks it).
#include <torch/library.h>

#ifndef SMARTFRZ_NO_PYTHON_MODULE
#include <Python.h>

// An empty Python module, so that `import smartfrz._C` loads this library (and its op
// registrations) when built by setup.py. The CMake build skips it and is loaded with
// torch.ops.load_library instead.
extern "C" PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr, nullptr, nullptr, nullptr, nullptr};
  return PyModule_Create(&module_def);
}
#endif

TORCH_LIBRARY(smartfrz, m) {
  m.def("record_weights(Tensor[] weights, Tensor sample_idx, Tensor? prev) -> (Tensor, Tensor)");
  m.def(
      "cache_store(Tensor(a!) cache, Tensor(b!) scales, Tensor(c!) valid, Tensor x, Tensor idx, "
      "bool check=True) -> ()");
  m.def(
      "cache_gather(Tensor cache, Tensor scales, Tensor valid, Tensor idx, ScalarType dtype, "
      "bool check=True) -> Tensor");
}
