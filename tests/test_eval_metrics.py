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
