"""``mtquery stac``: a STAC Collection + one Item per data file, checked against the STAC
core rules and the draft embeddings extension's field rules (by hand: no network, no
pystac); relative assets that resolve, the extent and times of the files, atomic output."""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import synth
from clirun import run
from rangeserver import RangeServer

import mtquery
from mtquery.errors import UsageError
from mtquery.io.datasets import demo_path
from mtquery.io.embmeta import EXTENSION, block, with_block
from mtquery.io.optimize import optimize
from mtquery.io.stac import _href, _item, stac
from mtquery.io.staging import STAGING

RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")
#: the embeddings extension's fields allowed on Collections and in Item properties
EMB_COLLECTION = {"emb:type", "emb:dimensions", "emb:chip_layout", "emb:temporal_resolution",
                  "emb:fit_for_use", "emb:uncertainty"}
EMB_ITEM = {"emb:runtime_parameters", "emb:preprocessing", "emb:postprocessing",
            "emb:fit_for_use", "emb:spatial_coverage", "emb:uncertainty", "emb:quantization"}


def _time(value: object) -> dt.datetime:
    assert isinstance(value, str) and RFC3339.match(value), value
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def _bbox_ok(box: object) -> None:
    assert isinstance(box, list) and len(box) == 4, box
    assert all(isinstance(v, (int, float)) for v in box)
    assert -180 <= box[0] <= box[2] <= 180 and -90 <= box[1] <= box[3] <= 90, box


def _links(doc: dict) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for link in doc["links"]:
        assert isinstance(link.get("href"), str) and link["href"], link
        assert isinstance(link.get("rel"), str) and link["rel"], link
        out.setdefault(link["rel"], []).append(link)
    return out


def check_collection(doc: dict) -> None:
    """STAC 1.x Collection core rules + the embeddings extension's collection rules."""
    assert doc["type"] == "Collection" and doc["stac_version"].startswith("1.")
    assert isinstance(doc["id"], str) and doc["id"]
    assert isinstance(doc["description"], str) and doc["description"]
    assert isinstance(doc["license"], str) and doc["license"]
    assert EXTENSION in doc["stac_extensions"]
    spatial, temporal = doc["extent"]["spatial"]["bbox"], doc["extent"]["temporal"]["interval"]
    assert len(spatial) >= 1 and len(temporal) >= 1
    for box in spatial:
        _bbox_ok(box)
    for start, end in temporal:
        assert start is None or end is None or _time(start) <= _time(end)
    links = _links(doc)
    assert "root" in links and links["item"]
    for link in links.get("self", []):
        assert re.match(r"^https?://", link["href"]), link  # self links are absolute
    # the extension: required fields, only its own emb: names
    assert doc["emb:type"] in ("chip", "pixel")
    assert isinstance(doc["emb:dimensions"], int) and doc["emb:dimensions"] >= 1
    assert isinstance(doc["data_type"], str)
    assert {k for k in doc if k.startswith("emb:")} <= EMB_COLLECTION
    layout = doc.get("emb:chip_layout")
    if layout:
        assert layout["layout_type"] in ("regular_grid", "variable_grid", "named_grid")
    assert doc["item_assets"]["embeddings"]["roles"] == ["data"]


def check_item(doc: dict, collection: dict) -> None:
    """STAC 1.x Item core rules + the embeddings extension's item rules."""
    assert doc["type"] == "Feature" and doc["stac_version"].startswith("1.")
    assert isinstance(doc["id"], str) and doc["id"]
    assert doc["collection"] == collection["id"]
    assert EXTENSION in doc["stac_extensions"]
    geom = doc["geometry"]
    if geom is not None:
        assert geom["type"] == "Polygon"
        ring = geom["coordinates"][0]
        assert ring[0] == ring[-1] and len(ring) >= 4
        _bbox_ok(doc["bbox"])
    props = doc["properties"]
    assert "datetime" in props
    if props["datetime"] is None:  # then both ends are required
        assert _time(props["start_datetime"]) <= _time(props["end_datetime"])
    else:
        _time(props["datetime"])
    assert {k for k in props if k.startswith("emb:")} <= EMB_ITEM
    links = _links(doc)
    for rel in ("root", "parent", "collection"):
        assert links[rel], rel
    asset = doc["assets"]["embeddings"]
    assert asset["href"] and asset["type"] == "application/vnd.apache.parquet"
    assert asset["roles"] == ["data"]


def read_catalogue(out: Path) -> tuple[dict, list[dict]]:
    collection = json.loads((out / "collection.json").read_text())
    check_collection(collection)
    items = []
    for link in _links(collection)["item"]:
        path = (out / link["href"]).resolve()
        item = json.loads(path.read_text())
        check_item(item, collection)
        for rel in ("root", "parent", "collection"):  # the links lead back to the collection
            (back,) = _links(item)[rel]
            assert (path.parent / back["href"]).resolve() == (out / "collection.json").resolve()
        items.append((path, item))
    return collection, items


def test_demo_catalogue(tmp_path):
    out = tmp_path / "cat"
    table = stac("demo", out)
    collection, items = read_catalogue(out)
    assert table.column("id").to_pylist() == ["demo"] and table.column("item").to_pylist() == [
        "items/demo.json"]
    (path, item), = items
    asset = (path.parent / item["assets"]["embeddings"]["href"]).resolve()
    assert asset == demo_path().resolve()  # relative href, resolving to the file
    info = mtquery.info("demo")
    assert item["bbox"] == pytest.approx(info["bbox"])
    assert item["properties"]["mtquery:rows"] == info["rows"] == table.column("rows")[0].as_py()
    assert _time(item["properties"]["start_datetime"]).replace(tzinfo=None) == \
        dt.datetime.fromisoformat(info["start"])
    assert collection["emb:dimensions"] == 60 and collection["data_type"] == "float32"
    assert collection["mtquery:model"]["name"] == "spectral"  # the catalog entry's model
    assert collection["emb:chip_layout"]["mtquery:spacing_km"] == 10.0
    assert collection["extent"]["spatial"]["bbox"] == [item["bbox"]]
    assert collection["license"] == "other" and collection["id"] == "demo"
    assert not list(tmp_path.glob(f"{STAGING}*"))


def test_items_per_file_from_their_blocks(tmp_path):
    data = tmp_path / "data"
    optimize([str(demo_path())], data, rows_per_file=1000, row_group_size=500,
             validate=False)
    given = block(60, model="dinov2", weights="facebook/dinov2-base @ f9e44c814b77",
                  normalisation="l2", roles={"vector": "emb", "id": "chip_id"})
    for f in sorted(data.glob("*.parquet")):  # the model's block in every file
        t = pq.read_table(f)
        pq.write_table(t.replace_schema_metadata(with_block(t.schema, given).metadata), f)
    out = tmp_path / "cat"
    table = stac(str(data), out, license="CC-BY-4.0", collection_id="my-embeddings",
                 base_url="https://example.org/cat")
    collection, items = read_catalogue(out)
    assert table.num_rows == len(items) == 3
    assert sorted(i["id"] for _, i in items) == ["part-00000", "part-00001", "part-00002"]
    assert sum(i["properties"]["mtquery:rows"] for _, i in items) == 2475
    assert collection["id"] == "my-embeddings" and collection["license"] == "CC-BY-4.0"
    assert collection["mtquery:model"] == {"name": "dinov2",
                                           "weights": "facebook/dinov2-base @ f9e44c814b77"}
    assert collection["mtquery:roles"] == {"vector": "emb", "id": "chip_id"}
    (model,) = _links(collection)["emb:model"]  # a registry model: its published weights
    assert model["href"].startswith("https://huggingface.co/facebook/dinov2-base")
    assert _links(collection)["self"][0]["href"] == "https://example.org/cat/collection.json"
    boxes = [i["bbox"] for _, i in items]
    union = [min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes),
             max(b[3] for b in boxes)]
    assert collection["extent"]["spatial"]["bbox"] == [union]
    for path, item in items:
        assert item["properties"]["emb:postprocessing"]["expression"] == "l2"
        assert item["properties"]["data_type"] == "float32"
        assert _links(item)["self"][0]["href"] == f"https://example.org/cat/items/{path.name}"
        f = (path.parent / item["assets"]["embeddings"]["href"]).resolve()
        assert f.parent == data.resolve() and pq.read_metadata(f).num_rows == \
            item["properties"]["mtquery:rows"]


def test_existing_folder_needs_force_and_nothing_is_written(tmp_path, capsys):
    out = tmp_path / "cat"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    with pytest.raises(UsageError, match="--force"):
        stac("demo", out)
    code, stdout, err = run(capsys, "stac", "demo", "-o", out)
    assert code == 2 and stdout == "" and err.count("\n") == 1 and "--force" in err
    assert [p.name for p in out.iterdir()] == ["mine.txt"]
    assert not (tmp_path / STAGING).exists()
    code, stdout, err = run(capsys, "stac", "demo", "-o", out, "--force")
    assert code == 0, err
    assert "1 item(s)" in stdout
    assert sorted(p.name for p in out.iterdir()) == ["collection.json", "items"]
    read_catalogue(out)
    # an empty folder is used as it is; a file is refused
    empty = tmp_path / "empty"
    empty.mkdir()
    assert stac("demo", empty).num_rows == 1
    (tmp_path / "file").write_text("x")
    with pytest.raises(UsageError, match="is a file"):
        stac("demo", tmp_path / "file")
    code, _, err = run(capsys, "stac", "demo")
    assert code == 2 and "--output" in err


def test_remote_files_are_described_from_their_footers(tmp_path):
    root = tmp_path / "served"
    root.mkdir()
    shutil.copy(demo_path(), root / "demo.parquet")
    synth.write(synth.make_table(3_000, dim=16, seed=3), root / "big.parquet",
                row_group_size=1_000)
    with RangeServer(root) as srv:
        out = tmp_path / "cat"
        table = stac(srv.url("demo.parquet"), out)
        collection, ((_, item),) = read_catalogue(out)
        assert item["assets"]["embeddings"]["href"] == srv.url("demo.parquet")
        assert item["bbox"] == pytest.approx(mtquery.info("demo")["bbox"])
        # the footer's statistics: the first acquisition (the demo's last is "unknown")
        assert item["properties"]["datetime"].startswith("2020-02-19T11:34:25")
        assert collection["extent"]["temporal"]["interval"][0][0] == \
            item["properties"]["datetime"]
        assert table.column("rows")[0].as_py() == 2475
        assert collection["emb:dimensions"] == 60
        # the footers only: no request beyond the file's tail
        assert srv.bytes_sent < (root / "demo.parquet").stat().st_size
        stac(srv.url("big.parquet"), tmp_path / "cat2")
        collection, ((_, item),) = read_catalogue(tmp_path / "cat2")
        assert collection["emb:dimensions"] == 16 and item["properties"]["mtquery:rows"] == 3000


def test_hf_assets_are_download_addresses():
    f = {"source": "hf://datasets/Major-TOM/Core-S2RGB-SigLIP/embeddings/part_00001.parquet",
         "local": False}
    assert _href(f, Path("/x")) == ("https://huggingface.co/datasets/Major-TOM/"
                                    "Core-S2RGB-SigLIP/resolve/main/embeddings/"
                                    "part_00001.parquet")


def test_a_file_without_acquisition_times_gets_when_it_was_written(tmp_path):
    blk = block(8)
    when = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.timezone.utc)
    f = {"source": str(tmp_path / "a.parquet"), "local": True, "rows": 3, "bbox": None,
         "start": None, "end": None, "block": None, "mtime": when}
    item = _item(f, "a", "c", blk, tmp_path / "out", None, when)
    check_item(item, {"id": "c"})
    assert item["properties"]["datetime"] == "2024-05-01T12:00:00.000000Z"
    assert item["properties"]["mtquery:datetime_from"] == "file modification time"
    assert item["geometry"] is None and "bbox" not in item


def test_a_file_of_another_shape(tmp_path):
    from foreign import write_shape

    src = write_shape("points_id", tmp_path / "src")
    out = tmp_path / "cat"
    stac(str(src), out)
    collection, ((path, item),) = read_catalogue(out)
    assert collection["emb:dimensions"] == 384
    assert (path.parent / item["assets"]["embeddings"]["href"]).resolve() == Path(src).resolve()
    assert item["properties"]["mtquery:rows"] == 50 and item["bbox"]
    assert collection["mtquery:roles"]["vector"] == "embedding"  # how mtquery reads it
    assert collection["mtquery:roles"]["id"] == "id"
