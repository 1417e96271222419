"""Static maps (mtquery.maps, ``mtquery map``, ``knn --map``) and the outputs a GIS opens
(``--format geojson``, GeoParquet)."""

from __future__ import annotations

import json
import math

import duckdb
import matplotlib.image as mpimg
import numpy as np
import pyarrow.parquet as pq
import pytest
from clirun import run

import mtquery
from mtquery.maps import dataset_map, points_map, save
from mtquery.maps.data import pca_rgb, value_colours
from mtquery.maps.draw import LAND, WATER, regions

SAHARA = "-11.2,24.3,-10.8,24.7"
KNN = ["knn", "-d", "demo", "--lat", "37.6803", "--lon", "-75.548", "--k", "5"]


def run_cli(args, capsys):
    return run(capsys, *args)


def _background() -> np.ndarray:
    import matplotlib.colors as mc

    return np.array([[int(round(c * 255)) for c in mc.to_rgb(x)] for x in
                     (WATER, LAND, "white")])


def _coloured(rgb: np.ndarray) -> np.ndarray:
    """Pixels (uint8 RGB) that are not background, land, white or grey-black text."""
    px = rgb.reshape(-1, 3).astype(int)
    near_bg = (np.abs(px[:, None, :] - _background()[None]) <= 6).all(axis=2).any(axis=1)
    grey = (px.max(axis=1) - px.min(axis=1) <= 8) & (px.max(axis=1) < 90)
    return ~near_bg & ~grey


def test_dense_region_fills_its_frame_with_pca_colours():
    fig = dataset_map("demo", bbox=SAHARA)
    fig.canvas.draw()
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert len(axes) == 1
    ax = axes[0]
    buf = np.asarray(fig.canvas.buffer_rgba())[:, :, :3]
    box = ax.get_window_extent()
    h = buf.shape[0]
    crop = buf[int(h - box.y1) + 2:int(h - box.y0) - 2, int(box.x0) + 2:int(box.x1) - 2]
    coloured = _coloured(crop)
    assert coloured.mean() > 0.6, coloured.mean()  # the region fills the frame
    assert len(np.unique(crop.reshape(-1, 3)[coloured], axis=0)) > 100  # PCA colours vary
    y0, y1 = ax.get_ylim()
    assert ax.get_aspect() == pytest.approx(1 / math.cos(math.radians((y0 + y1) / 2)))
    x0, x1 = ax.get_xlim()
    assert -11.25 < x0 < x1 < -10.75 and 24.25 < y0 < y1 < 24.75  # fitted, not the world
    assert "PCA" in fig._suptitle.get_text()
    assert any("km" in t.get_text() for t in ax.texts)  # scale bar


def test_map_cli_png_and_html(tmp_path, capsys):
    png = tmp_path / "map.png"
    code, _, err = run_cli(["map", "-d", "demo", "--bbox", SAHARA, "--color", "pca",
                            "-o", str(png)], capsys)
    assert code == 0, err
    img = (mpimg.imread(png)[:, :, :3] * 255).astype(np.uint8)
    assert _coloured(img).mean() > 0.35
    html = tmp_path / "map.html"
    code, _, err = run_cli(["map", "-d", "demo", "--color", "centre_lat", "-o", str(html)],
                           capsys)
    text = html.read_text()
    assert code == 0 and text.startswith("<!doctype html>") and "<svg" in text


def test_separate_regions_get_their_own_panels():
    fig = dataset_map("demo", color="grid_cell")
    panels = [ax for ax in fig.axes if ax.get_visible() and ax.get_title()]
    assert sorted(t.get_title().split()[0] for t in panels) == ["2450", "25"]
    lat, lon = np.r_[np.zeros(5), np.full(5, 40.0)], np.r_[np.arange(5), np.arange(5)] * 0.02
    assert [len(g) for g in regions(lat, lon)] == [5, 5]
    assert [len(g) for g in regions(lat[:5], lon[:5])] == [5]


@pytest.mark.parametrize(("args", "code", "message"), [
    (["-o", "map.txt"], 2, "must end in"),
    (["--color", "nope", "-o", "m.png"], 2, "color must be pca or a column"),
    (["--bbox", "0,0,1,1", "-o", "m.png"], 2, "nothing to draw"),
    (["--bbox", "1,2,3", "-o", "m.png"], 2, "bbox"),
])
def test_map_bad_input(tmp_path, capsys, args, code, message):
    out = [a if not a.startswith("m") else str(tmp_path / a) for a in args]
    rc, _, err = run_cli(["map", "-d", "demo", *out], capsys)
    assert rc == code and message in err and len(err.strip().splitlines()) == 1
    assert not list(tmp_path.iterdir())


def test_knn_map_draws_query_and_neighbours(tmp_path, capsys):
    png = tmp_path / "knn.png"
    code, out, err = run_cli([*KNN, "-f", "json", "--map", str(png)], capsys)
    assert code == 0, err
    assert "geometry" not in json.loads(out)[0]  # --map does not change the rows
    img = (mpimg.imread(png)[:, :, :3] * 255).astype(np.uint8)
    red = (img[:, :, 0] > 180) & (img[:, :, 1] < 60) & (img[:, :, 2] < 60)
    assert red.sum() > 200  # the query's outline
    code, _, err = run_cli([*KNN, "--map", str(tmp_path / "x.jpg")], capsys)
    assert code == 2 and "must end in" in err


def test_pca_colours_match_eval_pca():
    from mtquery.eval.results import pca_rgb as eval_pca
    from mtquery.vectors.store import unit_rows

    x = np.random.default_rng(3).normal(size=(300, 12)).astype(np.float32)
    x[5] = 0.0
    ours = pca_rgb(x)
    ok = np.ones(len(x), bool)
    ok[5] = False
    assert np.allclose(ours[ok, :3], eval_pca(unit_rows(x[ok]).astype(np.float64)), atol=1e-5)
    assert np.allclose(ours[5], (0.75, 0.75, 0.75, 1.0))  # zero vector: grey


def test_value_colours():
    c = value_colours([1.0, None, 3.0], "v")
    assert c.norm == (1.0, 3.0) and np.allclose(c.rgba[1], (0.75, 0.75, 0.75, 1.0))
    c = value_colours(["a", "b", "a"], "cat")
    assert set(c.legend) == {"a", "b"} and np.allclose(c.rgba[0], c.rgba[2])


def test_points_map_for_sampled_centres(tmp_path):
    lat = np.r_[np.linspace(24.4, 24.6, 30), np.linspace(37.66, 37.7, 10)]
    lon = np.r_[np.linspace(-11.1, -10.9, 30), np.linspace(-75.6, -75.55, 10)]
    fig = points_map(lat, lon, np.random.default_rng(0).random((40, 3)), "sample")
    assert len([ax for ax in fig.axes if ax.get_visible()]) == 2
    save(fig, tmp_path / "p.png")
    assert (tmp_path / "p.png").stat().st_size > 1000


def test_geojson_output_reads_back_in_geopandas(tmp_path, capsys):
    import geopandas as gpd

    cases = [(KNN, 5), (["search", "-d", "demo", "--bbox", SAHARA, "--limit", "9"], 9),
             (["cell", "--lat", "37.68", "--lon", "-75.55"], 1),
             (["sql", "-d", "demo", "SELECT unique_id, ST_AsWKB(geometry) AS geometry FROM "
               "embeddings LIMIT 4"], 4)]
    for args, n in cases:
        path = tmp_path / "out.geojson"
        code, _, err = run_cli([*args, "-f", "geojson", "-o", str(path)], capsys)
        assert code == 0, err
        gdf = gpd.read_file(path)
        assert len(gdf) == n and gdf.crs.to_epsg() == 4326, args
        assert gdf.geometry.geom_type.eq("Polygon").all()
    code, out, _ = run_cli([*KNN, "-f", "geojson"], capsys)
    rows = json.loads(run_cli([*KNN, "-f", "json"], capsys)[1])
    assert [f["properties"] for f in json.loads(out)["features"]] == rows
    code, _, err = run_cli(["sql", "-d", "demo", "SELECT 1 AS x", "-f", "geojson"], capsys)
    assert code == 2 and "geojson needs a geometry" in err


def test_parquet_keeps_geometry_as_geoparquet(tmp_path, capsys):
    import geopandas as gpd

    path = tmp_path / "knn.parquet"
    code, _, err = run_cli([*KNN, "-f", "parquet", "-o", str(path)], capsys)
    assert code == 0, err
    geo = json.loads(pq.read_schema(path).metadata[b"geo"])
    assert geo["primary_column"] == "geometry" and geo["columns"]["geometry"]["encoding"] == (
        "WKB")
    gdf = gpd.read_parquet(path)
    assert len(gdf) == 5 and gdf.crs.to_epsg() == 4326
    assert gdf.total_bounds == pytest.approx(geo["columns"]["geometry"]["bbox"])
    con = duckdb.connect()
    con.execute("LOAD spatial")
    kind = con.execute("SELECT ST_GeometryType(geometry) FROM read_parquet(?) LIMIT 1",
                       [str(path)]).fetchone()[0]
    assert kind == "POLYGON"
    table = mtquery.knn("demo", lat=37.6803, lon=-75.548, k=5)
    assert gdf["unique_id"].tolist() == table.column("unique_id").to_pylist()


def test_eval_report_pca_map_uses_region_panels(tmp_path, monkeypatch):
    import mtquery.maps as maps
    from mtquery.eval import report

    seen = []

    def spy(*args, **kwargs):
        fig = points_map(*args, **kwargs)
        seen.append(len([ax for ax in fig.axes if ax.get_visible()]))
        return fig

    monkeypatch.setattr(maps, "points_map", spy)
    lat = [24.5, 24.52, 24.54, 37.68, 37.70]
    lon = [-11.0, -11.02, -11.04, -75.6, -75.58]
    doc = {"pca_map": {"lat": lat, "lon": lon, "rgb": [[0.2, 0.4, 0.6]] * 5, "n_total": 5},
           "dataset": {"spec": "demo"}, "models": []}
    assert report._plot_pca(doc, tmp_path / "pca.png")
    assert seen == [2] and (tmp_path / "pca.png").read_bytes()[:4] == b"\x89PNG"
