"""Train/validation/test splits grouped by run (or task) within each architecture family."""

from __future__ import annotations

import numpy as np

SPLITS = ("train", "val", "test")


def grouped_split(group: np.ndarray, family: np.ndarray, val_frac: float, test_frac: float, seed: int) -> np.ndarray:
    """Assign every example a split so that no group (run or task) straddles two splits.

    Groups are shuffled (seeded) within each family and dealt out by fraction, so every family
    with enough groups appears in all three splits; a family with 1 group goes to train, with 2 to
    train and test. Returns an array of split names aligned with ``group``.
    """
    if not (0 <= val_frac < 1 and 0 <= test_frac < 1 and val_frac + test_frac < 1):
        raise ValueError(f"bad split fractions val={val_frac} test={test_frac}")
    rng = np.random.default_rng(seed)
    assign: dict[str, str] = {}
    for fam in sorted(set(family.tolist())):
        groups = sorted(set(group[family == fam].tolist()))
        rng.shuffle(groups)
        n = len(groups)
        n_test = min(n - 1, max(1, round(n * test_frac))) if n >= 2 and test_frac > 0 else 0
        n_val = max(1, round(n * val_frac)) if n >= 3 and val_frac > 0 else 0
        n_val = min(n_val, n - 1 - n_test)
        for i, g in enumerate(groups):
            assign[g] = "test" if i < n_test else "val" if i < n_test + n_val else "train"
    return np.array([assign[g] for g in group.tolist()], dtype=object).astype(str)


def holdout_family_split(
    group: np.ndarray, family: np.ndarray, held_out: str, val_frac: float, seed: int
) -> np.ndarray:
    """Leave-one-family-out: ``held_out`` is the test set; the rest is split into train and val."""
    split = grouped_split(group, family, val_frac=val_frac, test_frac=0.0, seed=seed)
    split[family == held_out] = "test"
    return split
