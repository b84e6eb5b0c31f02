"""Centred, unit-norm Gram matrices: the representation CKA compares."""

from __future__ import annotations

import numpy as np
import torch


def centred_unit_gram(features: torch.Tensor) -> np.ndarray:
    """Gram matrix of per-sample features after centring, scaled to unit Frobenius norm (fp64 math, fp32 out).

    Centring the features (not the Gram) is exact for the linear kernel (H X X^T H = Xc Xc^T) and avoids
    the cancellation of centring a Gram dominated by the mean. A constant representation gives zeros.
    """
    x = features.reshape(features.shape[0], -1).to(torch.float64)
    x = x - x.mean(dim=0, keepdim=True)
    gram = x @ x.T
    norm = torch.linalg.matrix_norm(gram)
    if norm > 0:
        gram = gram / norm
    return gram.cpu().numpy().astype(np.float32)
