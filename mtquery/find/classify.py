"""``classify``: learn "like this" from labelled examples and find it everywhere in a region.

A scikit-learn logistic regression on the examples' unit vectors, classes weighted
(balanced). C is chosen by spatially blocked cross-validation: examples are grouped by H3
cell (``mtquery.eval.splits``: the resolution whose hexagons are about twice the typical
spacing of the examples, so neighbouring fragments share a cell) and whole cells are held
out per fold (stratified group k-fold). The C of the best out-of-fold average precision wins
(ties: lower log loss); the threshold is the F1-optimal one on those out-of-fold
probabilities, at the middle of its plateau. The model fitted on every example then gives a
probability to every fragment of the region: a logistic model is linear, so this is the
same streamed matrix-vector product as ``score`` with the weights as the vector.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from mtquery.errors import DataError
from mtquery.find.labels import Labels
from mtquery.find.model import LinearModel

log = logging.getLogger("mtquery")

C_GRID = (0.1, 1.0, 10.0, 100.0)
MAX_FOLDS = 5
SEED = 0


@dataclass
class ClassifyResult:
    """What ``mtquery.classify`` returns. ``table``: every fragment of the region with its
    ``probability`` (highest first); ``detections``: those at or above ``threshold``;
    ``suggestions``: the unlabelled fragments nearest the threshold (label these next);
    ``cv``: cross-validation metrics (precision, recall, average precision, C, folds...)."""

    table: pa.Table
    detections: pa.Table
    model: LinearModel
    threshold: float
    cv: dict = field(default_factory=dict)
    suggestions: pa.Table | None = None
    labels: dict = field(default_factory=dict)


def _estimator(C: float):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=C, class_weight="balanced", max_iter=500, tol=1e-4)


def spatial_groups(lat: np.ndarray, lon: np.ndarray) -> tuple[np.ndarray, int]:
    """H3 cell of each example at the eval split's resolution, and that resolution."""
    from mtquery.eval.splits import choose_h3_resolution, h3_cells

    res, _ = choose_h3_resolution(np.asarray(lat, float), np.asarray(lon, float))
    return h3_cells(np.asarray(lat, float), np.asarray(lon, float), res), res


def folds(y: np.ndarray, groups: np.ndarray, seed: int = SEED) -> list[tuple[np.ndarray,
                                                                           np.ndarray]]:
    """Spatially blocked folds (whole H3 cells held out), each training side with both
    classes; empty when the examples cannot be split so."""
    from sklearn.model_selection import StratifiedGroupKFold

    n_groups = len(set(groups.tolist()))
    per_class = min(int(y.sum()), int(len(y) - y.sum()))
    k = min(MAX_FOLDS, n_groups, max(per_class, 0))
    if k < 2:
        return []
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "least populated class has only n members"
        split = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
        out = [(tr, te) for tr, te in split.split(np.zeros(len(y)), y, groups)]
    return [(tr, te) for tr, te in out if 0 < y[tr].sum() < len(tr) and len(te)]


def best_threshold(y: np.ndarray, p: np.ndarray) -> tuple[float, float]:
    """(threshold, F1) maximising F1 of ``p >= threshold``; the threshold sits midway between
    the lowest probability the best cut keeps and the next lower one."""
    order = np.argsort(-p, kind="stable")
    ps, ys = p[order], y[order]
    tp = np.cumsum(ys)
    fp = np.cumsum(1 - ys)
    pos = max(int(y.sum()), 1)
    last = np.r_[ps[1:] != ps[:-1], True]  # cut only between distinct probabilities
    f1 = np.where(last, 2 * tp / (tp + fp + pos), -1.0)
    i = int(np.argmax(f1))
    below = ps[i + 1] if i + 1 < len(ps) else 0.0
    return float((ps[i] + below) / 2), float(f1[i])


def cross_validate(labels: Labels, seed: int = SEED) -> tuple[float, dict, np.ndarray | None]:
    """(C, metrics, out-of-fold probabilities of that C) by spatially blocked CV."""
    from sklearn.metrics import average_precision_score, log_loss

    groups, res = spatial_groups(labels.lat, labels.lon)
    y, x = labels.y.astype(int), labels.vectors
    splits = folds(y, groups, seed)
    info = {"folds": len(splits), "h3_resolution": int(res),
            "h3_cells": int(len(set(groups.tolist())))}
    if not splits:
        log.warning("too few examples in separate places for a spatial cross-validation "
                    "(%d positive, %d negative in %d H3 cells): C=1, threshold 0.5",
                    labels.positives, labels.negatives, info["h3_cells"])
        return 1.0, info, None
    held = np.zeros(len(y), bool)
    for _, te in splits:
        held[te] = True
    best = None
    for C in C_GRID:
        oof = np.full(len(y), np.nan)
        for tr, te in splits:
            m = _estimator(C).fit(x[tr], y[tr])
            oof[te] = m.predict_proba(x[te])[:, 1]
        yy, pp = y[held], oof[held]
        ap = float(average_precision_score(yy, pp)) if 0 < yy.sum() < len(yy) else float("nan")
        loss = float(log_loss(yy, np.clip(pp, 1e-6, 1 - 1e-6), labels=[0, 1]))
        key = (-np.nan_to_num(ap, nan=-1.0), loss)
        if best is None or key < best[0]:
            best = (key, C, ap, loss, oof)
    _, C, ap, loss, oof = best
    info.update({"C": C, "average_precision": ap, "log_loss": loss,
                 "examples_held_out": int(held.sum())})
    return C, info, oof


def fit(labels: Labels, threshold: float | None = None, seed: int = SEED) -> LinearModel:
    """The classifier: C and (unless given) the threshold from the spatial CV, then fitted
    on every example."""
    if labels.positives == 0 or labels.negatives == 0:
        raise DataError(f"the labels hold one class only ({labels.positives} positive, "
                        f"{labels.negatives} negative fragments); give examples of both, or "
                        "only positives with background negatives", "labels")
    C, cv, oof = cross_validate(labels, seed)
    y = labels.y.astype(int)
    if oof is not None:
        held = np.isfinite(oof)
        t_cv, f1 = best_threshold(y[held], oof[held])
        t = t_cv if threshold is None else threshold
        pred = oof[held] >= t
        tp = int((pred & (y[held] == 1)).sum())
        cv.update({"threshold_f1": t_cv, "f1": f1,
                   "precision": tp / max(int(pred.sum()), 1),
                   "recall": tp / max(int(y[held].sum()), 1)})
    else:
        t = 0.5 if threshold is None else threshold
    cv.update({"positives": labels.positives, "negatives": labels.negatives})
    m = _estimator(C).fit(labels.vectors, y)
    return LinearModel(coef=m.coef_[0].astype(np.float64), intercept=float(m.intercept_[0]),
                       threshold=float(t), C=float(C), cv=cv)
