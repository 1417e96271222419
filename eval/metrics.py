"""Classification and retrieval metrics, with the definitions spelled out.

Classification metrics are scikit-learn's (imported inside the functions, so ``import mtquery``
stays light); retrieval metrics are computed here, because their cut-off and normalisation
(AP@k over ``min(k, n_rel)``) have no scikit-learn counterpart.

Single-label (``y_true``, ``y_pred`` class indices over ``n_classes``):
  OA = correct / n; balanced accuracy = mean recall over classes present in ``y_true``;
  per-class F1 = 2 TP / (2 TP + FP + FN), reported for classes present in ``y_true`` or
  ``y_pred``; macro-F1 = the mean of those.
Multi-label (``Y_true`` 0/1, ``scores`` in [0, 1], prediction = score >= 0.5):
  mAP = mean over classes with a positive in ``Y_true`` of average precision
  (AP = sum_n (R_n - R_{n-1}) P_n over distinct score thresholds);
  micro-F1 from pooled TP/FP/FN; macro-F1 = mean per-class F1 over classes with a true or
  predicted positive.
Retrieval (``rel``: (q, K) 0/1 relevance of the ranked results, ``n_rel``: relevant items in the
database per query), for each k <= K:
  P@k = hits in top k / k; R@k = hits in top k / n_rel;
  AP@k = sum_{i<=k} P@i * rel_i / min(k, n_rel);
  nDCG@k = sum_{i<=k} rel_i / log2(i + 1) / sum_{i<=min(k, n_rel)} 1 / log2(i + 1).
  Queries with n_rel = 0 are left out (and counted).
"""

from __future__ import annotations

import warnings

import numpy as np


def single_label(y_true: np.ndarray, y_pred: np.ndarray, classes: list[str]) -> dict:
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    support = np.bincount(y_true, minlength=len(classes))
    # classes present in the truth or the predictions: scikit-learn's default label set
    active = np.union1d(y_true, y_pred)
    if len(y_true) == 0:
        return {"oa": 0.0, "balanced_accuracy": 0.0, "macro_f1": 0.0, "per_class_f1": {},
                "support": {}}
    f1 = f1_score(y_true, y_pred, labels=active, average=None, zero_division=0.0)
    with warnings.catch_warnings():
        # "y_pred contains classes not in y_true": those classes are left out, as intended
        warnings.simplefilter("ignore", UserWarning)
        balanced = balanced_accuracy_score(y_true, y_pred)
    return {
        "oa": float(accuracy_score(y_true, y_pred)),
        "balanced_accuracy": float(balanced),
        "macro_f1": float(f1.mean()),
        "per_class_f1": {classes[c]: float(v) for c, v in zip(active, f1, strict=True)},
        "support": {c: int(support[i]) for i, c in enumerate(classes) if support[i] > 0},
    }


def multi_label(Y_true: np.ndarray, scores: np.ndarray, classes: list[str],
                threshold: float = 0.5) -> dict:
    from sklearn.metrics import average_precision_score, f1_score

    Y_true = np.asarray(Y_true).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    Y_pred = scores >= threshold
    has_pos = Y_true.any(axis=0)
    active = has_pos | Y_pred.any(axis=0)
    # nan for a class that is neither true nor predicted; such classes are not reported
    f1 = f1_score(Y_true, Y_pred, average=None, zero_division=np.nan)
    aps = {j: float(average_precision_score(Y_true[:, j], scores[:, j]))
           for j in np.flatnonzero(has_pos)}
    return {
        "map": float(np.mean(list(aps.values()))) if aps else 0.0,
        "micro_f1": float(f1_score(Y_true, Y_pred, average="micro", zero_division=0.0)),
        "macro_f1": float(f1[active].mean()) if active.any() else 0.0,
        "per_class_f1": {c: float(f1[j]) for j, c in enumerate(classes) if active[j]},
        "per_class_ap": {classes[j]: ap for j, ap in aps.items()},
        "support": {c: int(Y_true[:, j].sum()) for j, c in enumerate(classes) if has_pos[j]},
    }


def retrieval(rel: np.ndarray, n_rel: np.ndarray, ks: list[int]) -> dict:
    """Mean P@k, R@k, AP@k, nDCG@k over queries with at least one relevant item.

    Hand-written: scikit-learn's ``ndcg_score`` would need each query's relevance over the
    whole database (q x N) for the ideal DCG, and its ``average_precision_score`` has no
    cut-off; the cumulative sums below give every k in one pass."""
    rel = np.asarray(rel, dtype=np.float64)
    n_rel = np.asarray(n_rel, dtype=np.float64)
    keep = n_rel > 0
    rel, n_rel = rel[keep], n_rel[keep]
    K = rel.shape[1] if rel.ndim == 2 else 0
    out: dict = {"queries_used": int(keep.sum()), "queries_without_relevant": int((~keep).sum())}
    if not keep.any():
        return out
    ranks = np.arange(1, K + 1, dtype=np.float64)
    hits = np.cumsum(rel, axis=1)
    prec_at = hits / ranks
    disc = 1.0 / np.log2(ranks + 1)
    dcg = np.cumsum(rel * disc, axis=1)
    idcg_cum = np.cumsum(disc)
    ap_num = np.cumsum(prec_at * rel, axis=1)
    for k in ks:
        kk = min(k, K)
        p = hits[:, kk - 1] / k
        r = hits[:, kk - 1] / n_rel
        denom = np.minimum(k, n_rel)
        ap = ap_num[:, kk - 1] / denom
        ideal = idcg_cum[np.minimum(denom, K).astype(int) - 1]
        nd = dcg[:, kk - 1] / ideal
        out[f"precision@{k}"] = float(p.mean())
        out[f"recall@{k}"] = float(r.mean())
        out[f"map@{k}"] = float(ap.mean())
        out[f"ndcg@{k}"] = float(nd.mean())
    return out


def mean_std(values: list[float]) -> dict:
    a = np.asarray(values, dtype=np.float64)
    return {"mean": float(a.mean()), "std": float(a.std(ddof=0)), "n": int(len(a))}
