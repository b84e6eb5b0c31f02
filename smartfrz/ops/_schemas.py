"""Operator schemas of the `smartfrz` library: the only definition, used by the native kernels and the fallback.

`smartfrz.ops._loader` defines them with torch.library before loading the native kernels, which only
register implementations (TORCH_LIBRARY_IMPL), as torchao does.
"""

from smartfrz.traces.schema import WEIGHT_STAT_NAMES

NAMESPACE = "smartfrz"

SCHEMAS: dict[str, str] = {
    "record_weights": "record_weights(Tensor[] weights, Tensor sample_idx, Tensor? prev) -> (Tensor, Tensor)",
    "cache_store": (
        "cache_store(Tensor(a!) cache, Tensor(b!) scales, Tensor(c!) valid, Tensor x, Tensor idx, "
        "bool check=True) -> ()"
    ),
    "cache_gather": (
        "cache_gather(Tensor cache, Tensor scales, Tensor valid, Tensor idx, ScalarType dtype, "
        "bool check=True) -> Tensor"
    ),
}

#: Columns of the per-layer statistics returned by ``record_weights`` (owned by the trace schema).
STAT_NAMES = WEIGHT_STAT_NAMES

#: Float dtypes a weight, an activation row or a gather output may have.
FLOAT_DTYPES = ("float32", "float16", "bfloat16", "float64")
#: Storage dtypes an activation cache may have.
CACHE_DTYPES = ("float32", "float16", "bfloat16", "int8")
