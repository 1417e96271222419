"""``classify``: learn "like this" from labelled examples and find it everywhere in a region.

A scikit-learn logistic regression on the examples' unit vectors, classes weighted
(balanced). C is chosen by spatially blocked cross-validation: examples are grouped by H3
cell (``mtquery.eval.splits``: the resolution whose hexagons are about twice the typical
spacing of the examples, finer while one class sits in a single cell) and whole cells are
held out per fold (stratified group k-fold). The C of the best out-of-fold average precision
wins (ties: lower log loss). The threshold is the F1-optimal one on the out-of-fold
probabilities, with each held-out probability standing for a small neighbourhood (a kernel
in logit space): with five positives the raw F1 curve is a step function set by one example.

Background negatives (random fragments of the region) are unlabelled, not known negatives:
some are the very thing searched for. Those the held-out models put above the cut are left
out and the cross-validation repeated (up to ``PU_ROUNDS`` times); how many is reported.

The model fitted on every example then gives a probability to every fragment of the region:
a logistic model is linear, so this is the same streamed matrix-vector product as ``score``
with the weights as the vector.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from mtquery.errors import DataError
from mtquery.find.labels import Labels
from mtquery.find.model import LinearModel

log = logging.getLogger("mtquery")

C_GRID = (0.1, 1.0, 10.0, 100.0)
MAX_FOLDS = 5
#: rounds of leaving out background fragments that score as positives (unlabelled ones)
PU_ROUNDS = 3
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


def _estimator(C: float, warm: bool = False):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=C, class_weight="balanced", max_iter=300, tol=1e-3,
                              warm_start=warm)


def spatial_groups(lat: np.ndarray, lon: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, int]:
    """H3 cell of each example and the resolution: the eval split's (hexagons about twice
    the examples' typical spacing), made finer while the positives (or the negatives) all
    share one cell, which no blocked fold could hold out and train on at once."""
    from mtquery.eval.splits import choose_h3_resolution, h3_cells

    lat, lon = np.asarray(lat, float), np.asarray(lon, float)
    res, _ = choose_h3_resolution(lat, lon)
    while True:
        cells = h3_cells(lat, lon, res)
        spread = [len(set(cells[y == c].tolist())) >= min(2, int((y == c).sum()))
                  for c in (0, 1)]
        if all(spread) or res >= 15:
            return cells, res
        res += 1


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
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "least populated class has only n members"
        split = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
        out = [(tr, te) for tr, te in split.split(np.zeros(len(y)), y, groups)]
    return [(tr, te) for tr, te in out if 0 < y[tr].sum() < len(tr) and len(te)]


def best_threshold(y: np.ndarray, p: np.ndarray) -> tuple[float, float]:
    """(threshold, F1): the threshold maximising the expected F1 of ``p >= threshold`` when
    each held-out probability stands for its neighbourhood (in logit space, a normal kernel
    of Silverman's width per class). With a handful of positives the plain F1 curve is a
    step function set by the single lowest positive and highest negative; the smoothed one
    weighs how the classes spread."""
    from scipy.special import ndtr  # the normal CDF (scipy comes with scikit-learn)

    q = np.clip(np.asarray(p, np.float64), 1e-7, 1 - 1e-7)
    z = np.log(q / (1 - q))
    pos, neg = z[y == 1], z[y == 0]
    if not len(pos) or not len(neg):
        return 0.5, float("nan")

    def width(v: np.ndarray) -> float:
        sd = float(np.std(v, ddof=1)) if len(v) > 1 else 0.0
        return max(1.06 * sd * len(v) ** -0.2, 0.05)

    grid = np.linspace(z.min() - 1.0, z.max() + 1.0, 801)
    tp = ndtr((pos[:, None] - grid) / width(pos)).sum(axis=0)
    fp = ndtr((neg[:, None] - grid) / width(neg)).sum(axis=0)
    f1 = 2 * tp / (tp + fp + len(pos))
    best = np.flatnonzero(f1 >= f1.max() - 1e-12)
    t = float(grid[best].mean())
    pred = z >= t
    hit = int((pred & (y == 1)).sum())
    f1_emp = 2 * hit / (int(pred.sum()) + len(pos))
    return float(1 / (1 + np.exp(-t))), float(f1_emp)


def cross_validate(labels: Labels, seed: int = SEED) -> tuple[float, dict, np.ndarray | None]:
    """(C, metrics, out-of-fold probabilities of that C) by spatially blocked CV."""
    from sklearn.metrics import average_precision_score, log_loss

    y, x = labels.y.astype(int), labels.vectors
    groups, res = spatial_groups(labels.lat, labels.lon, y)
    splits = folds(y, groups, seed)
    held = np.zeros(len(y), bool)
    for _, te in splits:
        held[te] = True
    info = {"folds": len(splits), "h3_resolution": int(res),
            "h3_cells": int(len(set(groups.tolist())))}
    if len(splits) < 2 or not 0 < y[held].sum() < held.sum():
        log.warning("too few examples in separate places for a spatial cross-validation "
                    "(%d positive, %d negative in %d H3 cells): C=1, threshold 0.5",
                    labels.positives, labels.negatives, info["h3_cells"])
        info["folds"] = 0
        return 1.0, info, None
    oofs = {C: np.full(len(y), np.nan) for C in C_GRID}
    for tr, te in splits:  # each fold's model warm-started from the previous (smaller) C
        m = _estimator(C_GRID[0], warm=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # lbfgs at max_iter on separable examples
            for C in C_GRID:
                m.set_params(C=C)
                m.fit(x[tr], y[tr])
                oofs[C][te] = m.predict_proba(x[te])[:, 1]
    best = None
    for C in C_GRID:
        oof = oofs[C]
        yy, pp = y[held], oof[held]
        ap = float(average_precision_score(yy, pp))
        loss = float(log_loss(yy, np.clip(pp, 1e-6, 1 - 1e-6), labels=[0, 1]))
        key = (-ap, loss)
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
    dropped = 0
    for _ in range(PU_ROUNDS):
        # background fragments the held-out models put above the cut are most likely
        # unlabelled positives: leave them out and cross-validate again
        if oof is None or not labels.background.any():
            break
        y, held = labels.y.astype(int), np.isfinite(oof)
        cut, _ = best_threshold(y[held], oof[held])
        suspect = labels.background & held & (oof >= cut)
        if not suspect.any() or not (labels.background & ~suspect).any():
            break
        labels = labels.subset(~suspect)
        dropped += int(suspect.sum())
        C, cv, oof = cross_validate(labels, seed)
    cv["background_dropped"] = dropped
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
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = _estimator(C).fit(labels.vectors, y)
    return LinearModel(coef=m.coef_[0].astype(np.float64), intercept=float(m.intercept_[0]),
                       threshold=float(t), C=float(C), cv=cv)
