// The Python module of the setup.py build. The op schemas are defined once, in Python
// (smartfrz/ops/_schemas.py, registered by smartfrz/ops/_loader.py before this library loads);
// the kernels register per dispatch key in csrc/cpu and csrc/cuda (TORCH_LIBRARY_IMPL only).

#ifndef SMARTFRZ_NO_PYTHON_MODULE
#include <Python.h>

// An empty Python module, so that `import smartfrz._C` loads this library (and its op
// registrations) when built by setup.py. It uses only the stable ABI (setup.py builds abi3 and
// torch passes -DPy_LIMITED_API): no pybind11, no libtorch_python. The CMake build skips it and
// is loaded with torch.ops.load_library instead.
extern "C" PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr, nullptr, nullptr, nullptr, nullptr};
  return PyModule_Create(&module_def);
}
#endif
