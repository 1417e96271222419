"""A generate output directory is readable by other tools as it is: geopandas, DuckDB and
pyarrow datasets see the shards and nothing else (run state and manifest live in _mtquery/)."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import duckdb
import geopandas
import pyarrow.dataset as ds
import pytest

from mtquery.generate.pipeline import generate

DATA = Path(__file__).parent / "data"
ROWS = 4 * 25  # 4 samples of 25 fragments


def _maker():
    spec = importlib.util.spec_from_file_location("core_virginia_make_outputs",
                                                  DATA / "core_virginia" / "make_data.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def core(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("core")
    _maker().build(d, n_cells=4)
    return d


def _duckdb_rows(pattern: str) -> int:
    with duckdb.connect() as con:
        return con.execute("SELECT count(*) FROM read_parquet(?)", [pattern]).fetchone()[0]


def _assert_readable(out: Path) -> None:
    assert len(geopandas.read_parquet(out)) == ROWS
    assert _duckdb_rows(f"{out}/*") == ROWS
    assert _duckdb_rows(f"{out}/*.parquet") == ROWS
    assert ds.dataset(out, format="parquet").count_rows() == ROWS


def test_output_dir_is_readable_by_geopandas_duckdb_and_pyarrow(core, tmp_path):
    """Regression: manifest.json and run.json beside the shards made geopandas.read_parquet(dir)
    and DuckDB read_parquet('dir/*') fail ("Could not read schema from manifest.json", "No
    magic bytes found at end of file manifest.json")."""
    out = tmp_path / "o"
    s = generate("spectral", [str(core)], str(out), shard_size=2)
    assert s.rows_total == ROWS
    _assert_readable(out)
    gdf = geopandas.read_parquet(out)
    assert gdf.geometry.name == "geometry" and gdf.crs is not None
    m = json.loads((out / "_mtquery" / "manifest.json").read_text())
    assert m["counts"]["rows"] == ROWS
    assert sorted(p.name for p in out.iterdir()) == [
        "_mtquery", "part-0000-00000.parquet", "part-0000-00001.parquet"]


def test_output_of_the_old_layout_is_adopted_by_a_rerun(core, tmp_path):
    """A directory written before the sidecars moved (manifest.json, run.json, _state/ beside
    the shards) resumes without recomputing, and afterwards reads like a new one."""
    out = tmp_path / "o"
    generate("spectral", [str(core)], str(out), shard_size=2, thumbnails=False)  # none then
    meta = out / "_mtquery"
    shutil.move(meta / "run.json", out / "run.json")
    shutil.move(meta / "manifest.json", out / "manifest.json")
    shutil.move(meta / "state", out / "_state")
    meta.rmdir()
    s = generate("spectral", [str(core)], str(out), shard_size=2)
    assert s.samples_done == 0 and s.samples_resumed == 4 and s.rows_total == ROWS
    _assert_readable(out)
    assert not (out / "manifest.json").exists() and not (out / "_state").exists()


def test_describe_finds_the_manifest_in_new_and_old_layouts(core, tmp_path):
    import mtquery
    from mtquery.query.info import manifest_of

    out = tmp_path / "o"
    generate("spectral", [str(core)], str(out), limit=1)
    assert manifest_of(mtquery.open_session(str(out))).model["name"] == "spectral"
    shutil.move(out / "_mtquery" / "manifest.json", out / "manifest.json")  # an old output
    assert manifest_of(mtquery.open_session(str(out / "*.parquet"))).model["family"] == (
        "spectral")
