"""Self-describing results: provenance (command line, dataset fingerprint, label hash, models,
seeds, split hashes, versions, timings) around the metrics, written atomically as JSON.

Everything under ``metrics`` (and the split/row hashes) is a pure function of the inputs, the
seeds and the library versions: the same command gives the same ``metrics``. Timings and the
creation time live outside it."""

from __future__ import annotations

import datetime as dt
import json
import math
import platform
import sys
from importlib import metadata
from pathlib import Path

import numpy as np

from mtquery.io.fsio import atomic_write_text
from mtquery.io.manifests import EvalResults

SCHEMA = EvalResults.SCHEMA
PCA_POINTS = 4000


def versions() -> dict:
    out = {"python": platform.python_version()}
    for pkg in ("mtquery", "numpy", "scikit-learn", "duckdb", "pyarrow", "h3", "faiss-cpu",
                "matplotlib", "torch"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            continue
    return out


def command_line(argv: list[str] | None = None) -> list[str]:
    argv = list(sys.argv if argv is None else argv)
    if argv:
        argv[0] = Path(argv[0]).name
    return argv


def _clean(obj):
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, Path):
        return str(obj)
    return obj


def pca_rgb_sample(X: np.ndarray, lat: np.ndarray, lon: np.ndarray, seed: int = 0,
                   max_points: int = PCA_POINTS) -> dict:
    """First three principal components of the vectors scaled to [0, 1] (robust 2-98 %
    percentiles) as RGB, for at most ``max_points`` seeded fragments, with their centres."""
    n = len(X)
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(n, size=max_points, replace=False)) if n > max_points else (
        np.arange(n))
    rgb = pca_rgb(X[idx])
    return {"lat": np.round(lat[idx], 5).tolist(), "lon": np.round(lon[idx], 5).tolist(),
            "rgb": np.round(rgb, 3).tolist(), "n_total": int(n)}


def pca_rgb(X: np.ndarray) -> np.ndarray:
    """First three principal components (exact SVD) scaled to [0, 1] per component (2-98 %
    percentiles). Each component's sign makes its largest loading positive (scikit-learn's
    convention), so the colours do not depend on the SVD routine."""
    from sklearn.decomposition import PCA

    if len(X) < 2:
        return np.full((len(X), 3), 0.5)
    n = min(3, *X.shape)
    P = PCA(n_components=n, svd_solver="full").fit_transform(np.asarray(X, dtype=np.float64))
    if P.shape[1] < 3:
        P = np.pad(P, ((0, 0), (0, 3 - P.shape[1])))
    lo = np.percentile(P, 2, axis=0)
    hi = np.percentile(P, 98, axis=0)
    return np.clip((P - lo) / np.where(hi > lo, hi - lo, 1.0), 0.0, 1.0)


def build(kind: str, *, argv: list[str] | None, dataset: dict, labels: dict, models: list[str],
          config: dict, task: dict, metrics: dict, timings: dict, extra: dict | None = None
          ) -> dict:
    doc = {
        "schema": SCHEMA,
        "kind": kind,
        "command": command_line(argv),
        "created_utc": dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat(),
        "dataset": dataset,
        "models": models,
        "labels": labels,
        "config": config,
        "task": task,
        "metrics": metrics,
        "versions": versions(),
        "timings_s": {k: round(float(v), 4) for k, v in timings.items()},
    }
    if extra:
        doc.update(extra)
    return _clean(doc)


def dumps(doc: dict) -> str:
    return json.dumps(doc, indent=1, sort_keys=False) + "\n"


def write(doc: dict, out: str | Path | None) -> str:
    text = dumps(doc)
    if out is not None:
        atomic_write_text(out, text)
    return text
