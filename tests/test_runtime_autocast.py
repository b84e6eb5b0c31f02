"""The Freezer under torch.autocast: cached rows keep the dtype the suffix would receive, losses match no cache."""

from __future__ import annotations

import pytest
import torch
from test_runtime_support import Stages, mlp, train

from smartfrz.runtime import CacheConfig, Freezer
from smartfrz.runtime.cache import ActivationCache, storage_dtype

TOL = 1e-5  # stated tolerance on losses; in practice they agree bit for bit (16-bit rows are stored exactly)
DEVICES = [
    pytest.param("cpu", torch.bfloat16, id="cpu-bf16"),
    pytest.param("cuda", torch.float16, id="cuda-fp16", marks=pytest.mark.gpu),
    pytest.param("cuda", torch.bfloat16, id="cuda-bf16", marks=pytest.mark.gpu),
]


def _train(
    device: str, dtype: torch.dtype, cache: CacheConfig | None, steps: int = 14, autocast_until: int | None = None
) -> tuple[list[float], Freezer]:
    """Train the 4-block MLP with one block frozen after step 3 and two after step 8, forward under autocast."""
    model = mlp(bn=False).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    freezer = Freezer(model, opt, Stages({3: 1, 8: 2}), cache=cache, deterministic_inputs=True, verbose=False)

    def precision(step: int) -> torch.autocast:
        return torch.autocast(device, dtype=dtype, enabled=autocast_until is None or step < autocast_until)

    return train(freezer, model, opt, steps, device=device, forward_context=precision), freezer


@pytest.mark.parametrize(("device", "dtype"), DEVICES)
@pytest.mark.parametrize("cache_dtype", ["float16", "bfloat16", "float32"])
def test_cached_training_under_autocast_matches_uncached(device: str, dtype: torch.dtype, cache_dtype: str) -> None:
    """Frozen prefix served from the cache (and advanced after a second freeze) gives the uncached losses."""
    plain, _ = _train(device, dtype, None)
    cached, freezer = _train(device, dtype, CacheConfig(dtype=cache_dtype))
    assert freezer.num_frozen == 2 and freezer.cache is not None and freezer.cache.hits > 0
    torch.testing.assert_close(torch.tensor(cached), torch.tensor(plain), atol=TOL, rtol=0)


def test_int8_cache_under_autocast_is_close() -> None:
    """int8 rows are quantised: the losses stay close (1e-2), with no dtype error on store, gather or advance."""
    plain, _ = _train("cpu", torch.bfloat16, None)
    cached, _ = _train("cpu", torch.bfloat16, CacheConfig(dtype="int8"))
    torch.testing.assert_close(torch.tensor(cached), torch.tensor(plain), atol=1e-2, rtol=0)


def test_leaving_autocast_refills_the_cache() -> None:
    """Rows computed under autocast are not served to an fp32 forward (dtype error before); they are recomputed."""
    plain, _ = _train("cpu", torch.bfloat16, None, autocast_until=11)
    cached, freezer = _train("cpu", torch.bfloat16, CacheConfig(), autocast_until=11)
    torch.testing.assert_close(torch.tensor(cached), torch.tensor(plain), atol=TOL, rtol=0)
    assert freezer.cache is not None and freezer.cache._fields is not None
    assert freezer.cache._fields[0].out_dtype == torch.float32


def test_bfloat16_rows_never_overflow_a_float16_cache() -> None:
    """A bf16 activation beyond float16's range is stored as bf16 (was: inf), and handed back as bf16."""
    cache = ActivationCache(CacheConfig(dtype="float16"), deterministic_inputs=True)
    act = torch.tensor([[1e5, -3e38], [1.0, 2.0]], dtype=torch.bfloat16)
    cache.store(act, [0, 1])
    out = cache.gather([0, 1])
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out, act, atol=0, rtol=0)


def test_storage_dtype_policy() -> None:
    """Never wider than the activation, exact at equal width, int8 as asked, integers as float32."""
    f16, bf16, f32, i8 = torch.float16, torch.bfloat16, torch.float32, torch.int8
    assert storage_dtype(f16, f32) == f16
    assert storage_dtype(f32, bf16) == bf16
    assert storage_dtype(f16, bf16) == bf16
    assert storage_dtype(bf16, f16) == f16
    assert storage_dtype(i8, bf16) == i8
    assert storage_dtype(f16, torch.bool) == f32
