"""Classification and retrieval metrics, in numpy, with the definitions spelled out.

Single-label (``y_true``, ``y_pred`` class indices over ``n_classes``):
  OA = correct / n; balanced accuracy = mean recall over classes present in ``y_true``;
  per-class F1 = 2 TP / (2 TP + FP + FN) (0 when a class is neither true nor predicted);
  macro-F1 = mean per-class F1 over classes present in ``y_true`` or ``y_pred``.
Multi-label (``Y_true`` 0/1, ``scores`` in [0, 1], prediction = score >= 0.5):
  mAP = mean over classes with a positive in ``Y_true`` of average precision
  (AP = sum_n (R_n - R_{n-1}) P_n over distinct score thresholds, as scikit-learn);
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

import numpy as np


def confusion(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true), np.asarray(y_pred)), 1)
    return cm


def single_label(y_true: np.ndarray, y_pred: np.ndarray, classes: list[str]) -> dict:
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    n = len(classes)
    cm = confusion(y_true, y_pred, n)
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(axis=1).astype(np.float64)
    predicted = cm.sum(axis=0).astype(np.float64)
    denom = support + predicted
    f1 = np.divide(2 * tp, denom, out=np.zeros(n), where=denom > 0)
    present = support > 0
    recall = np.divide(tp, support, out=np.zeros(n), where=present)
    active = denom > 0
    return {
        "oa": float(tp.sum() / max(len(y_true), 1)),
        "balanced_accuracy": float(recall[present].mean()) if present.any() else 0.0,
        "macro_f1": float(f1[active].mean()) if active.any() else 0.0,
        "per_class_f1": {c: float(f1[i]) for i, c in enumerate(classes) if active[i]},
        "support": {c: int(support[i]) for i, c in enumerate(classes) if present[i]},
    }


def average_precision(y: np.ndarray, s: np.ndarray) -> float:
    """Non-interpolated AP of one class (scikit-learn's definition, ties grouped)."""
    y = np.asarray(y).astype(bool)
    s = np.asarray(s, dtype=np.float64)
    n_pos = y.sum()
    if n_pos == 0:
        return float("nan")
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    tps = np.cumsum(y)
    fps = np.cumsum(~y)
    last = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]  # last index of each distinct score
    tp, fp = tps[last], fps[last]
    precision = tp / (tp + fp)
    recall = tp / n_pos
    prev = np.r_[0.0, recall[:-1]]
    return float(np.sum((recall - prev) * precision))


def multi_label(Y_true: np.ndarray, scores: np.ndarray, classes: list[str],
                threshold: float = 0.5) -> dict:
    Y_true = np.asarray(Y_true).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    Y_pred = scores >= threshold
    tp = (Y_true & Y_pred).sum(axis=0).astype(np.float64)
    fp = (~Y_true & Y_pred).sum(axis=0).astype(np.float64)
    fn = (Y_true & ~Y_pred).sum(axis=0).astype(np.float64)
    denom = 2 * tp + fp + fn
    f1 = np.divide(2 * tp, denom, out=np.zeros(len(classes)), where=denom > 0)
    active = denom > 0
    aps = np.array([average_precision(Y_true[:, j], scores[:, j]) for j in range(len(classes))])
    has_pos = Y_true.any(axis=0)
    micro_den = 2 * tp.sum() + fp.sum() + fn.sum()
    return {
        "map": float(np.mean(aps[has_pos])) if has_pos.any() else 0.0,
        "micro_f1": float(2 * tp.sum() / micro_den) if micro_den > 0 else 0.0,
        "macro_f1": float(f1[active].mean()) if active.any() else 0.0,
        "per_class_f1": {c: float(f1[j]) for j, c in enumerate(classes) if active[j]},
        "per_class_ap": {c: float(aps[j]) for j, c in enumerate(classes) if has_pos[j]},
        "support": {c: int(Y_true[:, j].sum()) for j, c in enumerate(classes) if has_pos[j]},
    }


def retrieval(rel: np.ndarray, n_rel: np.ndarray, ks: list[int]) -> dict:
    """Mean P@k, R@k, AP@k, nDCG@k over queries with at least one relevant item."""
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
