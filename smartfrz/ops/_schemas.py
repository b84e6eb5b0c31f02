"""Operator schemas of the `smartfrz` library: the only definition, used by the native kernels and the fallback.

`smartfrz.ops._loader` defines them with torch.library before loading the native kernels, which only
register implementations (TORCH_LIBRARY_IMPL), as torchao does.
"""

from smartfrz.traces.schema import WEIGHT_STAT_NAMES

NAMESPACE = "smartfrz"

SCHEMAS: dict[str, str] = {
    "record_weights": (
        "record_weights(Tensor[] weights, Tensor sample_idx, Tensor? prev, bool stats=True) -> (Tensor, Tensor)"
    ),
    "cache_store": (
        "cache_store(Tensor(a!) cache, Tensor(b!) scales, Tensor(c!) valid, Tensor x, Tensor idx, "
        "bool check=True) -> ()"
    ),
    "cache_gather": (
        "cache_gather(Tensor cache, Tensor scales, Tensor valid, Tensor idx, ScalarType dtype, "
        "bool check=True) -> Tensor"
    ),
    "predictor_logits": (
        "predictor_logits(Tensor emb, Tensor valid, Tensor context, Tensor[] params, int heads) -> Tensor"
    ),
}

#: The parameters of ``predictor_logits``, in order: the attention predictor's state-dict names
#: (csrc/predictor_math.h reads them by these positions).
PREDICTOR_PARAMS = (
    "token_mean",
    "token_std",
    "window_mean",
    "window_std",
    "token.0.weight",
    "token.0.bias",
    "token.2.weight",
    "token.2.bias",
    "time",
    "norm.weight",
    "norm.bias",
    "q.weight",
    "q.bias",
    "k.weight",
    "v.weight",
    "v.bias",
    "out.weight",
    "out.bias",
    "head.0.weight",
    "head.0.bias",
    "head.3.weight",
    "head.3.bias",
    "skip.weight",
    "skip.bias",
)

#: Columns of the per-layer statistics returned by ``record_weights`` (owned by the trace schema).
STAT_NAMES = WEIGHT_STAT_NAMES

#: Float dtypes a weight, an activation row or a gather output may have.
FLOAT_DTYPES = ("float32", "float16", "bfloat16", "float64")
#: Storage dtypes an activation cache may have.
CACHE_DTYPES = ("float32", "float16", "bfloat16", "int8")
