"""Train/test splits (random, stratified for single-label; spatial by H3 cell). Every split
is a pure function of its inputs and the seed, and has a hash of its membership so two runs
can be compared."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from mtquery.errors import DataError, UsageError

SPLITS = ("random", "spatial")


@dataclass
class Split:
    kind: str
    seed: int
    train: np.ndarray
    test: np.ndarray
    info: dict

    def hash(self, ids: np.ndarray) -> str:
        h = hashlib.sha256()
        for name, idx in (("train", self.train), ("test", self.test)):
            h.update(name.encode())
            for uid in sorted(ids[idx].tolist()):
                h.update(str(uid).encode())
                h.update(b"\n")
        return h.hexdigest()


def _check_fraction(train_fraction: float) -> None:
    if not 0.0 < train_fraction < 1.0:
        raise UsageError(f"train_fraction must be between 0 and 1, got {train_fraction}",
                         "train_fraction")


def random_split(n: int, seed: int, train_fraction: float = 0.8,
                 strata: np.ndarray | None = None) -> Split:
    """Seeded random split; stratified by ``strata`` (class index) when given, so every class
    with at least two samples has one on each side."""
    _check_fraction(train_fraction)
    rng = np.random.default_rng(seed)
    if strata is None:
        perm = rng.permutation(n)
        n_train = int(round(n * train_fraction))
        n_train = min(max(n_train, 1), n - 1)
        train, test = perm[:n_train], perm[n_train:]
    else:
        train_parts, test_parts = [], []
        for c in np.unique(strata):
            members = np.nonzero(strata == c)[0]
            members = members[rng.permutation(len(members))]
            if len(members) == 1:
                train_parts.append(members)
                continue
            k = int(round(len(members) * train_fraction))
            k = min(max(k, 1), len(members) - 1)
            train_parts.append(members[:k])
            test_parts.append(members[k:])
        train = np.concatenate(train_parts) if train_parts else np.zeros(0, np.int64)
        test = np.concatenate(test_parts) if test_parts else np.zeros(0, np.int64)
    return Split("random", seed, np.sort(train), np.sort(test), {})


def typical_spacing_km(lat: np.ndarray, lon: np.ndarray, sample: int = 2000,
                       seed: int = 0) -> float:
    """Median distance from a fragment centre to its nearest other centre (km), on a seeded
    sample of at most ``sample`` points."""
    n = len(lat)
    if n < 2:
        return float("nan")
    rng = np.random.default_rng(seed)
    idx = rng.choice(n, size=min(n, sample), replace=False) if n > sample else np.arange(n)
    la, lo = np.radians(lat[idx]), np.radians(lon[idx])
    P = np.stack([np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)], axis=1)
    best = np.full(len(idx), np.inf)
    for s in range(0, len(idx), 512):
        d2 = np.maximum(0.0, 2 - 2 * (P[s:s + 512] @ P.T))
        np.fill_diagonal(d2[:, s:s + 512], np.inf)
        d2[d2 < 1e-18] = np.inf  # duplicate positions (same place, other date)
        best[s:s + 512] = d2.min(axis=1)
    best = best[np.isfinite(best)]
    if not len(best):
        return float("nan")
    return float(np.median(2 * 6371.0088 * np.arcsin(np.sqrt(best) / 2)))


def choose_h3_resolution(lat: np.ndarray, lon: np.ndarray,
                         factor: float = 2.0) -> tuple[int, float]:
    """The finest H3 resolution whose mean hexagon edge is at least ``factor`` x the typical
    spacing of the fragments, so fragments that overlap or touch mostly share a cell."""
    import h3

    spacing = typical_spacing_km(lat, lon)
    if not np.isfinite(spacing):
        return 5, spacing
    for res in range(15, -1, -1):
        if h3.average_hexagon_edge_length(res, "km") >= factor * spacing:
            return res, spacing
    return 0, spacing


def h3_cells(lat: np.ndarray, lon: np.ndarray, res: int) -> np.ndarray:
    import h3

    return np.array([h3.latlng_to_cell(float(a), float(b), res) for a, b in zip(lat, lon,
                                                                                strict=True)],
                    dtype=object)


def spatial_split(cells: np.ndarray, seed: int, train_fraction: float = 0.8,
                  buffer_rings: int = 0) -> Split:
    """Whole H3 cells go to one side: cells are shuffled with the seed and given to the test
    side until it holds ``1 - train_fraction`` of the samples. With ``buffer_rings`` = r > 0,
    training samples whose cell lies within r rings of a test cell are dropped."""
    import h3

    _check_fraction(train_fraction)
    uniq, inverse, counts = np.unique(cells.astype(str), return_inverse=True, return_counts=True)
    if len(uniq) < 2:
        raise DataError(f"a spatial split needs fragments in at least 2 H3 cells, found "
                        f"{len(uniq)}; set a finer h3_res", "h3_res")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(uniq))
    target = (1.0 - train_fraction) * len(cells)
    test_cells = np.zeros(len(uniq), dtype=bool)
    acc = 0
    for j in order:
        if acc >= target:
            break
        if acc + counts[j] > target and acc > 0 and (acc + counts[j] - target) > (target - acc):
            continue  # would overshoot more than it fills; try smaller cells
        test_cells[j] = True
        acc += counts[j]
    if test_cells.all():
        test_cells[order[-1]] = False
    if not test_cells.any():
        test_cells[order[0]] = True
    is_test = test_cells[inverse]
    dropped = 0
    train_mask = ~is_test
    if buffer_rings > 0:
        near: set[str] = set()
        for c in uniq[test_cells]:
            near.update(h3.grid_disk(c, buffer_rings))
        in_buffer = np.array([c in near for c in uniq])[inverse] & ~is_test
        dropped = int(in_buffer.sum())
        train_mask &= ~in_buffer
    train = np.nonzero(train_mask)[0]
    test = np.nonzero(is_test)[0]
    if len(train) == 0:
        raise DataError("the spatial split left no training samples; use a smaller "
                        "buffer_rings or a finer h3_res", "buffer_rings")
    info = {"h3_cells": int(len(uniq)), "test_cells": int(test_cells.sum()),
            "buffer_rings": int(buffer_rings), "buffer_dropped": dropped}
    return Split("spatial", seed, train, test, info)
