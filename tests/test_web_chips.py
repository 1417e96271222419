"""Image chips: ``generate`` writes a thumbnail per fragment beside its shards (on by default,
off with ``thumbnails=False``), the demo ships with them, ``/api/chip`` serves them, and for a
dataset without sidecars the Major TOM Core ``thumbnail`` of the fragment's sample, range-read
from a Core release (local folder or the test HTTP server) and cropped to ``pixel_bbox``; a
dataset without imagery gets the placeholder; bad parameters are HTTP 400 in one line."""

from __future__ import annotations

import importlib.util
import io
import json
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlencode

import numpy as np
import pyarrow.parquet as pq
import pytest

HERE = Path(__file__).resolve().parent
CORE_THUMB_PX = 534  # the fixture's thumbnails: half the 1068 px window


def _fixture_module():
    spec = importlib.util.spec_from_file_location(
        "core_with_thumbnails", HERE / "data" / "core_virginia" / "with_thumbnails.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def core(tmp_path_factory):
    """A Core release with thumbnails (metadata.parquet + images/), and a dataset made from
    its images without thumbnails (so its chips come from the Core)."""
    from mtquery.generate.pipeline import generate

    root = tmp_path_factory.mktemp("core_release")
    meta = _fixture_module().build(root / "Core-S2L2A", thumb_px=CORE_THUMB_PX)
    out = root / "emb"
    generate("spectral", [str(meta.parent / "images" / "part_00000.parquet")], str(out),
             thumbnails=False)
    return meta, out


def get(url: str, headers: dict | None = None):
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read()


def chip_url(running, uid: str) -> str:
    return f"{running.url}api/chip?{urlencode({'unique_id': uid})}"


def image(data: bytes):
    from PIL import Image

    return Image.open(io.BytesIO(data))


def rows(dataset) -> list[dict]:
    from mtquery.query.session import open_session

    s = open_session(str(dataset), read_only=True)
    try:
        sql = ("SELECT unique_id, grid_cell, product_id, pixel_bbox, source_file "
               "FROM embeddings ORDER BY unique_id")
        return s.con.execute(sql).to_arrow_table().to_pylist()
    finally:
        s.close()


def test_generate_writes_thumbnails_beside_the_shards(core, tmp_path):
    from mtquery.generate.pipeline import generate

    meta, no_thumbs = core
    images = str(meta.parent / "images" / "part_00000.parquet")
    out = tmp_path / "with"
    generate("spectral", [images], str(out), limit=2)
    shards = sorted(out.glob("part-*.parquet"))
    side = out / "_mtquery" / "thumbnails" / shards[0].name
    table = pq.read_table(side)
    assert table.column("unique_id").to_pylist() == pq.read_table(
        shards[0], columns=["unique_id"]).column("unique_id").to_pylist()
    im = image(table.column("thumbnail")[0].as_py())
    assert im.format == "WEBP" and im.size == (128, 128)
    # the dataset is still exactly the shards (the sidecar is not read as data)
    import mtquery

    assert mtquery.info(str(out))["rows"] == table.num_rows == 50
    assert not (no_thumbs / "_mtquery" / "thumbnails").exists() or not any(
        (no_thumbs / "_mtquery" / "thumbnails").iterdir())


def test_colour_rules_per_family():
    from mtquery.generate.thumbnails import colour_bands, fragment_thumbnails, rgb_chips

    s2 = np.full((2, 3, 224, 224), 1000.0, np.float32)
    s2[1, 0] = 3000.0  # brighter red (B04 first)
    chips = rgb_chips(s2, ("B04", "B03", "B02"))
    assert chips.shape == (2, 224, 224, 3)
    assert chips[1, 0, 0, 0] > chips[0, 0, 0, 0] and chips[1, 0, 0, 1] == chips[0, 0, 0, 1]
    s1 = np.stack([np.full((224, 224), 0.1), np.full((224, 224), 0.01)])[None].astype(np.float32)
    c = rgb_chips(s1, ("vv", "vh"))[0, 0, 0]
    assert c[0] > c[2] > 0  # vv brighter than vh, both shown
    assert colour_bands(("B08", "B11")) is None
    assert fragment_thumbnails(s2, ("B08", "B11", "B12")) is None


def test_demo_ships_thumbnails():
    from mtquery.io.datasets import demo_path

    demo = demo_path()
    side = demo.parent / "_mtquery" / "thumbnails" / demo.name
    table = pq.read_table(side)
    ids = pq.read_table(demo, columns=["unique_id"]).column("unique_id")
    assert table.num_rows == len(ids) == 2475
    assert set(table.column("unique_id").to_pylist()) == set(ids.to_pylist())


@pytest.fixture(scope="module")
def demo_server():
    from mtquery.web.server import start

    running = start("demo")
    yield running
    running.stop()


def test_chip_of_a_demo_fragment(demo_server):
    import mtquery

    uid = mtquery.knn("demo", lat=37.6803, lon=-75.548, k=1, geometry=False).column(
        "unique_id")[0].as_py()
    status, headers, body = get(chip_url(demo_server, uid))
    assert status == 200 and headers["content-type"] == "image/webp"
    assert "max-age" in headers["cache-control"] and headers["etag"]
    assert image(body).size == (128, 128)
    status, _, again = get(chip_url(demo_server, uid), {"If-None-Match": headers["etag"]})
    assert status == 304 and again == b""


@pytest.mark.parametrize(("params", "message"), [
    ({}, "give unique_id"),
    ({"unique_id": "no-such-id"}, "unknown unique_id"),
    ({"unique_id": "x" * 300}, "unique_id must be 1 to 256 characters"),
    ({"unique_id": "a", "width": 9}, "unknown parameter 'width'"),
])
def test_bad_chip_parameters_are_400(demo_server, params, message):
    status, _, body = get(f"{demo_server.url}api/chip?{urlencode(params)}")
    err = json.loads(body)["error"]
    assert status == 400 and message in err and "\n" not in err


def _check_core_chip(body: bytes, row: dict, meta: Path) -> None:
    """The chip is the Core thumbnail cropped to pixel_bbox scaled to the thumbnail."""
    r0, c0, r1, c1 = row["pixel_bbox"]
    s = CORE_THUMB_PX / 1068
    im = image(body).convert("RGB")
    assert im.size == (round(c1 * s) - round(c0 * s), round(r1 * s) - round(r0 * s))
    t = pq.read_table(meta.parent / "images" / "part_00000.parquet",
                      columns=["grid_cell", "thumbnail"]).to_pylist()
    thumb = image(next(x["thumbnail"] for x in t if x["grid_cell"] == row["grid_cell"]))
    want = np.asarray(thumb.convert("RGB").crop((round(c0 * s), round(r0 * s), round(c1 * s),
                                                 round(r1 * s))), np.float32)
    assert np.abs(np.asarray(im, np.float32) - want).mean() < 4  # WebP, lossy


def _interesting_rows(dataset) -> list[dict]:
    """Fragments off the diagonal, with imagery (not the zeros outside the scene)."""
    out = [r for r in rows(dataset) if r["pixel_bbox"][0] != r["pixel_bbox"][1]]
    return out[::17][:3]


def test_chip_from_a_local_core_release(core):
    from mtquery.web.server import start

    meta, dataset = core
    running = start(str(dataset), core=str(meta))
    try:
        for row in _interesting_rows(dataset):
            status, headers, body = get(chip_url(running, row["unique_id"]))
            assert status == 200 and headers["content-type"] == "image/webp", body[:200]
            assert headers["x-mtquery-chip"].startswith("core ")
            _check_core_chip(body, row, meta)
    finally:
        running.stop()


def test_chip_from_a_remote_core_release_reads_by_range(core):
    from rangeserver import RangeServer

    from mtquery.web.server import start

    meta, dataset = core
    with RangeServer(meta.parent.parent) as srv:
        running = start(str(dataset), core=srv.url("Core-S2L2A/metadata.parquet"))
        try:
            picked = _interesting_rows(dataset)
            for row in picked:
                status, _, body = get(chip_url(running, row["unique_id"]))
                assert status == 200, body[:200]
                _check_core_chip(body, row, meta)
        finally:
            running.stop()
        image_file = meta.parent / "images" / "part_00000.parquet"
        assert srv.bytes_sent < image_file.stat().st_size / 2  # ranges, not the files


def test_placeholder_without_imagery(core):
    from mtquery.web.server import start

    _, dataset = core
    running = start(str(dataset))  # no sidecars, no Core
    try:
        uid = rows(dataset)[0]["unique_id"]
        status, headers, body = get(chip_url(running, uid))
        assert status == 200 and headers["content-type"].startswith("image/svg+xml")
        assert headers["x-mtquery-chip"] == "none" and b"<svg" in body
    finally:
        running.stop()


def test_library_chip(core):
    import mtquery

    meta, dataset = core
    row = _interesting_rows(dataset)[0]
    chip = mtquery.chip(str(dataset), row["unique_id"], core=str(meta))
    assert chip.source == "core" and chip.media_type == "image/webp"
    assert mtquery.chip(str(dataset), row["unique_id"]) is None
    assert mtquery.chip("demo", mtquery.search("demo", limit=1).column(
        "unique_id")[0].as_py()).source == "sidecar"
