"""Evaluation metrics and splits against hand-computed values on small cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mtquery.eval import metrics
from mtquery.eval.probe import knn_neighbours, knn_predict_single, knn_scores_multi
from mtquery.eval.sampling import cap_per_class, one_per_cell_date
from mtquery.eval.splits import h3_cells, random_split, spatial_split


def test_single_label_by_hand():
    # truth a a b b c, predicted a b b b a
    m = metrics.single_label(np.array([0, 0, 1, 1, 2]), np.array([0, 1, 1, 1, 0]),
                             ["a", "b", "c"])
    assert m["oa"] == pytest.approx(3 / 5)
    assert m["balanced_accuracy"] == pytest.approx((1 / 2 + 2 / 2 + 0 / 1) / 3)
    # F1 a: 2*1/(2*1+1+1) = .5; b: 4/5; c: 0
    assert m["per_class_f1"] == pytest.approx({"a": 0.5, "b": 0.8, "c": 0.0})
    assert m["macro_f1"] == pytest.approx((0.5 + 0.8 + 0.0) / 3)
    assert m["support"] == {"a": 2, "b": 2, "c": 1}


def test_single_label_matches_sklearn():
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

    rng = np.random.default_rng(3)
    yt = rng.integers(0, 4, 200)
    yp = np.where(rng.random(200) < 0.6, yt, rng.integers(0, 4, 200))
    m = metrics.single_label(yt, yp, list("abcd"))
    assert m["oa"] == pytest.approx(accuracy_score(yt, yp))
    assert m["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(yt, yp))
    assert m["macro_f1"] == pytest.approx(f1_score(yt, yp, average="macro"))


def test_average_precision_by_hand():
    # relevant at ranks 1 and 3: AP = (1/1 + 2/3) / 2; a class with no positive has no AP
    m = metrics.multi_label(np.array([[1, 0], [0, 0], [1, 0], [0, 0]]),
                            np.array([[0.9, 0.1], [0.8, 0.2], [0.7, 0.3], [0.1, 0.4]]),
                            ["p", "q"])
    assert m["per_class_ap"] == pytest.approx({"p": (1 + 2 / 3) / 2})
    assert m["map"] == pytest.approx((1 + 2 / 3) / 2)


def test_multi_label_by_hand():
    Y = np.array([[1, 0], [1, 1], [0, 1], [0, 0]])
    S = np.array([[0.9, 0.2], [0.4, 0.8], [0.6, 0.7], [0.1, 0.6]])
    m = metrics.multi_label(Y, S, ["x", "y"])
    # x: pred [1,0,1,0] -> tp1 fp1 fn1 -> F1 .5 ; y: pred [0,1,1,1] -> tp2 fp1 fn0 -> F1 .8
    assert m["per_class_f1"] == pytest.approx({"x": 0.5, "y": 0.8})
    assert m["macro_f1"] == pytest.approx(0.65)
    assert m["micro_f1"] == pytest.approx(2 * 3 / (2 * 3 + 2 + 1))
    # AP x: scores .9(1) .6(0) .4(1) .1(0) -> (1 + 2/3)/2 ; y: .8(1) .7(1) .6(0) .2(0) -> 1
    assert m["per_class_ap"] == pytest.approx({"x": (1 + 2 / 3) / 2, "y": 1.0})
    assert m["map"] == pytest.approx(((1 + 2 / 3) / 2 + 1) / 2)


def test_retrieval_metrics_by_hand():
    rel = np.array([[1, 0, 1], [0, 0, 0], [0, 1, 1]])
    n_rel = np.array([2, 0, 4])
    m = metrics.retrieval(rel, n_rel, [1, 3])
    assert m["queries_used"] == 2 and m["queries_without_relevant"] == 1
    # query 1: P@1 1, R@1 .5, AP@1 1, nDCG@1 1; P@3 2/3, R@3 1, AP@3 (1 + 2/3)/2,
    #          nDCG@3 (1 + 1/log2 4) / (1 + 1/log2 3)
    # query 3: P@1 0 ...; P@3 2/3, R@3 2/4, AP@3 (1/2 + 2/3)/3,
    #          nDCG@3 (1/log2 3 + 1/log2 4) / (1 + 1/log2 3 + 1/log2 4)
    l3, l4 = 1 / math.log2(3), 1 / math.log2(4)
    assert m["precision@1"] == pytest.approx(0.5)
    assert m["recall@1"] == pytest.approx(0.25)
    assert m["map@1"] == pytest.approx(0.5)
    assert m["ndcg@1"] == pytest.approx(0.5)
    assert m["precision@3"] == pytest.approx(2 / 3)
    assert m["recall@3"] == pytest.approx((1 + 0.5) / 2)
    assert m["map@3"] == pytest.approx(((1 + 2 / 3) / 2 + (1 / 2 + 2 / 3) / 3) / 2)
    assert m["ndcg@3"] == pytest.approx(((1 + l4) / (1 + l3) + (l3 + l4) / (1 + l3 + l4)) / 2)


def test_knn_by_hand():
    train = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9], [0.2, 0.8]], dtype=np.float32)
    test = np.array([[1, 0.05], [0.05, 1]], dtype=np.float32)
    y = np.array([0, 0, 1, 1, 1])
    nbr, sim = knn_neighbours(train, test, 3)
    assert nbr[0].tolist() == [0, 1, 4] and nbr[1].tolist() == [2, 3, 4]
    assert np.all(np.diff(sim, axis=1) <= 0)
    assert knn_predict_single(nbr, sim, y, 1, 2).tolist() == [0, 1]
    assert knn_predict_single(nbr, sim, y, 3, 2).tolist() == [0, 1]
    Y = np.eye(2, dtype=np.int8)[y]
    assert knn_scores_multi(nbr, Y, 3)[0].tolist() == pytest.approx([2 / 3, 1 / 3])


def test_random_split_stratified_and_seeded():
    strata = np.array([0] * 10 + [1] * 5)
    a = random_split(15, 7, 0.8, strata)
    b = random_split(15, 7, 0.8, strata)
    assert a.train.tolist() == b.train.tolist()
    assert set(a.train) | set(a.test) == set(range(15)) and not set(a.train) & set(a.test)
    assert set(strata[a.test]) == {0, 1}
    ids = np.array([f"id{i}" for i in range(15)], dtype=object)
    assert a.hash(ids) == b.hash(ids) != random_split(15, 8, 0.8, strata).hash(ids)


def test_spatial_split_shares_no_h3_cell():
    import h3

    rng = np.random.default_rng(0)
    lat = rng.uniform(40, 42, 400)
    lon = rng.uniform(-4, -1, 400)
    cells = h3_cells(lat, lon, 5)
    for seed in (0, 1, 2):
        s = spatial_split(cells, seed, 0.8)
        assert not set(cells[s.train]) & set(cells[s.test])
        assert len(s.test) > 0 and len(s.train) > 0
        assert 0.1 < len(s.test) / 400 < 0.35
        # with a buffer, no training cell touches a test cell
        b = spatial_split(cells, seed, 0.8, buffer_rings=1)
        near = {n for c in set(cells[b.test]) for n in h3.grid_disk(c, 1)}
        assert not set(cells[b.train]) & near
        assert b.info["buffer_dropped"] > 0


def test_balanced_sampling():
    labels = [("a",)] * 10 + [("b",)] * 3
    keep = cap_per_class(labels, 4, 0)
    got = [labels[i][0] for i in keep]
    assert got.count("a") == 4 and got.count("b") == 3
    cells = np.array(["c1"] * 4 + ["c2"] * 2)
    ts = np.array(["20200101T100000"] * 2 + ["20200301T100000"] * 2 + ["2020-01-01"] * 2)
    ids = np.array([f"u{i}" for i in range(6)])
    keep = one_per_cell_date(cells, ts, ids, 0)
    assert len(keep) == 3
    assert keep.tolist() == one_per_cell_date(cells, ts, ids[::1], 0).tolist()


# ---------------------------------------------------------------- against the old numbers
# Values computed by the hand-written metrics / scaler / PCA / top-k that eval used before
# scikit-learn and mtquery.vectors.store replaced them (commit 4187156), on the fixed data
# below; the new code must agree within 1e-9.

OLD_SINGLE = {
    "oa": 0.59, "balanced_accuracy": 0.584902587427288, "macro_f1": 0.5094553743662094,
    "per_class_f1": {"a": 0.6524822695035462, "b": 0.5346534653465347, "c": 0.5684210526315789,
                     "d": 0.6605504587155964, "e": 0.640625, "f": 0.0},
    "support": {"a": 71, "b": 52, "c": 55, "d": 55, "e": 67}}
OLD_MULTI = {
    "map": 0.31656797858645813, "micro_f1": 0.305019305019305, "macro_f1": 0.245749227526062,
    "per_class_f1": {"u": 0.3711340206185567, "v": 0.3, "w": 0.4, "x": 0.40336134453781514,
                     "y": 0.0, "z": 0.0},
    "per_class_ap": {"u": 0.3678464073784271, "v": 0.21932307581370683,
                     "w": 0.3157846897481801, "x": 0.40488571999197664, "y": 0.275},
    "support": {"u": 39, "v": 28, "w": 42, "x": 51, "y": 33}}
OLD_RETRIEVAL = {
    "queries_used": 47, "queries_without_relevant": 3,
    "precision@1": 0.1702127659574468, "recall@1": 0.01283373836565326,
    "map@1": 0.1702127659574468, "ndcg@1": 0.1702127659574468,
    "precision@5": 0.2595744680851063, "recall@5": 0.11501593156128428,
    "map@5": 0.15219858156028368, "ndcg@5": 0.24885092641809997,
    "precision@10": 0.27872340425531916, "recall@10": 0.25616369912282566,
    "map@10": 0.13581527114391856, "ndcg@10": 0.2792253368605474,
    "precision@20": 0.3021276595744681, "recall@20": 0.5724592581115538,
    "map@20": 0.21531003578434618, "ndcg@20": 0.4210581520330947}


def _close(got, want):
    if isinstance(want, dict):
        assert set(got) == set(want)
        for k in want:
            _close(got[k], want[k])
    else:
        assert got == pytest.approx(want, abs=1e-9, rel=0)


def _vectors() -> np.ndarray:
    X = np.random.default_rng(14).normal(size=(300, 16)).astype(np.float32)
    X[10] = X[3] * 2  # same direction as row 3: tied cosine scores
    X[11] = X[3]
    return X


def test_metrics_match_the_old_numbers():
    rng = np.random.default_rng(11)
    yt = rng.integers(0, 5, 300)
    yp = np.where(rng.random(300) < 0.5, yt, rng.integers(0, 6, 300))
    # f: predicted, never true; g: neither
    _close(metrics.single_label(yt, yp, list("abcdefg")), OLD_SINGLE)
    rng = np.random.default_rng(12)
    Y = (rng.random((120, 6)) < 0.3).astype(np.int8)
    Y[:, 5] = 0
    S = np.round(rng.random((120, 6)), 1)  # tied scores
    S[:, 4] = 0.1  # never predicted
    _close(metrics.multi_label(Y, S, list("uvwxyz")), OLD_MULTI)
    rng = np.random.default_rng(13)
    rel = (rng.random((50, 20)) < 0.3).astype(np.int8)
    n_rel = rel.sum(axis=1) + rng.integers(0, 10, 50)
    rel[:3] = 0
    n_rel[:3] = 0
    _close(metrics.retrieval(rel, n_rel, [1, 5, 10, 20]), OLD_RETRIEVAL)


def test_knn_exact_search_pca_and_probe_match_the_old_numbers():
    from mtquery.eval.probe import linear_probe
    from mtquery.eval.results import pca_rgb
    from mtquery.eval.retrieval import exact_search

    X = _vectors()
    nbr, sim = knn_neighbours(X[:200], X[200:], 20)
    assert int(nbr.sum()) == 203569
    assert nbr[0].tolist() == [31, 110, 58, 46, 171, 137, 16, 123, 74, 82, 92, 100, 145, 150,
                               118, 126, 3, 10, 11, 184]  # 3, 10, 11 tie: lower row first
    # float32 similarities: the BLAS kernel's summation order moves the 7th digit
    assert float(sim.astype(np.float64).sum()) == pytest.approx(863.2154072225094, rel=1e-8)
    q = np.array([3, 10, 50, 299])
    assert exact_search(X, q, 5)[0].tolist() == [
        [10, 11, 145, 184, 212], [3, 11, 145, 184, 212], [262, 121, 176, 60, 249],
        [103, 156, 297, 151, 142]]
    cells = (np.arange(300) // 7).astype(str)
    assert exact_search(X, q, 5, cells)[0].tolist() == [
        [10, 11, 145, 184, 212], [3, 145, 184, 212, 16], [262, 121, 176, 60, 249],
        [103, 156, 151, 142, 51]]
    rgb = pca_rgb(X.astype(np.float64))
    assert float(rgb.sum()) == pytest.approx(443.5940485249582, abs=1e-9)
    assert rgb[:2] == pytest.approx(np.array([
        [0.06455039024122443, 0.5716663328310058, 0.30288359052278235],
        [0.8403432728360454, 0.4450008907913387, 0.16897813574730103]]), abs=1e-9)
    y = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0.5).astype(int)
    pred, _ = linear_probe(X[:200], X[200:], y[:200], False, 0, 1000, 1.0)
    assert np.bincount(pred).tolist() == [31, 54, 15]
    assert pred[:20].tolist() == [0, 1, 2, 1, 1, 2, 1, 2, 2, 1, 1, 1, 2, 0, 0, 1, 0, 1, 1, 0]
    Y = np.stack([X[:, 0] > 0, X[:, 1] > 0.5, X[:, 2] > 1.0], axis=1).astype(np.int8)
    scores, _ = linear_probe(X[:200], X[200:], Y[:200], True, 0, 1000, 1.0)
    assert float(scores.sum()) == pytest.approx(105.94439321933244, abs=1e-9)
    assert scores[:2] == pytest.approx(np.array([
        [0.17975184321403503, 0.28520023822784424, 0.016597893089056015],
        [0.9639197587966919, 0.0003291081520728767, 0.01915169507265091]]), abs=1e-9)


def test_knn_ties_at_the_cut_go_to_the_lower_row():
    # four rows tie with the query (cosine 0.707): k = 2 and 3 keep the lowest rows of the tie
    train = np.array([[1, 0], [0, 1], [0, 2], [0, 3], [-1, 0]], dtype=np.float32)
    query = np.array([[1, 1]], dtype=np.float32)
    assert knn_neighbours(train, query, 3)[0].tolist() == [[0, 1, 2]]
    assert knn_neighbours(train[::-1].copy(), query, 2)[0].tolist() == [[1, 2]]
