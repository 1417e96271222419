"""Text and image queries, embedded with the dataset's own model (siglip-tiny: the real
open_clip architecture at test size, untrained), against brute force."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from clirun import run

import mtquery

pytest.importorskip("open_clip")
SCENE = Path(__file__).parent / "data" / "virginia_120m"


@pytest.fixture(scope="module")
def siglip_tiny(tmp_path_factory):
    from mtquery.generate.pipeline import generate

    out = tmp_path_factory.mktemp("siglip_tiny")
    generate("siglip-tiny", sorted(str(p) for p in SCENE.glob("B*.tif")), str(out),
             product_id="p1", timestamp="20200101T000000")
    return str(out)



def brute(dataset, q, k):
    s = mtquery.open_session(dataset)
    rows = s.con.execute("SELECT unique_id, embedding FROM embeddings").fetchall()
    x = np.asarray([r[1] for r in rows], np.float64)
    sim = (x / np.linalg.norm(x, axis=1, keepdims=True)) @ (q / np.linalg.norm(q))
    order = np.lexsort((np.arange(len(sim)), -sim))[:k]
    return [rows[i][0] for i in order]


def test_text_query_matches_embed_text(siglip_tiny, capsys):
    from mtquery.generate import embed_text

    q = embed_text("siglip-tiny", ["a harbour with ships"])[0]
    want = brute(siglip_tiny, q, 4)
    code, out, err = run(capsys, "knn", "-d", siglip_tiny, "--text", "a harbour with ships",
                         "--k", 4, "-f", "json")
    assert code == 0, err
    assert [r["unique_id"] for r in json.loads(out)] == want
    api = mtquery.knn(siglip_tiny, text="a harbour with ships", k=4, geometry=False)
    assert api.column("unique_id").to_pylist() == want


def test_image_query_geotiff_and_png(siglip_tiny, tmp_path, capsys):
    import rasterio
    from PIL import Image

    from mtquery.generate import embed_patches

    rng = np.random.default_rng(3)
    img = rng.uniform(0, 4000, size=(3, 96, 96)).astype(np.float32)
    tif = tmp_path / "patch.tif"
    with rasterio.open(tif, "w", driver="GTiff", width=96, height=96, count=3,
                       dtype="float32") as dst:
        dst.write(img)
    q = embed_patches("siglip-tiny", img[None])[0]
    got = mtquery.knn(siglip_tiny, image=tif, k=3, geometry=False)
    assert got.column("unique_id").to_pylist() == brute(siglip_tiny, q, 3)
    png = tmp_path / "patch.png"
    rgb = (np.clip(img / 4000.0, 0, 1) * 255).round().astype(np.uint8)
    Image.fromarray(rgb.transpose(1, 2, 0)).save(png)
    q8 = embed_patches("siglip-tiny", (rgb.astype(np.float32) / 255.0 * 4000.0)[None])[0]
    code, out, err = run(capsys, "knn", "-d", siglip_tiny, "--image", png, "--k", 3,
                         "-f", "json")
    assert code == 0, err
    assert [r["unique_id"] for r in json.loads(out)] == brute(siglip_tiny, q8, 3)


@pytest.mark.parametrize("args,words", [
    (["--text", "a harbour", "-d", "demo"], "no text tower"),
    (["--text", "   "], "non-empty"),
    (["--text", "x", "--id", "abcdefgh"], "exactly one query"),
])
def test_bad_text_queries(siglip_tiny, capsys, args, words):
    if "-d" not in args:
        args = [*args, "-d", siglip_tiny]
    code, _, err = run(capsys, "knn", *args)
    assert code == 2 and words in err and err.count("\n") == 1


def test_image_with_wrong_bands(siglip_tiny, tmp_path, capsys):
    import rasterio

    tif = tmp_path / "two.tif"
    with rasterio.open(tif, "w", driver="GTiff", width=64, height=64, count=2,
                       dtype="float32") as dst:
        dst.write(np.ones((2, 64, 64), np.float32))
    code, _, err = run(capsys, "knn", "-d", siglip_tiny, "--image", tif)
    assert code == 2 and "2 band(s)" in err and "B04,B03,B02" in err
