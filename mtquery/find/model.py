"""A fitted classifier as a file: the logistic regression's weights and bias over unit
vectors, its threshold and cross-validation metrics, and its provenance (the dataset's
fingerprint, the label file's hash, the embedding model and dimension, scikit-learn's version).
JSON, so it is read without unpickling anything; applied to any dataset of the same
embedding model and dimension (another region, time or release)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from mtquery.errors import DataError, UsageError
from mtquery.query.session import Session

FORMAT = "mtquery-classifier/1"


@dataclass
class LinearModel:
    """``probability = 1 / (1 + exp(-(unit(x) . coef + intercept)))``."""

    coef: np.ndarray
    intercept: float
    threshold: float
    C: float | None = None
    cv: dict = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)

    @property
    def dim(self) -> int:
        return int(len(self.coef))

    def probability(self, dots: np.ndarray) -> np.ndarray:
        """Probabilities from ``unit(x) . coef`` (NaN stays NaN)."""
        z = np.asarray(dots, np.float64) + self.intercept
        with np.errstate(over="ignore", invalid="ignore"):
            return (1.0 / (1.0 + np.exp(-z))).astype(np.float32)

    def to_json(self) -> str:
        d = asdict(self)
        d["coef"] = [float(v) for v in self.coef]
        return json.dumps({"format": FORMAT, **d}, indent=1)


def check_threshold(threshold: float | None) -> float | None:
    if threshold is None:
        return None
    try:
        t = float(threshold)
    except (TypeError, ValueError):
        raise UsageError(f"threshold must be a probability between 0 and 1 (got "
                         f"{threshold!r})", "threshold") from None
    if not (0.0 <= t <= 1.0) or math.isnan(t):
        raise UsageError(f"threshold must be a probability between 0 and 1 (got {threshold})",
                         "threshold")
    return t


def dataset_fingerprint(session: Session) -> str:
    """A short hash of the dataset's sources (with sizes and mtimes for local files)."""
    parts: list = []
    for src, local in zip(session.dataset.sources, _locals(session)):
        if local is not None:
            st = local.stat()
            parts.append([str(local.resolve()), st.st_size, st.st_mtime_ns])
        else:
            parts.append([src])
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:32]


def _locals(session: Session) -> list[Path | None]:
    files = list(session.dataset.local_files)
    return files if len(files) == len(session.dataset.sources) else [None] * len(
        session.dataset.sources)


def provenance(session: Session, label_info: dict) -> dict:
    import sklearn

    from mtquery.query.encode import dataset_model

    return {"dataset": session.dataset.name, "dataset_fingerprint": dataset_fingerprint(session),
            "embedding_model": dataset_model(session), "dim": int(session.dim),
            "labels": label_info, "sklearn_version": sklearn.__version__,
            "mtquery_version": _version(),
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mtquery")
    except PackageNotFoundError:  # run from a source tree
        return "unknown"


def load_model(path: str | Path) -> LinearModel:
    p = Path(path)
    if not p.is_file():
        raise DataError(f"no such model file: {p}", "model")
    try:
        d = json.loads(p.read_text(encoding="utf-8"))
        if d.get("format") != FORMAT:
            raise ValueError(f"format {d.get('format')!r}, expected {FORMAT}")
        return LinearModel(coef=np.asarray(d["coef"], np.float64), intercept=float(d["intercept"]),
                           threshold=float(d["threshold"]), C=d.get("C"), cv=d.get("cv") or {},
                           provenance=d.get("provenance") or {})
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{p} is not a model saved by classify (save_model): {exc}",
                        "model") from exc


def check_applies(model: LinearModel, session: Session) -> None:
    """Refuse a model made for another embedding dimension or model."""
    from mtquery.query.encode import dataset_model

    prov = model.provenance
    if model.dim != session.dim:
        raise DataError(f"the model was fitted on {model.dim}-d embeddings "
                        f"({prov.get('embedding_model') or 'unknown model'}); "
                        f"{session.dataset.name} holds {session.dim}-d ones", "model")
    have, want = dataset_model(session), prov.get("embedding_model")
    if have and want and have != want:
        raise DataError(f"the model was fitted on {want} embeddings; {session.dataset.name} "
                        f"holds {have} embeddings", "model")
