"""Balanced sampling of a labelled set, each step seeded and independent of row order: one
fragment per (grid cell, acquisition date), at most N fragments per class, and no class with
fewer than M fragments."""

from __future__ import annotations

import hashlib

import numpy as np

from mtquery.errors import UsageError
from mtquery.eval.dataset import LabelledSet


def sample(ds: LabelledSet, *, one_per_cell: bool = False, max_per_class: int | None = None,
           min_class_count: int | None = 2, seed: int = 0) -> tuple[LabelledSet, dict]:
    """The sampled set and what each step kept (for the results' ``task.sampling``)."""
    sampling: dict = {"matched": len(ds)}
    if one_per_cell:
        ds = ds.subset(one_per_cell_date(ds.grid_cell, ds.timestamp, ds.unique_id, seed))
        sampling["after_one_per_cell_date"] = len(ds)
    if max_per_class:
        ds = ds.subset(cap_per_class(ds.labels, int(max_per_class), seed))
        sampling["after_max_per_class"] = len(ds)
    dropped: list[str] = []
    if min_class_count and min_class_count > 1:
        ds, dropped = drop_rare_classes(ds, int(min_class_count))
    sampling["dropped_rare_classes"] = dropped
    sampling["used"] = len(ds)
    return ds, sampling


def cap_per_class(labels: list[tuple[str, ...]], cap: int, seed: int) -> np.ndarray:
    """Indices keeping at most ``cap`` samples per class (multi-label: a sample is kept while
    any of its classes is under the cap), in a seeded order; returned sorted."""
    if cap < 1:
        raise UsageError(f"max_per_class must be at least 1, got {cap}", "max_per_class")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(labels))
    counts: dict[str, int] = {}
    keep = []
    for i in order:
        t = labels[i]
        if any(counts.get(c, 0) < cap for c in t):
            keep.append(i)
            for c in t:
                counts[c] = counts.get(c, 0) + 1
    return np.sort(np.array(keep, dtype=np.int64))


def one_per_cell_date(grid_cell: np.ndarray, timestamp: np.ndarray, ids: np.ndarray,
                      seed: int) -> np.ndarray:
    """One fragment per (grid cell, acquisition date): the one with the smallest
    sha256(seed, unique_id), so the choice does not depend on row order."""
    best: dict[tuple[str, str], tuple[str, int]] = {}
    for i, (c, t, u) in enumerate(zip(grid_cell, timestamp, ids, strict=True)):
        day = str(t)[:10].replace("-", "")[:8]
        key = (str(c), day)
        h = hashlib.sha256(f"{seed}:{u}".encode()).hexdigest()
        if key not in best or h < best[key][0]:
            best[key] = (h, i)
    return np.sort(np.array([v[1] for v in best.values()], dtype=np.int64))


def drop_rare_classes(ds: LabelledSet, min_count: int) -> tuple[LabelledSet, list[str]]:
    """Remove classes with fewer than ``min_count`` samples (single-label: their samples go;
    multi-label: the class is removed from each label set, empty sets go)."""
    counts: dict[str, int] = {}
    for t in ds.labels:
        for c in t:
            counts[c] = counts.get(c, 0) + 1
    rare = sorted(c for c, n in counts.items() if n < min_count)
    if not rare:
        return ds, []
    rare_set = set(rare)
    new_labels = [tuple(c for c in t if c not in rare_set) for t in ds.labels]
    keep = np.array([i for i, t in enumerate(new_labels) if t], dtype=np.int64)
    sub = ds.subset(keep)
    sub.labels = [new_labels[i] for i in keep]
    sub.classes = sorted({c for t in sub.labels for c in t})
    return sub, rare
