"""Build smartfrz and its native extension `smartfrz._C` (CPU kernels, plus CUDA kernels when possible).

Environment:
  SMARTFRZ_CUDA=0|1      force the CUDA kernels off or on (default: on when torch has CUDA and nvcc is found)
  TORCH_CUDA_ARCH_LIST   GPU architectures; default "8.0;9.0+PTX" when no GPU is visible
  CUDA_HOME              the CUDA toolkit (its nvcc major version must match torch.version.cuda)
  MAX_JOBS               parallel compile jobs (ninja)
"""

from __future__ import annotations

import glob
import os
import re
import subprocess

from setuptools import find_packages, setup

try:
    import torch
    from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension
except ImportError as err:  # pragma: no cover - exercised only on a machine without torch
    raise SystemExit(
        "smartfrz needs torch at build time: install torch first, then `pip install --no-build-isolation -e .`"
    ) from err

ROOT = os.path.dirname(os.path.abspath(__file__))
DEFAULT_ARCH_LIST = "8.0;9.0+PTX"


def nvcc_version(cuda_home: str) -> str:
    """The release (e.g. '13.0') printed by the toolkit's nvcc."""
    out = subprocess.run([os.path.join(cuda_home, "bin", "nvcc"), "--version"], capture_output=True, text=True)
    match = re.search(r"release (\d+\.\d+)", out.stdout)
    if out.returncode != 0 or match is None:
        raise SystemExit(f"could not read the CUDA version from {cuda_home}/bin/nvcc: {out.stderr.strip()}")
    return match.group(1)


def want_cuda() -> bool:
    """Build CUDA kernels when torch has CUDA and nvcc exists, unless SMARTFRZ_CUDA says otherwise."""
    forced = os.environ.get("SMARTFRZ_CUDA")
    if forced not in (None, "", "0", "1"):
        raise SystemExit(f"SMARTFRZ_CUDA must be 0 or 1, got {forced!r}")
    if forced == "0":
        return False
    available = torch.version.cuda is not None and CUDA_HOME is not None
    if forced == "1" and not available:
        raise SystemExit(
            "SMARTFRZ_CUDA=1 but the CUDA kernels cannot be built: "
            f"torch.version.cuda={torch.version.cuda}, CUDA_HOME={CUDA_HOME}. "
            "Install a CUDA build of torch and point CUDA_HOME at the toolkit."
        )
    if not available:
        return False
    toolkit = nvcc_version(CUDA_HOME)
    if toolkit.split(".")[0] != torch.version.cuda.split(".")[0]:
        raise SystemExit(
            f"nvcc in {CUDA_HOME} is CUDA {toolkit} but torch was built with CUDA {torch.version.cuda}: "
            "the major versions must match. Point CUDA_HOME at a matching toolkit, or build CPU-only "
            "with SMARTFRZ_CUDA=0."
        )
    return True


def extension():
    """The `smartfrz._C` extension: CPU sources always, CUDA sources when wanted.

    Built against Python's stable ABI (abi3, as pytorch/extension-cpp): csrc uses only libtorch and the
    dispatcher plus a bare PyInit__C, so one wheel serves every CPython >= 3.10 (torch compiles with
    -DPy_LIMITED_API=0x030A0000 and does not link libtorch_python).
    """
    sources = sorted(glob.glob("csrc/*.cpp") + glob.glob("csrc/cpu/*.cpp"))
    cxx_flags = ["-O3", "-Wall", "-Wextra", "-Wno-unused-parameter"]
    if not want_cuda():
        print("smartfrz: building the CPU kernels only")
        return CppExtension("smartfrz._C", sources, extra_compile_args={"cxx": cxx_flags}, py_limited_api=True)
    if not os.environ.get("TORCH_CUDA_ARCH_LIST") and not torch.cuda.is_available():
        os.environ["TORCH_CUDA_ARCH_LIST"] = DEFAULT_ARCH_LIST
    print(f"smartfrz: building CPU and CUDA kernels for TORCH_CUDA_ARCH_LIST={os.environ.get('TORCH_CUDA_ARCH_LIST')}")
    sources += sorted(glob.glob("csrc/cuda/*.cu"))
    nvcc_flags = ["-O3", "--expt-relaxed-constexpr", "-lineinfo"]
    return CUDAExtension(
        "smartfrz._C", sources, extra_compile_args={"cxx": cxx_flags, "nvcc": nvcc_flags}, py_limited_api=True
    )


setup(
    # the repository's top-level predictor_data/ is installed as the package smartfrz.predictor_data
    packages=[*find_packages(include=["smartfrz", "smartfrz.*"]), "smartfrz.predictor_data"],
    package_dir={"smartfrz.predictor_data": "predictor_data"},
    ext_modules=[extension()],
    cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)},
    options={"bdist_wheel": {"py_limited_api": "cp310"}},  # = requires-python and torch's Py_LIMITED_API
)
