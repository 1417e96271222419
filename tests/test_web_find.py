"""The map page's label loop API: ``/api/score`` and ``/api/classify`` answer what
``mtquery.score`` / ``mtquery.classify`` compute (the best rows as GeoJSON, the heat map as a
PNG layer of bounded size), export the detections as GeoJSON / GeoParquet, and refuse bad or
unbounded requests with HTTP 400 and one line."""

from __future__ import annotations

import base64
import io
import json

import pytest
from webclient import get

import mtquery

VIRGINIA = "-75.75,37.55,-75.45,37.8"
SAHARA = "-11.2,24.3,-10.8,24.7"


def _png(layer: dict):
    from PIL import Image

    head, data = layer["image"].split(",", 1)
    assert head == "data:image/png;base64"
    return Image.open(io.BytesIO(base64.b64decode(data)))


def test_score_equals_the_library(server):
    status, _, body = get(server, "/api/score", {"lat": 37.6803, "lon": -75.548,
                                                "bbox": VIRGINIA, "limit": 7})
    assert status == 200, body
    doc = json.loads(body)
    want = mtquery.score("demo", lat=37.6803, lon=-75.548, bbox=VIRGINIA)
    assert doc["method"] == "score" and doc["value"] == "score" and doc["rows"] == 25
    got = [f["properties"]["unique_id"] for f in doc["detections"]["features"]]
    assert got == want.column("unique_id").to_pylist()[:7]
    heat = doc["heatmap"]
    im = _png(heat)
    assert im.size == (heat["width"], heat["height"]) and max(im.size) <= 512
    w, s, e, n = heat["bounds"]
    assert w < -75.6 < e and s < 37.68 < n and heat["lo"] <= heat["hi"]


def test_classify_equals_the_library(server):
    ids = mtquery.score("demo", lat=37.6803, lon=-75.548, bbox=VIRGINIA).column(
        "unique_id").to_pylist()
    pos, neg = ids[1:4], ids[-3:]
    params = {"positives": ",".join(pos), "negatives": ",".join(neg), "bbox": VIRGINIA,
              "limit": 5}
    status, _, body = get(server, "/api/classify", params)
    assert status == 200, body
    doc = json.loads(body)
    want = mtquery.classify("demo", positives=pos, negatives=neg, bbox=VIRGINIA)
    assert doc["method"] == "classify" and doc["value"] == "probability"
    got = [f["properties"]["unique_id"] for f in doc["detections"]["features"]]
    assert got == want.table.column("unique_id").to_pylist()[:5]
    assert doc["threshold"] == pytest.approx(want.threshold)
    assert doc["cv"]["positives"] == want.cv["positives"] == 3
    assert doc["cv"]["negatives"] == want.cv["negatives"] >= 3
    assert 0 <= doc["heatmap"]["lo"] <= doc["heatmap"]["hi"] <= 1

    import geopandas as gpd

    status, headers, body = get(server, "/api/classify", {**params, "format": "parquet"})
    assert status == 200 and "detections.parquet" in headers["content-disposition"]
    gdf = gpd.read_parquet(io.BytesIO(body))
    assert list(gdf["unique_id"]) == got and gdf.crs.to_epsg() == 4326
    status, headers, body = get(server, "/api/classify", {**params, "format": "geojson"})
    assert status == 200 and len(json.loads(body)["features"]) == 5


def test_one_example_scores_the_region(server):
    uid = mtquery.search("demo", bbox=SAHARA, limit=1).column("unique_id")[0].as_py()
    status, _, body = get(server, "/api/score", {"ids": uid, "bbox": SAHARA})
    doc = json.loads(body)
    assert status == 200 and doc["detections"]["features"][0]["properties"]["unique_id"] == uid
    assert len(doc["detections"]["features"]) == 50  # the default top


@pytest.mark.parametrize(("path", "params", "message"), [
    ("/api/score", {"bbox": VIRGINIA}, "give a query"),
    ("/api/score", {"lat": 37.68, "lon": -75.55, "limit": 0}, "limit must be 1 to 1000"),
    ("/api/score", {"lat": 37.68, "lon": -75.55, "limit": 5000}, "limit must be 1 to 1000"),
    ("/api/score", {"lat": 37.68, "lon": -75.55, "format": "csv"}, "format must be json"),
    ("/api/score", {"lat": 37.68, "lon": -75.55, "bbox": "1,2,3"}, "bbox"),
    ("/api/score", {"lat": 37.68, "lon": -75.55, "sql": "x"}, "unknown parameter 'sql'"),
    ("/api/score", {"ids": "no-such-id"}, "no-such-id"),
    ("/api/classify", {"negatives": "a"}, "positives takes 1 to 500"),
    ("/api/classify", {"positives": ",".join(f"i{n}" for n in range(501))},
     "positives takes 1 to 500"),
    ("/api/classify", {"positives": "a,a"}, "names a unique_id twice"),
    ("/api/classify", {"positives": "a", "negatives": "a"}, "both positive and negative"),
])
def test_bad_parameters_are_400_in_one_line(server, path, params, message):
    status, _, body = get(server, path, params)
    err = json.loads(body)["error"]
    assert status == 400 and message in err and "\n" not in err, err


def test_a_region_too_large_is_refused_before_scoring(server, monkeypatch):
    from mtquery.web import find_routes

    monkeypatch.setattr(find_routes, "MAX_REGION_ROWS", 100)
    status, _, body = get(server, "/api/score", {"lat": 37.6803, "lon": -75.548})
    err = json.loads(body)["error"]
    assert status == 400 and "2,475 fragments" in err and "zoom in" in err
    status, _, _ = get(server, "/api/score", {"lat": 37.6803, "lon": -75.548,
                                              "bbox": VIRGINIA})
    assert status == 200  # 25 fragments in view
