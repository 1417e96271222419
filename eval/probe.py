"""Linear probe and k-NN classifier on the same seeded splits.

Linear probe: features standardised on the training side (scikit-learn ``StandardScaler``),
``LogisticRegression`` (lbfgs; multinomial for single-label, one-vs-rest for multi-label).
k-NN: cosine similarity on L2-normalised vectors, k = 1, 5, 20 (capped at the training size),
neighbours ranked by ``mtquery.vectors.store.top_k_rows`` (ties to the lower training row);
single-label: majority vote, ties to the larger summed similarity; multi-label: a class's score
is the fraction of the k neighbours that have it (predicted at >= 0.5).
"""

from __future__ import annotations

import time
import warnings

import numpy as np

from mtquery.errors import DataError, UsageError
from mtquery.eval import metrics
from mtquery.eval.dataset import LabelledSet
from mtquery.eval.splits import (
    SPLITS,
    Split,
    choose_h3_resolution,
    h3_cells,
    random_split,
    spatial_split,
    typical_spacing_km,
)
from mtquery.vectors.store import top_k_rows, unit_rows

KNN_KS = (1, 5, 20)
MIN_SAMPLES = 10


def check_task(ds: LabelledSet, seeds: list[int]) -> None:
    if len(set(seeds)) != len(seeds) or not seeds:
        raise UsageError("seeds must be a non-empty list of distinct integers", "seeds")
    if len(ds.classes) < 2:
        only = ds.classes[0] if ds.classes else "none"
        raise DataError(f"the labels hold a single class ({only!r}) after the join; a probe "
                        "needs at least 2 classes")
    if len(ds) < MIN_SAMPLES:
        raise DataError(f"only {len(ds)} labelled fragments; a train/test split over "
                        f"{len(seeds)} seed(s) needs at least {MIN_SAMPLES}")


def make_split(ds: LabelledSet, kind: str, seed: int, train_fraction: float,
               cells: np.ndarray | None, buffer_rings: int) -> Split:
    if kind == "random":
        strata = None if ds.multi_label else ds.y_single()
        return random_split(len(ds), seed, train_fraction, strata)
    if kind == "spatial":
        assert cells is not None
        return spatial_split(cells, seed, train_fraction, buffer_rings)
    raise UsageError(f"unknown split {kind!r}; choose random or spatial", "split")


def knn_neighbours(train: np.ndarray, test: np.ndarray, k: int,
                   batch: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """Top-k cosine neighbours (indices into ``train``, similarities), ties to the lower index."""
    A = unit_rows(train)
    B = unit_rows(test)
    k = min(k, len(A))
    idx = np.empty((len(B), k), dtype=np.int64)
    sim = np.empty((len(B), k), dtype=np.float32)
    for s in range(0, len(B), batch):
        idx[s:s + batch], sim[s:s + batch] = top_k_rows(B[s:s + batch] @ A.T, k)
    return idx, sim


def knn_predict_single(nbr: np.ndarray, sim: np.ndarray, y_train: np.ndarray, k: int,
                       n_classes: int) -> np.ndarray:
    nb = nbr[:, :k]
    votes = np.zeros((len(nb), n_classes), dtype=np.float64)
    weight = np.zeros_like(votes)
    rows = np.repeat(np.arange(len(nb)), nb.shape[1])
    np.add.at(votes, (rows, y_train[nb].ravel()), 1.0)
    np.add.at(weight, (rows, y_train[nb].ravel()), sim[:, :k].ravel().astype(np.float64))
    # majority first, summed similarity breaks ties (scaled below one vote)
    score = votes + weight / (k + 1.0) * 1e-3
    return score.argmax(axis=1)


def knn_scores_multi(nbr: np.ndarray, Y_train: np.ndarray, k: int) -> np.ndarray:
    return Y_train[nbr[:, :k]].mean(axis=1)


def linear_probe(Xtr: np.ndarray, Xte: np.ndarray, ytr: np.ndarray, multi: bool, seed: int,
                 max_iter: int, C: float) -> tuple[np.ndarray, dict]:
    """Fit on standardised features; return predictions (single) or scores (multi)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(Xtr)
    A = scaler.transform(Xtr)
    B = scaler.transform(Xte)
    info = {"converged": True}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        if not multi:
            if len(np.unique(ytr)) < 2:
                raise DataError("the training side of a split holds a single class; use more "
                                "data, another seed or a coarser spatial split")
            clf = LogisticRegression(C=C, max_iter=max_iter, random_state=seed)
            clf.fit(A, ytr)
            pred_local = clf.predict(B)
            out = pred_local
        else:
            n_classes = ytr.shape[1]
            scores = np.zeros((len(B), n_classes), dtype=np.float64)
            for j in range(n_classes):
                col = ytr[:, j]
                if col.min() == col.max():  # constant on the training side
                    scores[:, j] = float(col[0])
                    continue
                clf = LogisticRegression(C=C, max_iter=max_iter, random_state=seed)
                clf.fit(A, col)
                scores[:, j] = clf.predict_proba(B)[:, 1]
            out = scores
    if any(issubclass(w.category, ConvergenceWarning) for w in caught):
        info["converged"] = False
    return out, info


def evaluate_split(ds: LabelledSet, split: Split, *, ks: tuple[int, ...] = KNN_KS,
                   max_iter: int = 1000, C: float = 1.0, knn: bool = True) -> dict:
    tr, te = split.train, split.test
    if len(te) == 0 or len(tr) < 2:
        raise DataError(f"split {split.kind} seed {split.seed} has {len(tr)} training and "
                        f"{len(te)} test samples; more labelled fragments are needed")
    res: dict = {"seed": split.seed, "n_train": int(len(tr)), "n_test": int(len(te)),
                 "split_sha256": split.hash(ds.unique_id), **split.info}
    timings: dict = {}
    t0 = time.perf_counter()
    if ds.multi_label:
        Y = ds.y_multi()
        scores, info = linear_probe(ds.X[tr], ds.X[te], Y[tr], True, split.seed, max_iter, C)
        res["linear"] = {**metrics.multi_label(Y[te], scores, ds.classes), **info}
    else:
        y = ds.y_single()
        pred, info = linear_probe(ds.X[tr], ds.X[te], y[tr], False, split.seed, max_iter, C)
        res["linear"] = {**metrics.single_label(y[te], pred, ds.classes), **info}
    timings["linear_s"] = time.perf_counter() - t0
    if knn:
        t0 = time.perf_counter()
        kmax = min(max(ks), len(tr))
        nbr, sim = knn_neighbours(ds.X[tr], ds.X[te], kmax)
        res["knn"] = {}
        for k in ks:
            kk = min(k, len(tr))
            if ds.multi_label:
                Y = ds.y_multi()
                m = metrics.multi_label(Y[te], knn_scores_multi(nbr, Y[tr], kk), ds.classes)
            else:
                y = ds.y_single()
                p = knn_predict_single(nbr, sim, y[tr], kk, len(ds.classes))
                m = metrics.single_label(y[te], p, ds.classes)
            m["k_used"] = kk
            res["knn"][f"k{k}"] = m
        timings["knn_s"] = time.perf_counter() - t0
    res["_timings"] = timings
    return res


HEADLINE = {False: ("oa", "balanced_accuracy", "macro_f1"), True: ("map", "micro_f1", "macro_f1")}


def summarise(runs: list[dict]) -> dict:
    """mean ± std over seeds of every scalar metric, per method; per-class F1 means."""
    out: dict = {}
    methods = ["linear"] + [f"knn/{k}" for k in (runs[0].get("knn") or {})]
    for method in methods:
        def get(r, method=method):
            if method == "linear":
                return r["linear"]
            return r["knn"][method.split("/")[1]]

        first = get(runs[0])
        entry: dict = {}
        for key, val in first.items():
            if isinstance(val, float) and key not in ("converged",):
                entry[key] = metrics.mean_std([get(r)[key] for r in runs])
        per_class: dict[str, list[float]] = {}
        for r in runs:
            for c, v in get(r)["per_class_f1"].items():
                per_class.setdefault(c, []).append(v)
        entry["per_class_f1"] = {c: float(np.mean(v)) for c, v in sorted(per_class.items())}
        out[method] = entry
    return out


def run_probe(ds: LabelledSet, *, splits: list[str], seeds: list[int],
              train_fraction: float = 0.8, h3_res: int | None = None, buffer_rings: int = 0,
              max_iter: int = 1000, C: float = 1.0, knn: bool = True) -> dict:
    """Every split kind x seed; returns {"splits": {kind: {"runs": [...], "summary": {...}}},
    "gap": {...}, "spatial": {...}}."""
    check_task(ds, seeds)
    for s in splits:
        if s not in SPLITS:
            raise UsageError(f"unknown split {s!r}; choose random, spatial or both", "split")
    result: dict = {"splits": {}}
    cells = None
    if "spatial" in splits:
        if h3_res is None:
            res, spacing = choose_h3_resolution(ds.lat, ds.lon)
            chosen = "from data spacing (finest res with mean edge >= 2 x spacing)"
        else:
            if not 0 <= h3_res <= 15:
                raise UsageError(f"h3_res must be between 0 and 15, got {h3_res}", "h3_res")
            res, chosen = h3_res, "set"
            spacing = typical_spacing_km(ds.lat, ds.lon)
        cells = h3_cells(ds.lat, ds.lon, res)
        result["spatial"] = {"h3_res": int(res), "resolution": chosen,
                             "typical_spacing_km": round(float(spacing), 4)
                             if np.isfinite(spacing) else None}
    timings: dict = {"linear_s": 0.0, "knn_s": 0.0}
    for kind in splits:
        runs = []
        for seed in seeds:
            split = make_split(ds, kind, seed, train_fraction, cells, buffer_rings)
            if cells is not None and kind == "spatial":
                shared = set(cells[split.train].tolist()) & set(cells[split.test].tolist())
                assert not shared, "spatial split shares H3 cells"
            r = evaluate_split(ds, split, max_iter=max_iter, C=C, knn=knn)
            for k, v in r.pop("_timings").items():
                timings[k] += v
            runs.append(r)
        result["splits"][kind] = {"runs": runs, "summary": summarise(runs)}
    if "random" in splits and "spatial" in splits:
        gap: dict = {}
        for method, entry in result["splits"]["random"]["summary"].items():
            sp = result["splits"]["spatial"]["summary"][method]
            gap[method] = {k: entry[k]["mean"] - sp[k]["mean"] for k in HEADLINE[ds.multi_label]
                           if k in entry and k in sp}
        result["gap_random_minus_spatial"] = gap
    result["_timings"] = timings
    return result
