"""Generation: known answers, Core parquet + scene inputs, marker, resume, corrupt samples."""

from __future__ import annotations

import csv
import functools
import http.server
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import shapely
from pyproj import Transformer

from mtquery.generate import fragment_grid, fragment_offsets
from mtquery.generate.fragment import core_window_origin
from mtquery.standard.pixel_order import detect_pixel_bbox_order
from mtquery.standard.schema import check_columns

DATA = Path(__file__).parent / "data"
SCENE = DATA / "virginia_120m"
PY = sys.executable


def _load_maker():
    spec = importlib.util.spec_from_file_location("core_virginia_make",
                                                  DATA / "core_virginia" / "make_data.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


MAKER = _load_maker()
# marker in fragment (row 0, col 4) of 419U_667L: an off-diagonal fragment
MARKER = {"cell": "419U_667L", "row": 100, "col": 900, "size": 20, "value": 60000}


@pytest.fixture(scope="session")
def core_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("core")
    MAKER.build(d, marker=MARKER)
    return d


@pytest.fixture(scope="session")
def spectral_run(core_dir, tmp_path_factory) -> Path:
    from mtquery.generate.pipeline import generate

    out = tmp_path_factory.mktemp("out_spectral")
    s = generate("spectral", [str(core_dir)], str(out), shard_size=2)
    assert s.samples_failed == 0 and s.rows_total == 9 * 25
    return out


def _read(out: Path) -> pa.Table:
    return pq.read_table(sorted(out.glob("part-*.parquet")))


def _cli(*args, env=None):
    e = dict(os.environ, MTQUERY_OFFLINE="1", **(env or {}))
    return subprocess.run([PY, "-c", "from mtquery.cli import main; main()", *args],
                          capture_output=True, text=True, env=e)


# ------------------------------------------------------------------ known answers


@pytest.mark.parametrize("h,f,expected", [
    (1068, 224, [0, 211, 422, 633, 844]), (1068, 384, [0, 342, 684]), (534, 224, [0, 155, 310]),
    (1000, 224, [0, 194, 388, 582, 776]), (300, 224, [0, 76]), (224, 224, [0])])
def test_fragment_offsets_known_answers(h, f, expected):
    assert fragment_offsets(h, f) == expected


def test_fragment_counts():
    assert len(fragment_grid(1068, 224)) == 25
    assert len(fragment_grid(1068, 384)) == 9


def test_core_window_origins_of_40_real_samples():
    rows = list(csv.DictReader((DATA / "demo" / "core_s2l2a_geotransform_sample.csv").open()))
    assert len(rows) == 40
    for r in rows:
        x, y = core_window_origin(r["grid_cell"], r["crs"])
        assert abs(x - float(r["origin_x"])) < 1e-6 and abs(y - float(r["origin_y"])) < 1e-6


# ------------------------------------------------------------------ Core parquet input


def test_core_output_is_standard(spectral_run):
    t = _read(spectral_run)
    assert check_columns(t.schema) == []
    geo = json.loads(t.schema.metadata[b"geo"])
    assert geo["primary_column"] == "geometry"
    assert t.num_rows == 225 and len(set(t.column("unique_id").to_pylist())) == 225
    assert t.schema.field("embedding").type == pa.list_(pa.float32(), 60)
    assert set(t.column("utm_crs").to_pylist()) == {"EPSG:32618"}
    m = json.loads((spectral_run / "_mtquery" / "manifest.json").read_text())
    assert m["model"]["name"] == "spectral" and m["counts"]["rows"] == 225
    assert m["counts"]["samples_failed"] == 0 and "numpy" in m["versions"]
    assert m["inputs"][0]["row_groups"] == 9
    assert detect_pixel_bbox_order(t) == "own"


def test_marker_fragment_has_marker_footprint(spectral_run):
    t = _read(spectral_run)
    cells = np.array(t.column("grid_cell").to_pylist())
    sel = np.flatnonzero(cells == MARKER["cell"])
    emb = np.asarray(t.column("embedding").combine_chunks().flatten()).reshape(-1, 60)[sel]
    b04 = 3  # spectral: first 12 values are the per-band means in band order; B04 is 4th
    hit = sel[int(np.argmax(emb[:, b04]))]
    pb = t.column("pixel_bbox")[int(hit)].as_py()
    assert pb == [0, 844, 224, 1068]  # [row_off, col_off, row_off+f, col_off+f]
    crs = "EPSG:32618"
    ulx, uly = core_window_origin(MARKER["cell"], crs)
    k = MARKER["size"]
    x = ulx + (MARKER["col"] + k / 2) * 10.0
    y = uly - (MARKER["row"] + k / 2) * 10.0
    lon, lat = Transformer.from_crs(crs, "EPSG:4326", always_xy=True).transform(x, y)
    geoms = shapely.from_wkb(t.column("geometry").to_pylist())
    assert geoms[hit].contains(shapely.Point(lon, lat))
    utm = shapely.from_wkt(t.column("utm_footprint")[int(hit)].as_py())
    assert utm.contains(shapely.Point(x, y))
    # the only fragment holding the marker; the transposed footprint would not hold it
    holding = [i for i in sel if geoms[i].contains(shapely.Point(lon, lat))]
    assert holding == [hit]


def test_resume_after_interrupt_gives_same_rows(core_dir, spectral_run, tmp_path, monkeypatch):
    from mtquery.generate import job, pipeline

    out = tmp_path / "out"
    real = job.build_table
    calls = {"n": 0}

    def boom(*a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(job, "build_table", boom)
    with pytest.raises(KeyboardInterrupt):
        pipeline.generate("spectral", [str(core_dir)], str(out), shard_size=2)
    assert len(list(out.glob("part-*.parquet"))) == 2
    (out / ".part-0000-00002.parquet.x.tmp").write_bytes(b"half")  # a killed write
    monkeypatch.setattr(job, "build_table", real)
    s = pipeline.generate("spectral", [str(core_dir)], str(out), shard_size=2)
    assert s.samples_resumed == 4 and s.samples_done == 5
    a, b = _read(out), _read(spectral_run)
    assert sorted(a.column("unique_id").to_pylist()) == sorted(b.column("unique_id").to_pylist())
    assert a.num_rows == 225 and not list(out.glob(".*.tmp"))
    # a rerun of a finished run changes nothing
    s2 = pipeline.generate("spectral", [str(core_dir)], str(out), shard_size=2)
    assert s2.samples_done == 0 and s2.samples_resumed == 9 and _read(out).num_rows == 225


def test_rerun_with_other_settings_is_refused(core_dir, spectral_run):
    from mtquery.errors import UsageError
    from mtquery.generate.pipeline import generate

    with pytest.raises(UsageError, match="other settings"):
        generate("spectral", [str(core_dir)], str(spectral_run), shard_size=3)


def test_corrupt_and_missing_band_samples_are_skipped(tmp_path):
    src = tmp_path / "src"
    MAKER.build(src, n_cells=4, corrupt={"418U_668L": "bytes", "418U_667L": "missing"})
    r = _cli("generate", "--model", "spectral", "--input", str(src), "--output",
             str(tmp_path / "o"), "--quiet")
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr
    assert "418U_668L" in r.stderr and "418U_667L" in r.stderr
    assert "2 sample(s) failed" in r.stderr
    t = _read(tmp_path / "o")
    assert t.num_rows == 50
    m = json.loads((tmp_path / "o" / "_mtquery" / "manifest.json").read_text())
    assert m["counts"]["samples_failed"] == 2
    assert {f["grid_cell"] for f in m["failed"]} == {"418U_668L", "418U_667L"}
    assert all(f["product_id"] == MAKER.PRODUCT_ID for f in m["failed"])


def test_limit_and_progress_events(core_dir, tmp_path):
    from mtquery.generate.pipeline import generate

    events = []
    s = generate("spectral", [str(core_dir)], str(tmp_path / "o"), limit=4, shard_size=3,
                 batch_size=25, progress=events.append)
    assert _read(tmp_path / "o").num_rows == 100 and s.rows_total == 100
    assert {e.task for e in events} == {"generate"} and {e.unit for e in events} == {"samples"}
    assert events[0].total == 4 and events[0].advance == 0
    assert sum(e.advance for e in events) == 4
    assert sum(e.counters.get("fragments", 0) for e in events) == 100
    assert len(events) > 2  # reported as batches finish, not once at the end
    resumed = []
    generate("spectral", [str(core_dir)], str(tmp_path / "o"), limit=4, shard_size=3,
             batch_size=25, progress=resumed.append)
    assert sum(e.advance for e in resumed) == 4


def test_cli_draws_progress_on_a_terminal(core_dir, tmp_path):
    """The CLI renders the library's events (rich bar with rates) when run on a terminal."""
    import pty

    master, slave = pty.openpty()
    chunks = []

    def drain():
        while True:
            try:
                data = os.read(master, 4096)
            except OSError:
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    env = dict(os.environ, MTQUERY_OFFLINE="1", COLUMNS="160", TERM="xterm")
    r = subprocess.run([PY, "-c", "from mtquery.cli import main; main()", "generate", "-m",
                        "spectral", "-i", str(core_dir), "-o", str(tmp_path / "o"), "--limit",
                        "4", "--batch-size", "25"], stdout=slave, stderr=slave, env=env,
                       timeout=300)
    os.close(slave)
    reader.join(timeout=10)
    os.close(master)
    text = b"".join(chunks).decode(errors="replace")
    assert r.returncode == 0, text
    assert "generate" in text and "fragments/s" in text and "4/4" in text, text
    assert "4 samples embedded" in text


class _RangeHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def do_GET(self):  # minimal HTTP range support
        path = self.translate_path(self.path)
        rng = self.headers.get("Range")
        if not rng or not os.path.isfile(path):
            return super().do_GET()
        size = os.path.getsize(path)
        a, b = rng.split("=")[1].split("-")
        if not a:  # a suffix range: the last b bytes
            a, b = max(0, size - int(b)), size - 1
        a, b = int(a), min(int(b) if b != "" else size - 1, size - 1)
        with open(path, "rb") as f:
            f.seek(a)
            data = f.read(b - a + 1)
        self.send_response(206)
        self.send_header("Content-Range", f"bytes {a}-{b}/{size}")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def test_remote_core_parquet_over_http(core_dir, spectral_run, tmp_path):
    from mtquery.generate.pipeline import generate

    handler = functools.partial(_RangeHandler, directory=str(core_dir))
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    try:
        url = f"http://127.0.0.1:{srv.server_address[1]}/images/part_00000.parquet"
        generate("spectral", [url], str(tmp_path / "o"), limit=3, shard_size=2)
    finally:
        srv.shutdown()
    a = _read(tmp_path / "o")
    b = _read(spectral_run).slice(0, 75)
    assert a.column("unique_id").to_pylist() == b.column("unique_id").to_pylist()


def test_tiny_model_batches_span_samples(core_dir, tmp_path):
    from mtquery.generate.pipeline import generate

    s = generate("siglip-tiny", [str(core_dir)], str(tmp_path / "o"), limit=2, batch_size=4)
    t = _read(tmp_path / "o")  # 9 fragments of 384 px per sample; batches of 4 span samples
    assert s.rows_total == 18 and t.schema.field("embedding").type.list_size == 32
    assert detect_pixel_bbox_order(t) == "own"
    assert np.isfinite(np.asarray(t.column("embedding").combine_chunks().flatten())).all()


# ------------------------------------------------------------------ scenes


def test_scene_band_files_give_full_core_windows(tmp_path):
    from mtquery.generate.pipeline import generate

    files = [str(p) for p in sorted(SCENE.glob("B*.tif"))]
    generate("spectral", files, str(tmp_path / "o"), product_id="P1", timestamp="T1")
    t = _read(tmp_path / "o")
    assert t.num_rows == 25 and set(t.column("grid_cell").to_pylist()) == {"419U_667L"}
    assert set(t.column("product_id").to_pylist()) == {"P1"}
    ulx, uly = core_window_origin("419U_667L", "EPSG:32618")
    utm = shapely.from_wkt(t.column("utm_footprint").to_pylist())
    x0, _, _, y1 = shapely.total_bounds(utm)
    assert abs(x0 - ulx) < 1e-6 and abs(y1 - uly) < 1e-6
    assert abs(shapely.total_bounds(utm)[2] - x0 - 10680) < 1e-6


def test_stac_item_gives_product_id_and_timestamp(tmp_path):
    from mtquery.generate.pipeline import generate

    assets = {k: {"href": f"https://example.invalid/x/{b}.tif", "type": "image/tiff"}
              for k, b in [("coastal", "B01"), ("blue", "B02"), ("green", "B03"),
                           ("red", "B04"), ("rededge1", "B05"), ("rededge2", "B06"),
                           ("rededge3", "B07"), ("nir", "B08"), ("nir08", "B8A"),
                           ("nir09", "B09"), ("swir16", "B11"), ("swir22", "B12")]}
    item = {"type": "Feature", "id": "S2X_TEST", "assets": assets,
            "properties": {"datetime": "2021-06-01T15:50:31Z",
                           "s2:product_uri": "S2X_MSIL1C_TEST.SAFE"}}
    d = tmp_path / "item"
    shutil.copytree(SCENE, d)
    (d / "item.json").write_text(json.dumps(item))
    generate("spectral", [str(d / "item.json")], str(tmp_path / "o"))
    t = _read(tmp_path / "o")
    assert set(t.column("product_id").to_pylist()) == {"S2X_MSIL1C_TEST"}
    assert set(t.column("timestamp").to_pylist()) == {"2021-06-01T15:50:31Z"}


# ------------------------------------------------------------------ errors


def test_errors_are_one_line(tmp_path, core_dir):
    r = _cli("generate", "-m", "nope", "-i", str(core_dir), "-o", str(tmp_path / "a"))
    assert r.returncode == 2 and "unknown model" in r.stderr and "Traceback" not in r.stderr
    r = _cli("generate", "-m", "ssl4eo-s1rtc-tiny", "-i", str(core_dir), "-o", str(tmp_path / "b"))
    assert r.returncode == 2 and "needs bands" in r.stderr and "vv" in r.stderr
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"not parquet at all")
    r = _cli("generate", "-m", "spectral", "-i", str(bad), "-o", str(tmp_path / "c"))
    assert r.returncode == 1 and "cannot read" in r.stderr and "Traceback" not in r.stderr
    r = _cli("generate", "-m", "spectral", "-i", str(tmp_path / "missing"), "-o",
             str(tmp_path / "d"))
    assert r.returncode == 1 and "does not exist" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_pixel_order_detection_reference_and_unknown(spectral_run):
    from mtquery.generate.fragment import fragment_footprints

    t = _read(spectral_run)
    pb = np.array(t.column("pixel_bbox").to_pylist())
    cells = t.column("grid_cell").to_pylist()
    lat, lon = [], []
    for i in range(0, t.num_rows, 25):
        origin = core_window_origin(cells[i], "EPSG:32618")
        fp = fragment_footprints(pb[i:i + 25][:, [1, 0, 3, 2]], origin, 10.0, "EPSG:32618")
        lat += fp.centre_lat.tolist()
        lon += fp.centre_lon.tolist()
    ref = t.set_column(t.schema.get_field_index("centre_lat"), "centre_lat",
                       pa.array(lat, pa.float32()))
    ref = ref.set_column(t.schema.get_field_index("centre_lon"), "centre_lon",
                         pa.array(lon, pa.float32()))
    assert detect_pixel_bbox_order(ref) == "reference"
    diag = t.filter(pa.array(pb[:, 0] == pb[:, 1]))
    assert detect_pixel_bbox_order(diag) == "unknown"
    assert detect_pixel_bbox_order(t.slice(0, 1)) == "unknown"


def test_bundled_demo_is_spectral_pipeline_output():
    root = Path(__file__).parents[1] / "mtquery" / "data"
    t = pq.read_table(root / "demo.parquet")
    assert check_columns(t.schema) == [] and b"geo" in t.schema.metadata
    assert t.num_rows == 99 * 25 and t.schema.field("embedding").type.list_size == 60
    assert detect_pixel_bbox_order(t) == "own"
    first = (root / "demo.md").read_text().splitlines()[0]
    assert "spectral" in first and "real Sentinel-2" in first
    # the Makefile's demo point (a water fragment of the Virginia cell) is covered
    geoms = shapely.from_wkb(t.column("geometry").to_pylist())
    assert shapely.contains(geoms, shapely.Point(-75.548, 37.6803)).any()


def test_output_passes_mtquery_validate(spectral_run):
    if importlib.util.find_spec("mtquery.io.validate") is None:
        pytest.skip("mtquery validate not available")
    r = _cli("validate", str(spectral_run))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "VALID" in r.stdout and "own" in r.stdout
