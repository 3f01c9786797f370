"""Split a labelled data set into worker shards: IID, or label-skewed (non-IID)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def iid_shards(labels: Sequence[int], n_shards: int, seed: int = 0) -> list[list[int]]:
    """Row indices for ``n_shards`` shards of a random permutation (near-equal sizes)."""
    if n_shards < 1:
        raise ValueError("n_shards must be at least 1")
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(labels))
    return [sorted(int(i) for i in part) for part in np.array_split(perm, n_shards)]


def label_skew_shards(labels: Sequence[int], n_shards: int, alpha: float = 0.5,
                      seed: int = 0) -> list[list[int]]:
    """Non-IID shards: each class is split over shards by Dirichlet(``alpha``) proportions.

    Small ``alpha`` (0.1) gives shards dominated by a few classes; large (100) is near IID.
    Every shard gets at least one row.
    """
    if n_shards < 1:
        raise ValueError("n_shards must be at least 1")
    if alpha <= 0:
        raise ValueError("alpha must be positive")
    y = np.asarray(labels)
    rng = np.random.default_rng(seed)
    shards: list[list[int]] = [[] for _ in range(n_shards)]
    for cls in np.unique(y):
        rows = rng.permutation(np.flatnonzero(y == cls))
        props = rng.dirichlet([alpha] * n_shards)
        cuts = (np.cumsum(props)[:-1] * len(rows)).astype(int)
        for shard, part in zip(shards, np.split(rows, cuts), strict=True):
            shard.extend(int(i) for i in part)
    for i, shard in enumerate(shards):  # steal a row for any empty shard
        if not shard:
            donor = max(range(n_shards), key=lambda j: len(shards[j]))
            shard.append(shards[donor].pop())
        shards[i] = sorted(shard)
    return shards


def train_test_split(n: int, test_fraction: float, seed: int = 0) -> tuple[list[int], list[int]]:
    """(train rows, held-out rows), shuffled with ``seed``."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError("test_fraction must be between 0 and 1")
    perm = np.random.default_rng(seed).permutation(n)
    k = max(1, int(round(n * test_fraction)))
    return sorted(int(i) for i in perm[k:]), sorted(int(i) for i in perm[:k])
