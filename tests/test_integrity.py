"""Integrity of what mtquery writes and later trusts (issue 19, item 1): byte damage at random
offsets in every stored file of an index and of the exact-scan cache never gives a wrong
answer with exit 0; a detected damage is one line naming the file; ``index verify`` names it;
a damaged cache is discarded and rebuilt with a notice."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import synth
from clirun import run

from mtquery.standard.schema import embedding_array
from mtquery.vectors import integrity

ROWS, DIM = 3000, 16
INDEX_FILES = ["manifest.json", "ivf.faiss", "store/meta.json", "store/vectors.f32",
               "store/rowhash.u64", "store/rows.arrow", "store/invalid.npy",
               "manifest.json.xxh", "ivf.faiss.xxh", "store/vectors.f32.xxh",
               "store/rows.arrow.xxh", "store/rowhash.u64.xxh", "store/invalid.npy.xxh",
               "store/meta.json.xxh"]
CACHE_FILES = ["meta.json", "vectors.f32", "rowhash.u64", "rows.arrow", "invalid.npy",
               "vectors.f32.xxh", "rows.arrow.xxh", "meta.json.xxh"]
SEEDS = (1, 2)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A dataset with some zero vectors (so invalid.npy holds rows), a pristine index (not at
    the default place: knn without --index uses the cache) and a pristine cache."""
    from mtquery.io.cache import cache_path, cached_store
    from mtquery.io.datasets import resolve
    from mtquery.vectors.build import BuildParams, build_index

    root = tmp_path_factory.mktemp("integrity")
    t = synth.make_table(n=ROWS, dim=DIM, seed=5)
    m = synth.vectors(t).copy()
    m[[7, 700, 2900]] = 0.0
    t = t.set_column(t.schema.get_field_index("embedding"), "embedding", embedding_array(m))
    src = Path(synth.write(t, root / "d.parquet", row_group_size=1000))
    index = build_index(str(src), root / "pristine.mtindex",
                        BuildParams(nlist=16, target_recall=0.9, train_rows=ROWS))
    ds = resolve(str(src))
    store = cached_store(ds, DIM)
    assert store is not None
    uid = t.column("unique_id")[42].as_py()
    return {"src": src, "index": index, "cache": cache_path(ds), "uid": uid}


def _damage(path: Path, seed: int, count: int = 3) -> list[int]:
    """XOR ``count`` bytes at random offsets with random non-zero values."""
    rng = random.Random(f"{path.name}-{seed}")
    size = path.stat().st_size
    offsets = sorted(rng.randrange(size) for _ in range(count))
    with open(path, "r+b") as fh:
        for off in offsets:
            fh.seek(off)
            b = fh.read(1)[0]
            fh.seek(off)
            fh.write(bytes([b ^ rng.randrange(1, 256)]))
    return offsets


def _knn(capsys, data, *extra):
    return run(capsys, "knn", "--dataset", str(data["src"]), "--id", data["uid"], "-k", "10",
               "--format", "csv", *extra)


def _notices(err: str) -> list[str]:
    """stderr lines, less the usual one about the dataset's zero vectors."""
    return [ln for ln in err.strip().splitlines() if ln.strip() and "skipped 3" not in ln]


def _one_line_naming(err: str, name: str) -> None:
    lines = _notices(err)
    assert len(lines) == 1, err
    assert name in lines[0], err
    assert "Traceback" not in err and "internal error" not in err


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("name", INDEX_FILES)
def test_damaged_index_file(data, tmp_path, monkeypatch, capsys, name, seed):
    monkeypatch.setenv("MTQUERY_CACHE", "off")  # --exact reads the dataset, not a cache
    index = tmp_path / "idx.mtindex"
    shutil.copytree(data["index"], index)
    code, want, err = _knn(capsys, data, "--index", str(index))
    assert code == 0, err
    _damage(index / name, seed)
    code, out, err = _knn(capsys, data, "--index", str(index))
    if code == 0:
        assert out == want, f"wrong answer with exit 0 after damaging {name}"
    else:
        assert code == 1
        _one_line_naming(err, Path(name).name)
        assert "mtquery index build" in err
    code, out, err = run(capsys, "index", "verify", "--index", str(index))
    assert code == 1
    _one_line_naming(err, Path(name).name)
    code, out, err = run(capsys, "index", "info", "--index", str(index))
    assert code == 1
    _one_line_naming(err, Path(name).name)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("name", CACHE_FILES)
def test_damaged_cache_file_is_discarded_and_rebuilt(data, tmp_path, monkeypatch, capsys,
                                                     name, seed):
    cache_root = tmp_path / "cache"
    key_dir = cache_root / "vectors" / data["cache"].name
    shutil.copytree(data["cache"], key_dir)
    monkeypatch.setenv("MTQUERY_CACHE", str(cache_root))
    code, want, err = _knn(capsys, data)
    assert code == 0, err
    _damage(key_dir / name, seed)
    code, out, err = _knn(capsys, data)
    assert code == 0, err
    assert out == want, f"wrong answer after damaging the cache's {name}"
    lines = _notices(err)
    if lines:  # the damage was seen: one notice naming the file
        _one_line_naming(err, Path(name).name)
        assert "cache" in err
    # whether or not this query read the damaged bytes, the store is whole again or found
    with pytest.raises(integrity.Damaged) if not lines else _nothing():
        integrity.verify_tree(key_dir)


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_clean_index_verifies(data, capsys):
    code, out, err = run(capsys, "index", "verify", "--index", str(data["index"]))
    assert code == 0, err
    assert "ok" in out


def test_truncated_rows_and_pickled_invalid_mask_are_one_line(data, tmp_path, capsys,
                                                              monkeypatch):
    monkeypatch.setenv("MTQUERY_CACHE", "off")
    index = tmp_path / "idx.mtindex"
    shutil.copytree(data["index"], index)
    rows = index / "store" / "rows.arrow"
    with open(rows, "r+b") as fh:
        fh.truncate(rows.stat().st_size // 2)
    code, out, err = _knn(capsys, data, "--index", str(index))
    assert code == 1
    _one_line_naming(err, "rows.arrow")
    code, out, err = run(capsys, "index", "verify", "--index", str(index))
    assert code == 1 and "truncated" in err
    shutil.rmtree(index)
    shutil.copytree(data["index"], index)
    np.save(index / "store" / "invalid.npy", np.array([object()], dtype=object),
            allow_pickle=True)
    code, out, err = _knn(capsys, data, "--index", str(index))
    assert code == 1
    _one_line_naming(err, "invalid.npy")


# ---------------------------------------------------------------- the module itself


def test_hasher_blocks_and_marks(tmp_path):
    p = tmp_path / "f.bin"
    data = bytes(range(256)) * 40
    h = integrity.Hasher(block_bytes=1000)
    h.update(data[:1500])
    h.mark()
    h.update(data[1500:])
    p.write_bytes(data)
    h.write(p)
    sums = integrity.read_sums(p)
    assert list(sums.offsets) == [0, 1000, 1500, 2500, 3500, 4500, 5500, 6500, 7500, 8500,
                                  9500, 10240]
    integrity.verify_file(p)
    integrity.write_sums(p, cuts=[1500], block_bytes=1000)
    assert list(integrity.read_sums(p).offsets) == list(sums.offsets)


def test_truncated_and_extended_files_are_found(tmp_path):
    p = tmp_path / "f.bin"
    p.write_bytes(b"x" * 5000)
    integrity.write_sums(p)
    p.write_bytes(b"x" * 4999)
    with pytest.raises(integrity.Damaged, match="truncated"):
        integrity.verify_file(p)


def test_damaged_sidecar_names_itself(tmp_path):
    p = tmp_path / "f.bin"
    p.write_bytes(b"y" * 5000)
    integrity.write_sums(p)
    side = integrity.sidecar(p)
    raw = bytearray(side.read_bytes())
    raw[20] ^= 0xFF
    side.write_bytes(bytes(raw))
    with pytest.raises(integrity.Damaged, match="f.bin.xxh"):
        integrity.verify_file(p)


def test_row_hashes_check_gathered_rows(tmp_path):
    x = np.random.default_rng(0).standard_normal((500, 8)).astype(np.float32)
    p = tmp_path / "vectors.f32"
    vs = integrity.VectorSums(p)
    with open(p, "wb") as fh:
        for lo in range(0, 500, 128):
            fh.write(x[lo:lo + 128].tobytes())
            vs.add(x[lo:lo + 128])
    vs.finish()
    ids = np.array([3, 77, 499])
    integrity.verify_rows(p, x[ids], ids)
    y = x[ids].copy()
    y[1, 2] += 1e-3
    integrity.forget()  # rows checked once are not hashed again in this process
    with pytest.raises(integrity.Damaged, match="row 77"):
        integrity.verify_rows(p, y, ids)
    integrity.verify_file(p)
