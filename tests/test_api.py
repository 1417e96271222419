"""The Python API at the package top returns the CLI's rows, as pyarrow Tables."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest
import shapely

import mtquery
from mtquery.cli import main

LAT, LON = 37.6803, -75.548
BBOX = (-75.8, 37.5, -75.4, 37.8)


def cli_json(capsys, *args):
    try:
        main([*map(str, args), "-f", "json"])
    except SystemExit as exc:
        assert not exc.code
    return json.loads(capsys.readouterr().out)


def test_knn_equals_cli_json(capsys):
    table = mtquery.knn("demo", lat=LAT, lon=LON, k=5)
    assert isinstance(table, pa.Table)
    rows = cli_json(capsys, "knn", "--lat", LAT, "--lon", LON, "--k", 5)
    assert table.drop_columns(["geometry"]).to_pylist() == rows
    geoms = shapely.from_wkb(table.column("geometry").to_pylist())
    assert all(g.contains(shapely.Point(r["centre_lon"], r["centre_lat"]))
               for g, r in zip(geoms, rows))


def test_search_equals_cli_json(capsys):
    table = mtquery.search("demo", bbox=BBOX, limit=50)
    rows = cli_json(capsys, "search", "--bbox", ",".join(map(str, BBOX)), "--limit", 50)
    assert table.num_rows == len(rows) > 0
    assert table.drop_columns(["geometry"]).to_pylist() == rows


def test_knn_by_id_ids_and_vector_agree():
    first = mtquery.knn("demo", lat=LAT, lon=LON, k=3, include_self=True, geometry=False)
    uid = first.column("unique_id")[0].as_py()
    by_id = mtquery.knn("demo", id=uid, k=3, include_self=True, geometry=False)
    assert by_id.column("unique_id").to_pylist() == first.column("unique_id").to_pylist()
    by_ids = mtquery.knn("demo", ids=[uid], k=3, include_self=True, geometry=False)
    assert by_ids.equals(by_id)
    s = mtquery.open_session("demo")
    vec = s.con.execute("SELECT embedding FROM embeddings WHERE unique_id = ?",
                        [uid]).fetchone()[0]
    by_vec = mtquery.knn(s, vector=vec, k=3, geometry=False)
    assert by_vec.column("unique_id").to_pylist() == first.column("unique_id").to_pylist()


def test_several_examples_exclude_themselves():
    ids = mtquery.search("demo", limit=2, geometry=False).column("unique_id").to_pylist()
    got = mtquery.knn("demo", ids=ids, k=5, geometry=False).column("unique_id").to_pylist()
    assert len(got) == 5 and not set(ids) & set(got)


def test_info_and_connect():
    info = mtquery.info("demo")
    assert info["rows"] == 2475 and info["dim"] > 0
    con = mtquery.connect("demo")
    assert con.execute("SELECT count(*) FROM embeddings").fetchone()[0] == 2475


def test_api_errors_name_arguments():
    with pytest.raises(mtquery.UsageError, match="exactly one query"):
        mtquery.knn("demo", k=3)
    with pytest.raises(mtquery.UsageError) as err:
        mtquery.knn("demo", lat=LAT, lon=LON, k=0)
    assert err.value.argument == "k" and "--" not in str(err.value)
    with pytest.raises(mtquery.UsageError, match="bbox"):
        mtquery.search("demo", bbox=(1, 2, 3))


def test_api_names_are_not_shadowed_by_modules():
    import importlib
    import pkgutil

    for mod in pkgutil.iter_modules(mtquery.__path__):
        if mod.name != "__main__":
            importlib.import_module(f"mtquery.{mod.name}")
    for name in ("info", "knn", "search", "connect"):
        assert callable(getattr(mtquery, name)) and not isinstance(
            getattr(mtquery, name), type(mtquery)), name
    assert mtquery.info("demo")["rows"] == mtquery.info("demo")["rows"]


def test_examples_with_negatives_match_brute_force():
    import numpy as np

    from mtquery.query.resolve import NEGATIVE_WEIGHT

    s = mtquery.open_session("demo")
    rows = s.con.execute("SELECT unique_id, embedding FROM embeddings ORDER BY unique_id"
                         ).fetchall()
    ids = [r[0] for r in rows]
    x = np.asarray([r[1] for r in rows], np.float64)
    u = x / np.linalg.norm(x, axis=1, keepdims=True)
    pos, neg = [0, 40, 900], [1500, 2000]
    q = u[pos].mean(0) - NEGATIVE_WEIGHT * u[neg].mean(0)
    sim = u @ (q / np.linalg.norm(q))
    sim[pos + neg] = -np.inf
    want = [ids[i] for i in np.argsort(-sim, kind="stable")[:8]]
    got = mtquery.knn(s, ids=[ids[i] for i in pos], not_ids=[ids[i] for i in neg], k=8,
                      exact=True, geometry=False)
    assert got.column("unique_id").to_pylist() == want
    no_neg = mtquery.knn(s, ids=[ids[i] for i in pos], k=8, geometry=False)
    assert no_neg.column("unique_id").to_pylist() != want


def test_examples_through_the_cli(capsys):
    ids = mtquery.search("demo", limit=3, geometry=False).column("unique_id").to_pylist()
    rows = cli_json(capsys, "knn", "--id", ids[0], "--id", ids[1], "--not-id", ids[2],
                    "--k", 4)
    assert len(rows) == 4 and not set(ids) & {r["unique_id"] for r in rows}
    api = mtquery.knn("demo", ids=ids[:2], not_ids=ids[2:], k=4, geometry=False)
    assert api.to_pylist() == rows
