"""Linear CKA from centred probe-batch Gram matrices: capture per layer, buffer, compare with the final model."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from smartfrz.blocks import model_logits
from smartfrz.utils.gram import centred_unit_gram
from smartfrz.utils.modes import eval_mode

MAX_GRAM_SIDE = 2048
"""Largest Gram side accepted for a layer whose output is not per-sample (positions as rows)."""


def layer_features(out: torch.Tensor, n: int) -> torch.Tensor:
    """Features ``[m, D]`` of a layer output on the probe batch, rows = the n samples when the output has them.

    ``[n, ...]`` is per sample; ``[S, n, ...]`` (sequence first) is made batch first. An output that does not
    depend on the sample (e.g. position embeddings, ``[1, S, d]`` broadcast over the batch or ``[S, d]``) is
    compared over its S rows instead: any fixed feature map of the layer gives a valid CKA against the final
    model, as long as it is the same at every snapshot (it is: the shape is the same).
    """
    if out.shape[0] == n:
        return out.reshape(n, -1)
    if out.dim() >= 3 and out.shape[1] == n:
        return out.transpose(0, 1).reshape(n, -1)
    rows = out[0] if out.shape[0] == 1 and out.dim() >= 2 else out
    if rows.dim() == 0 or rows.shape[0] > MAX_GRAM_SIDE:
        raise RuntimeError(
            f"a layer output of shape {tuple(out.shape)} has no probe-batch dimension ({n}) and no usable rows"
        )
    return rows.reshape(rows.shape[0], -1)


class LayerGramCapture:
    """Run the model on a fixed probe batch (eval mode, no grad) and return each layer's centred unit Gram."""

    def __init__(self, model: nn.Module, layers: Sequence[nn.Module]) -> None:
        self.model = model
        self.layers = list(layers)

    def __call__(self, probe_inputs: object, n: int) -> list[np.ndarray]:
        """One ``[m, m]`` float32 Gram per layer (m = n, or S for a batch-broadcast output); a module called
        several times contributes all its outputs' features."""
        outputs: list[list[torch.Tensor]] = [[] for _ in self.layers]

        def hook(index: int):
            def save(_module: nn.Module, _inputs: object, out: torch.Tensor) -> None:
                outputs[index].append(layer_features(out.detach(), n))

            return save

        handles = [m.register_forward_hook(hook(i)) for i, m in enumerate(self.layers)]
        try:
            with eval_mode(self.model), torch.no_grad():
                model_logits(self.model(probe_inputs))
        finally:
            for h in handles:
                h.remove()
        missing = [i for i, out in enumerate(outputs) if not out]
        if missing:
            raise RuntimeError(f"layers {missing} were not called in the probe forward pass; cannot compute CKA")
        return [centred_unit_gram(torch.cat(out, dim=1)) for out in outputs]


class GramStore:
    """Append-only buffer of one snapshot's layer Grams (concatenated, float32); spills to a temp file past a budget."""

    def __init__(self, budget_bytes: int) -> None:
        self.budget_bytes = budget_bytes
        self.sizes: list[int] | None = None  # m per layer
        self._mem: list[np.ndarray] = []
        self._file = None
        self._count = 0

    def __len__(self) -> int:
        return self._count

    @property
    def on_disk(self) -> bool:
        """True once the buffer has spilled to its temporary file."""
        return self._file is not None

    def append(self, grams: Sequence[np.ndarray]) -> None:
        """Store one snapshot's Grams (one square matrix per layer)."""
        sizes = [g.shape[0] for g in grams]
        if self.sizes is None:
            self.sizes = sizes
        elif sizes != self.sizes:
            raise ValueError(f"Gram shape {sizes} differs from the first snapshot's {self.sizes}")
        flat = np.concatenate([np.asarray(g, dtype=np.float32).ravel() for g in grams])
        if self._file is None and (self._count + 1) * flat.nbytes > self.budget_bytes:
            self._file = tempfile.TemporaryFile(prefix="smartfrz-gram-")  # noqa: SIM115 - closed in close()
            for g in self._mem:
                self._file.write(g.tobytes())
            self._mem = []
        if self._file is not None:
            self._file.seek(0, 2)
            self._file.write(flat.tobytes())
        else:
            self._mem.append(flat)
        self._count += 1

    def flat(self, t: int) -> np.ndarray:
        """All Grams of snapshot ``t`` (negative indices allowed), concatenated and flattened."""
        if not -self._count <= t < self._count:
            raise IndexError(f"snapshot {t} out of range for {self._count}")
        t %= self._count
        if self._file is None:
            return self._mem[t]
        assert self.sizes is not None
        count = sum(m * m for m in self.sizes)
        self._file.seek(t * count * 4)
        return np.fromfile(self._file, dtype=np.float32, count=count)

    def __getitem__(self, t: int) -> list[np.ndarray]:
        """Grams of snapshot ``t``, one ``[m, m]`` array per layer."""
        flat, out, start = self.flat(t), [], 0
        for m in self.sizes or []:
            out.append(flat[start : start + m * m].reshape(m, m))
            start += m * m
        return out

    def close(self) -> None:
        """Release memory and delete the temporary file."""
        if self._file is not None:
            self._file.close()
            self._file = None
        self._mem = []


def cka_against_final(store: GramStore) -> np.ndarray:
    """``[T, L]`` linear CKA of every snapshot's layer Gram against the last snapshot's (fp64 dot products)."""
    assert store.sizes is not None
    starts = np.cumsum([0] + [m * m for m in store.sizes[:-1]])
    final = store.flat(-1).astype(np.float64)
    curves = np.empty((len(store), len(store.sizes)), dtype=np.float64)
    for t in range(len(store)):
        curves[t] = np.add.reduceat(store.flat(t).astype(np.float64) * final, starts)
    return curves.astype(np.float32)


def cka_matrix(store: GramStore) -> np.ndarray:
    """``[T, T, L]`` linear CKA between every pair of snapshots, per layer (fp64 dot products, symmetric).

    Stored with the trace so that any label rule (against the final model, over a short horizon, with a
    tolerance band) is a fit-time choice; ``cka_matrix[:, -1]`` equals :func:`cka_against_final`.
    """
    assert store.sizes is not None
    n_t, sizes = len(store), store.sizes
    starts = np.cumsum([0] + [m * m for m in sizes])
    out = np.empty((n_t, n_t, len(sizes)), dtype=np.float64)
    for layer in range(len(sizes)):
        rows = np.stack([store.flat(t)[starts[layer] : starts[layer + 1]] for t in range(n_t)]).astype(np.float64)
        out[:, :, layer] = rows @ rows.T
    return out.astype(np.float32)
