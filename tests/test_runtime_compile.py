"""torch.compile with the freezer: a compiled model (no cache) or compiled blocks (cache) train like eager."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import pytest
import torch
import torch._dynamo
from test_runtime_support import Stages, mlp, train
from torch import nn
from torch._dynamo.utils import counters

from smartfrz.runtime import CacheConfig, Freezer

BACKEND = "aot_eager"  # traces forward and backward like inductor, without a C++ build (fast on a CI CPU)
TOL = 1e-5


def _compile_whole(model: nn.Module) -> nn.Module:
    return torch.compile(model, backend=BACKEND)


def _compile_in_place(model: nn.Module) -> nn.Module:
    model.compile(backend=BACKEND)
    return model


def _train(
    prepare: Callable[[nn.Module], nn.Module] | None,
    cache: CacheConfig | None,
    compile_blocks: bool = False,
    steps: int = 12,
) -> tuple[list[float], Freezer]:
    """Train the 4-block MLP (one block frozen after step 3, two after step 8) from a fresh dynamo state."""
    torch._dynamo.reset()
    counters.clear()
    model = mlp(bn=False)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    user_model = prepare(model) if prepare is not None else model
    freezer = Freezer(user_model, opt, Stages({3: 1, 8: 2}), cache=cache, deterministic_inputs=True, verbose=False)
    if compile_blocks:
        for block in freezer.blocks:
            block.module.compile(backend=BACKEND)
    return train(freezer, model, opt, steps), freezer


@pytest.mark.parametrize("prepare", [_compile_whole, _compile_in_place], ids=["wrapper", "in-place"])
def test_compiled_model_without_cache_trains_like_eager(prepare: Callable[[nn.Module], nn.Module]) -> None:
    """Compile before handing the model over: same losses; one compilation, then one recompilation per freeze."""
    eager, _ = _train(None, None)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # no advice for a 4-block model without the cache
        compiled, freezer = _train(prepare, None)
    torch.testing.assert_close(torch.tensor(compiled), torch.tensor(eager), atol=TOL, rtol=0)
    assert freezer.num_frozen == 2
    assert counters["frames"]["ok"] == 3  # the first compilation + a recompilation at each of the two freezes


def test_compiled_blocks_with_cache_train_like_eager() -> None:
    """With the cache, compile the blocks (the freezer calls them): same losses as eager with the cache."""
    cache = CacheConfig(dtype="float32")
    eager, _ = _train(None, cache)
    with torch._dynamo.config.patch(recompile_limit=64):  # the blocks share one code object: ~4 graphs per block
        compiled, freezer = _train(None, cache, compile_blocks=True)
    torch.testing.assert_close(torch.tensor(compiled), torch.tensor(eager), atol=TOL, rtol=0)
    assert freezer.cache is not None and freezer.cache.hits > 0
    assert counters["frames"]["ok"] > 0


def test_compiled_whole_model_with_cache_warns_that_it_is_bypassed() -> None:
    """The cache runs the blocks one by one, so a compiled whole model would silently run eagerly: say so."""
    model = mlp(bn=False)
    with pytest.warns(UserWarning, match=r"compiled model is never called.*b\.module\.compile\(\)"):
        Freezer(
            torch.compile(model, backend=BACKEND),
            torch.optim.SGD(model.parameters(), lr=0.1),
            None,
            cache=True,
            deterministic_inputs=True,
        )


def test_many_blocks_warn_about_the_recompile_limit() -> None:
    """Each freeze recompiles: more blocks than dynamo's recompile_limit get a warning naming the limit to set."""
    model = nn.Sequential(*[nn.Sequential(nn.Linear(4, 4), nn.ReLU()) for _ in range(9)], nn.Linear(4, 2))
    with pytest.warns(UserWarning, match=r"recompile_limit=8.*at least 10"):
        Freezer(torch.compile(model, backend=BACKEND), torch.optim.SGD(model.parameters(), lr=0.1), None)
