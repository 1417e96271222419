"""The map page's server: its API answers as the CLI does, bad input is HTTP 400 with the
one-line message and the server keeps serving, the session cannot write or read elsewhere,
and ``mtquery serve`` fails in one line on a port in use or a dataset that does not open."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from urllib.parse import urlencode

import duckdb
import pytest
from webclient import get

from mtquery.cli import main

QUERY = {"lat": 37.6803, "lon": -75.548, "k": 5}
SAHARA = "-11.2,24.3,-10.8,24.7"


def cli_json(args: list[str], capsys) -> list[dict]:
    try:
        main([*args, "--format", "json"])
    except SystemExit as exc:
        assert not exc.code, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def demo_ids(n: int) -> list[str]:
    import mtquery

    return mtquery.search("demo", bbox=SAHARA, limit=n, geometry=False).column(
        "unique_id").to_pylist()


def test_knn_equals_cli_json(server, capsys):
    a, b, c = demo_ids(3)
    cases = [
        (QUERY, ["--lat", "37.6803", "--lon", "-75.548", "--k", "5"]),
        ({"id": a, "k": 4}, ["--id", a, "--k", "4"]),
        ({"id": a[:12], "k": 3, "bbox": SAHARA}, ["--id", a[:12], "--k", "3", "--bbox", SAHARA]),
        ({"ids": f"{a},{b}", "k": 6}, ["--ids", f"{a},{b}", "--k", "6"]),
        ({"ids": f"{a},{b}", "not_ids": c, "k": 3}, ["--ids", f"{a},{b}", "--not-id", c,
                                                     "--k", "3"]),
        ({**QUERY, "start": "2020-02-19", "end": "2020-02-19", "include_self": "true"},
         ["--lat", "37.6803", "--lon", "-75.548", "--k", "5", "--start", "2020-02-19",
          "--end", "2020-02-19", "--include-self"]),
    ]
    for params, args in cases:
        status, _, body = get(server, "/api/knn", params)
        assert status == 200, body
        assert json.loads(body) == cli_json(["knn", "-d", "demo", *args], capsys), params


def test_search_equals_cli_json(server, capsys):
    for params, args in [({"bbox": SAHARA, "limit": 7}, ["--bbox", SAHARA, "--limit", "7"]),
                         ({"start": "2020-02-19", "limit": 3}, ["--start", "2020-02-19",
                                                                "--limit", "3"])]:
        status, _, body = get(server, "/api/search", params)
        assert status == 200
        rows = json.loads(body)
        assert rows and rows == cli_json(["search", "-d", "demo", *args], capsys)


BAD = [
    ({"lat": 91, "lon": 0}, "lat must be a latitude"),
    ({"lat": "abc", "lon": 0}, "lat must be a number"),
    ({"lat": 37.68}, "lat and lon go together"),
    ({**QUERY, "k": 0}, "k must be a positive number"),
    ({**QUERY, "k": "ten"}, "k must be a whole number"),
    ({**QUERY, "k": 10**12}, "k is at most"),
    ({**QUERY, "bbox": "1,2,3"}, "bbox"),
    ({**QUERY, "start": "2020-13-45"}, "start"),
    ({**QUERY, "format": "xml"}, "format must be one of"),
    ({**QUERY, "sql": "COPY embeddings TO '/tmp/x'"}, "unknown parameter 'sql'"),
    ({"id": "no-such-id"}, "unknown unique_id"),
    ({"lat": 0, "lon": 0}, "no fragment covers"),
    ({}, "give exactly one query"),
    ({"ids": ","}, "ids takes 1 to"),
]


@pytest.mark.parametrize(("params", "message"), BAD)
def test_bad_knn_parameters_are_400_and_the_server_keeps_serving(server, params, message):
    status, headers, body = get(server, "/api/knn", params)
    assert status == 400, body
    err = json.loads(body)["error"]
    assert message in err and "\n" not in err
    assert get(server, "/api/knn", QUERY)[0] == 200


@pytest.mark.parametrize(("params", "message"), [
    ({"limit": 0}, "limit must be a positive number"),
    ({"limit": 10**9}, "limit is at most 100000 in the web API"),
    ({"limit": -3}, "limit must be a positive number"),
    ({"bbox": "10,0,0,10"}, "bbox"),
    ({"limit": "all"}, "limit must be a whole number"),
    ({"limit": 5, "limit ": 6}, "unknown parameter"),
])
def test_bad_search_parameters_are_400(server, params, message):
    status, _, body = get(server, "/api/search", params)
    assert status == 400 and message in json.loads(body)["error"]
    assert get(server, "/api/search", {"limit": 1})[0] == 200


def test_repeated_parameter_is_400(server):
    status, _, body = get(server, "/api/knn?lat=1&lat=2&lon=3")
    assert status == 400 and "give lat once" in json.loads(body)["error"]


def test_geojson_and_exports(server):
    import geopandas as gpd

    status, headers, body = get(server, "/api/knn", {**QUERY, "format": "geojson"})
    assert status == 200 and headers["content-type"].startswith("application/geo+json")
    fc = json.loads(body)
    rows = json.loads(get(server, "/api/knn", QUERY)[2])
    assert [f["properties"] for f in fc["features"]] == rows
    assert all(f["geometry"]["type"] == "Polygon" for f in fc["features"])
    status, headers, body = get(server, "/api/knn", {**QUERY, "format": "parquet"})
    assert status == 200 and "knn.parquet" in headers["content-disposition"]
    gdf = gpd.read_parquet(io.BytesIO(body))
    assert len(gdf) == 5 and gdf.crs.to_epsg() == 4326
    assert list(gdf["unique_id"]) == [r["unique_id"] for r in rows]
    status, _, body = get(server, "/api/search", {"bbox": SAHARA, "limit": 4,
                                                  "format": "csv"})
    assert status == 200 and body.decode().splitlines()[0].startswith('"unique_id"')
    assert len(body.decode().splitlines()) == 5


def test_fragment_info_coverage(server):
    import mtquery

    status, _, body = get(server, "/api/fragment", {"lat": 37.6803, "lon": -75.548})
    feature = json.loads(body)
    assert status == 200 and feature["geometry"]["type"] == "Polygon"
    self_row = mtquery.knn("demo", lat=37.6803, lon=-75.548, k=1, include_self=True,
                           geometry=False)
    assert feature["properties"]["unique_id"] == self_row.column("unique_id")[0].as_py()
    info = json.loads(get(server, "/api/info")[2])
    assert info["rows"] == 2475 and "sources" not in info and info["text_query"] is False
    cov = json.loads(get(server, "/api/coverage")[2])
    assert cov["coverage"] == "fragments" and len(cov["features"]) == 2475
    assert get(server, "/api/info", {"x": 1})[0] == 400


def test_text_query_refused_without_a_text_tower(server):
    status, _, body = get(server, "/api/knn", {"text": "sand dunes"})
    assert status == 400 and "has no text tower" in json.loads(body)["error"]


def test_text_query_equals_cli(tmp_path_factory, capsys):
    pytest.importorskip("open_clip")  # the models extra (installed by make test)
    from pathlib import Path

    from mtquery.generate.pipeline import generate
    from mtquery.web.server import start

    scene = Path(__file__).parent / "data" / "virginia_120m"
    out = str(tmp_path_factory.mktemp("siglip_tiny_web"))
    generate("siglip-tiny", sorted(str(p) for p in scene.glob("B*.tif")), out,
             product_id="p1", timestamp="20200101T000000")
    running = start(out)
    try:
        info = json.loads(get(running, "/api/info")[2])
        assert info["text_query"] is True
        status, _, body = get(running, "/api/knn", {"text": "a harbour with ships", "k": 4})
        assert status == 200, body
        assert json.loads(body) == cli_json(["knn", "-d", out, "--text",
                                             "a harbour with ships", "--k", "4"], capsys)
        status, _, body = get(running, "/api/knn", {"text": " ", "k": 4})
        assert status == 400
    finally:
        running.stop()


def test_page_static_files_and_headers(server):
    status, headers, body = get(server, "/")
    assert status == 200 and b"/static/app.js" in body
    assert "default-src 'self'" in headers["content-security-policy"]
    status, headers, body = get(server, "/static/maplibre-gl.mjs")
    assert status == 200 and headers["content-type"].startswith("text/javascript")
    for name in ("index.html", "app.js"):
        text = get(server, f"/static/{name}")[2].decode()
        assert "http://" not in text and "https://" not in text  # nothing from a CDN
    assert get(server, "/api/info", headers={"Host": "evil.example"})[0] == 400


def test_session_is_read_only(server):
    con = server.session.con
    for sql in ("COPY (SELECT 1) TO '/tmp/mtquery-web-test.csv'",
                "SELECT * FROM read_csv('/etc/hostname')",
                "ATTACH '/tmp/mtquery-web-test.duckdb'",
                "SET enable_external_access = true"):
        with pytest.raises(duckdb.Error):
            con.execute(sql)
    assert get(server, "/api/knn", QUERY)[0] == 200


def _serve(args: list[str], timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mtquery", "serve", "--no-browser", *args],
                          capture_output=True, text=True, timeout=timeout)


def test_port_in_use_is_one_line_exit_1():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        out = _serve(["--port", str(port)])
    assert out.returncode == 1
    assert out.stderr.strip().splitlines() == [
        f"mtquery: error: port {port} on 127.0.0.1 is in use; stop what listens there or "
        "choose another port"]


def test_dataset_that_fails_to_open_is_one_line_exit_1(tmp_path):
    fake = tmp_path / "fake.parquet"
    fake.write_text("not parquet")
    for dataset in (str(tmp_path / "missing.parquet"), str(fake)):
        out = _serve(["--port", "0", "--dataset", dataset])
        assert out.returncode == 1, out.stderr
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("mtquery: error: ")


def test_bad_serve_options():
    out = _serve(["--port", "0", "--tiles", "ftp://example.org/tiles"])
    assert out.returncode == 2 and "tiles must be" in out.stderr
    out = _serve(["--port", "70000"])
    assert out.returncode == 2 and "port must be" in out.stderr


def test_serve_cli_answers_and_stops_on_interrupt():
    proc = subprocess.Popen([sys.executable, "-m", "mtquery", "serve", "--no-browser",
                             "--port", "0"], stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ))
    try:
        line = proc.stderr.readline()
        assert "serving the map page at http://127.0.0.1:" in line, line
        url = line.split(" at ")[1].split()[0]
        with urllib.request.urlopen(url + "api/knn?" + urlencode(QUERY), timeout=60) as r:
            assert len(json.load(r)) == 5
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
    assert proc.returncode == 0


def test_tiles_option_adds_the_layer_and_its_origin_only():
    from mtquery.web.server import start

    running = start("demo", tiles="https://tile.example.org/{z}/{x}/{y}.png")
    try:
        info = json.loads(get(running, "/api/info")[2])
        assert info["tiles"] == "https://tile.example.org/{z}/{x}/{y}.png"
        csp = get(running, "/")[1]["content-security-policy"]
        assert "img-src 'self' data: blob: https://tile.example.org;" in csp
        assert csp.count("https://") == 2  # images and connections, nowhere else
    finally:
        running.stop()
