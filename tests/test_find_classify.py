"""``classify`` on a dataset with one land-cover type planted in known cells
(tests/data/planted/data.py): from 5 positive and 5 negative examples it finds >= 90 % of the
planted fragments in cells it was not shown at precision >= 0.9, on an unindexed copy (the
vector cache, float32) and an indexed one (the index's float16 store); the same from a
GeoJSON of points; a saved model applies to another region; suggestions sit at the
threshold; outputs open with geopandas."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from clirun import run

import mtquery

_spec = importlib.util.spec_from_file_location(
    "planted_data", Path(__file__).parent / "data" / "planted" / "data.py")
planted = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(planted)

ROWS, DIM = 20_000, 128


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """(plain copy, indexed copy, table, planted cell names)."""
    root = tmp_path_factory.mktemp("planted")
    (root / "plain").mkdir()
    (root / "indexed").mkdir()
    path, cells = planted.write(root / "plain" / "planted.parquet", ROWS, DIM, seed=0)
    copy = root / "indexed" / "planted.parquet"
    shutil.copy(path, copy)
    pytest.importorskip("faiss")
    from mtquery.vectors.build import BuildParams, build_index

    build_index(str(copy), params=BuildParams(sidecar="float16"))
    table = pq.read_table(path, columns=["unique_id", "grid_cell", "centre_lat",
                                         "centre_lon", "geometry"])
    return path, copy, table, cells


def examples(table: pa.Table, cells: list[str], seed: int = 0
             ) -> tuple[list[str], list[str], set[str]]:
    """5 positives and 5 negatives: the first fragment of 5 planted / 5 other cells."""
    cell = np.asarray(table.column("grid_cell").to_pylist(), dtype=object)
    uid = np.asarray(table.column("unique_id").to_pylist(), dtype=object)
    is_p = np.isin(cell, cells)
    rng = np.random.default_rng(seed)
    pc = rng.choice(sorted(set(cell[is_p])), 5, replace=False)
    nc = rng.choice(sorted(set(cell[~is_p])), 5, replace=False)
    first = {c: uid[np.flatnonzero(cell == c)[0]] for c in [*pc, *nc]}
    return [first[c] for c in pc], [first[c] for c in nc], set(pc) | set(nc)


def quality(table: pa.Table, cells: list[str], shown: set[str], found: pa.Table
            ) -> tuple[float, float]:
    """(recall, precision) on the fragments of the cells no example came from."""
    cell = np.asarray(table.column("grid_cell").to_pylist(), dtype=object)
    uid = np.asarray(table.column("unique_id").to_pylist(), dtype=object)
    unseen = ~np.isin(cell, list(shown))
    truth = set(uid[unseen & np.isin(cell, cells)].tolist())
    hits = set(found.column("unique_id").to_pylist()) & set(uid[unseen].tolist())
    return len(hits & truth) / len(truth), len(hits & truth) / max(len(hits), 1)


@pytest.mark.parametrize("copy", ["plain", "indexed"])
def test_five_and_five_examples_find_the_planted_type(world, copy, tmp_path):
    import geopandas

    plain, indexed, table, cells = world
    path = plain if copy == "plain" else indexed
    pos, neg, shown = examples(table, cells)
    det = tmp_path / "found.geojson"
    r = mtquery.classify(str(path), positives=pos, negatives=neg, detections=det,
                         output=tmp_path / "all.parquet")
    recall, precision = quality(table, cells, shown, r.detections)
    assert recall >= 0.9 and precision >= 0.9, (recall, precision, r.cv)
    assert r.cv["folds"] >= 2 and 0 < r.threshold < 1 and r.cv["C"] in (0.1, 1, 10, 100)
    assert {"precision", "recall", "average_precision"} <= set(r.cv)
    assert r.labels["background"] > 0  # background negatives, stated
    assert r.table.num_rows == ROWS
    assert (r.detections.column("probability").to_numpy() >= r.threshold).all()
    g = geopandas.read_file(det)
    assert len(g) == r.detections.num_rows and g.crs.to_epsg() == 4326
    assert geopandas.read_parquet(tmp_path / "all.parquet").crs.to_epsg() == 4326


def test_labels_from_a_geojson_of_points(world, tmp_path):
    plain, _, table, cells = world
    pos, neg, shown = examples(table, cells, seed=1)
    where = {u: i for i, u in enumerate(table.column("unique_id").to_pylist())}
    feats = []
    for ids, lab in ((pos, 1), (neg, 0)):
        for u in ids:
            i = where[u]
            lon, lat = (float(table.column(c)[i].as_py()) for c in ("centre_lon",
                                                                     "centre_lat"))
            feats.append({"type": "Feature", "properties": {"label": lab},
                          "geometry": {"type": "Point", "coordinates": [lon, lat]}})
    labels = tmp_path / "labels.geojson"
    labels.write_text(json.dumps({"type": "FeatureCollection", "features": feats}))
    r = mtquery.classify(str(plain), labels=labels)
    recall, precision = quality(table, cells, shown, r.detections)
    assert recall >= 0.9 and precision >= 0.9, (recall, precision, r.cv)
    assert r.labels["join"] == "spatial" and len(r.labels["sha256"]) == 64
    assert r.cv["positives"] >= 5  # a point hits every acquisition of its place


def test_saved_model_applies_elsewhere_and_suggests(world, tmp_path):
    plain, indexed, table, cells = world
    pos, neg, _ = examples(table, cells, seed=2)
    model = tmp_path / "m.json"
    r = mtquery.classify(str(plain), positives=pos, negatives=neg, save_model=model,
                         suggest=7)
    saved = json.loads(model.read_text())
    prov = saved["provenance"]
    assert prov["dim"] == DIM and prov["sklearn_version"] and len(prov["dataset_fingerprint"])
    assert saved["threshold"] == pytest.approx(r.threshold)
    # the same model on a region of the other copy: the same probabilities (float16 store)
    box = (-10.0, 35.0, 30.0, 60.0)
    again = mtquery.classify(str(indexed), model=model, bbox=box)
    assert again.threshold == pytest.approx(r.threshold)
    p = dict(zip(r.table.column("unique_id").to_pylist(),
                 r.table.column("probability").to_pylist()))
    q = dict(zip(again.table.column("unique_id").to_pylist(),
                 again.table.column("probability").to_pylist()))
    assert 0 < len(q) < len(p)
    assert max(abs(p[u] - q[u]) for u in q) <= 2e-3
    # suggestions: unlabelled, nearest the threshold of all
    s = r.suggestions
    assert s.num_rows == 7
    assert not set(s.column("unique_id").to_pylist()) & set(pos + neg)
    gap = np.abs(s.column("probability").to_numpy() - r.threshold)
    others = np.abs(np.array(list(p.values())) - r.threshold)
    assert gap.max() <= np.sort(others)[7 + len(pos) + len(neg) + r.labels["background"]]


def test_classify_cli(world, tmp_path, capsys):
    plain, _, table, cells = world
    pos, neg, _ = examples(table, cells)
    args = ["classify", "-d", plain, "--top", 3, "--suggest", 2]
    for u in pos:
        args += ["--positive", u]
    for u in neg:
        args += ["--negative", u]
    code, out, err = run(capsys, *args, "-q", "--detections", tmp_path / "d.geojson",
                         "--heatmap", tmp_path / "p.tif", "--resolution", 100)
    assert code == 0, err
    for text in ("cross-validation, spatially blocked", "precision", "recall",
                 "average precision", "F1-optimal", "background negatives",
                 "fragments classified", "label these next", f"wrote {tmp_path / 'p.png'}"):
        assert text in out, text
    code, out, err = run(capsys, *args, "-q", "-f", "json")
    doc = json.loads(out)
    assert code == 0 and doc["scored"] == ROWS and len(doc["top"]) == 3
    assert len(doc["suggestions"]) == 2 and 0 < doc["threshold"] < 1


def test_labels_from_a_geoparquet_of_polygons(world, tmp_path):
    import geopandas
    import shapely

    plain, _, table, cells = world
    pos, neg, shown = examples(table, cells, seed=3)
    where = {u: i for i, u in enumerate(table.column("unique_id").to_pylist())}
    rows = []
    for ids, kind in ((pos, "greenhouses"), (neg, "other")):
        for u in ids:
            i = where[u]
            lon, lat = (float(table.column(c)[i].as_py()) for c in ("centre_lon",
                                                                     "centre_lat"))
            rows.append({"kind": kind, "geometry": shapely.box(lon - 0.001, lat - 0.001,
                                                               lon + 0.001, lat + 0.001)})
    labels = tmp_path / "labels.parquet"
    geopandas.GeoDataFrame(rows, crs="EPSG:4326").to_parquet(labels)
    r = mtquery.classify(str(plain), labels=labels, label_column="kind",
                         positive_label="greenhouses")
    recall, precision = quality(table, cells, shown, r.detections)
    assert recall >= 0.9 and precision >= 0.9, (recall, precision, r.cv)
    assert r.labels["label_col"] == "kind" and r.labels["positive_label"] == "greenhouses"


def test_threshold_is_f1_optimal_between_the_classes():
    from mtquery.find.classify import best_threshold

    rng = np.random.default_rng(0)
    y = np.r_[np.ones(5), np.zeros(50)].astype(int)
    p = np.r_[rng.uniform(0.85, 0.95, 5), rng.uniform(0.02, 0.3, 50)]
    t, f1 = best_threshold(y, p)
    assert 0.3 < t < 0.85 and f1 == 1.0
    # overlapping classes: the cut still keeps most positives and few negatives
    p = np.r_[rng.uniform(0.4, 0.9, 5), rng.uniform(0.0, 0.6, 50)]
    t, f1 = best_threshold(y, p)
    assert 0.3 < t < 0.9 and 0 < f1 <= 1
