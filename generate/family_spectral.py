"""Family ``spectral``: the no-weights baseline, per-band statistics of the fragment (numpy).

Preprocessing ``spectral``: ``x / 10000``; the embedding is the per-band mean, std (all pixels),
then p10, p50, p90 (nearest-rank, on the pixels of every 4th row and column), as blocks in that
order with bands in band order. Fragments of any size are used as they are.
"""

from __future__ import annotations

import numpy as np

from mtquery.generate.family import Built, Family, LoadedModel, register_family
from mtquery.generate.registry import ModelSpec


def load(spec: ModelSpec, weights: str | None) -> Built:
    return Built(None, "none")


def preprocess(lm: LoadedModel, x: np.ndarray) -> np.ndarray:
    return x.astype(np.float32) / np.float32(10000.0)


def forward(lm: LoadedModel, v: np.ndarray) -> np.ndarray:
    """(n, bands, h, w) reflectance -> (n, 5 * bands): mean, std, p10, p50, p90 per band."""
    n, b = v.shape[:2]
    flat = v.reshape(n, b, -1)
    mean = flat.mean(axis=2)
    std = flat.std(axis=2)
    sub = np.sort(v[:, :, ::4, ::4].reshape(n, b, -1), axis=2)
    m = sub.shape[2]
    ks = [int(round(p * (m - 1))) for p in (0.1, 0.5, 0.9)]
    q = [sub[:, :, k] for k in ks]
    return np.concatenate([mean, std, *q], axis=1).astype(np.float32)


PREPROCESSING = {
    "spectral": "x / 10000, then per-band mean, std, p10, p50, p90 (blocks in that order, "
                "bands in band order; percentiles nearest-rank on every 4th row/column): the "
                "first len(bands) values are the per-band means",
}

FAMILY = register_family(Family("spectral", load, preprocess, forward,
                                preprocessing=PREPROCESSING, torch=False, fixed_size=False))
