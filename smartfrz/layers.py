"""What a "layer" is (a leaf module whose weight the predictor judges) and seeded weight sampling."""

from __future__ import annotations

import operator
from collections.abc import Sequence

import torch
from torch import nn

# Normalisation layers own a `weight` but travel with their block instead of being judged.
_NORM_TYPES: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._NormBase,
    nn.LayerNorm,
    nn.GroupNorm,
    nn.LocalResponseNorm,
    nn.RMSNorm,
)
_LAYER_TYPES: tuple[type[nn.Module], ...] = (
    nn.modules.conv._ConvNd,
    nn.Linear,
    nn.Bilinear,
    nn.Embedding,
    nn.EmbeddingBag,
)
# Up to this many weights an exact `randperm` is cheap (64 MiB of int64); above it, rejection sampling.
RANDPERM_MAX_NUMEL = 1 << 23
_SEED_MIX = 0x9E3779B97F4A7C15  # golden-ratio constant: spreads (seed, layer) pairs over the 63-bit seed space


def is_layer(module: nn.Module) -> bool:
    """True for a leaf Conv/Linear/Embedding-like module that owns a `weight` Parameter (norms excluded)."""
    if next(module.children(), None) is not None:
        return False
    weight = getattr(module, "weight", None)
    if not isinstance(weight, nn.Parameter) or isinstance(module, _NORM_TYPES):
        return False
    return isinstance(module, _LAYER_TYPES) or weight.dim() >= 2


def find_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The judged layers of `model` in `named_modules` order; a weight tied to several modules counts once.

    Only a Parameter named `weight` counts: weights kept under other names (nn.MultiheadAttention's
    `in_proj_weight`) are not judged, though they still freeze with their block.
    """
    seen: set[int] = set()
    layers: list[tuple[str, nn.Module]] = []
    for name, module in model.named_modules():
        if is_layer(module) and id(module.weight) not in seen:
            seen.add(id(module.weight))
            layers.append((name, module))
    return layers


def _as_int(value: object, what: str, minimum: int) -> int:
    """`value` as a Python int >= minimum (numpy/torch integers accepted), or a ValueError naming it."""
    if isinstance(value, bool):
        raise ValueError(f"{what} must be an integer, got {value!r}")
    try:
        number = operator.index(value)
    except TypeError:
        raise ValueError(f"{what} must be an integer, got {value!r}") from None
    if number < minimum:
        raise ValueError(f"{what} must be >= {minimum}, got {number}")
    return number


def _layer_generator(seed: int, layer: int) -> torch.Generator:
    """A CPU generator seeded from (seed, layer), so adding a layer never changes another layer's samples."""
    mixed = (seed * _SEED_MIX + layer * 0xBF58476D1CE4E5B9 + 1) % (1 << 63)
    return torch.Generator().manual_seed(mixed)


def _sample_without_replacement(numel: int, k: int, gen: torch.Generator) -> torch.Tensor:
    """K distinct positions in [0, numel), uniform over all K-subsets, sorted ascending."""
    if numel <= RANDPERM_MAX_NUMEL:
        return torch.randperm(numel, generator=gen)[:k].sort().values
    # Large layer: the distinct values of iid draws form a uniform random subset given its size, and a
    # uniform K-subset of it is uniform overall. O(K) memory; with K << numel collisions are rare.
    chosen = torch.empty(0, dtype=torch.int64)
    while chosen.numel() < k:
        draws = torch.randint(numel, (2 * (k - chosen.numel()) + 16,), generator=gen, dtype=torch.int64)
        chosen = torch.unique(torch.cat([chosen, draws]))
    keep = torch.randperm(chosen.numel(), generator=gen)[:k]
    return chosen[keep].sort().values


def draw_sample_indices(numels: Sequence[int], k: int, seed: int) -> torch.Tensor:
    """Per layer, K flat weight positions drawn once (seeded): distinct when numel >= K, else with replacement.

    Returns an int64 tensor [L, K] of positions into each layer's flattened weight, sorted per row.
    Layers up to `RANDPERM_MAX_NUMEL` weights use an exact `randperm`; larger ones use rejection
    sampling of `randint` draws (still uniform over K-subsets, O(K) memory).
    """
    k = _as_int(k, "k", minimum=1)
    seed = _as_int(seed, "seed", minimum=0)
    out = torch.empty(len(numels), k, dtype=torch.int64)
    for i, raw in enumerate(numels):
        numel = _as_int(raw, f"numels[{i}]", minimum=1)
        gen = _layer_generator(seed, i)
        if numel >= k:
            out[i] = _sample_without_replacement(numel, k, gen)
        else:
            out[i] = torch.randint(numel, (k,), generator=gen, dtype=torch.int64).sort().values
    return out
