"""Issue 19, item 5: the losing one of two concurrent extracts leaves no staging copy; time
values mtquery cannot read make time filters fail with one line (integer epochs are read as
epochs); null / NaN vectors follow one rule in optimize and validate."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import synth
from clirun import run

import mtquery
from mtquery.errors import DataError
from mtquery.io.optimize import optimize
from mtquery.io.validate import validate
from mtquery.standard.schema import embedding_array

BBOX = (-10.0, 40.0, 10.0, 50.0)


def test_losing_concurrent_extract_leaves_no_staging(tmp_path):
    from mtquery.io.extract import extract

    src = synth.write(synth.make_table(n=2000, dim=8, seed=3), tmp_path / "src.parquet",
                      row_group_size=250)
    out = tmp_path / "region"
    winner: dict = {}

    def other_run_publishes_first(event) -> None:
        message = getattr(event, "message", None) or ""
        if message.startswith("validated") and not winner:
            winner["manifest"] = extract(src, out, bbox=BBOX)

    with pytest.raises(DataError) as err:
        extract(src, out, bbox=BBOX, progress=other_run_publishes_first)
    assert "created by another run" in str(err.value) and "\n" not in str(err.value)
    assert winner and mtquery.info(str(out))["rows"] == winner["manifest"]["rows"]
    assert not (tmp_path / ".mtquery-staging").exists()  # the loser's full copy is gone


def _with_timestamps(tmp_path, values, typ=pa.string(), name="t.parquet"):
    t = synth.make_table(n=len(values), dim=8, seed=9)
    t = t.set_column(t.schema.get_field_index("timestamp"), "timestamp",
                     pa.array(values, typ))
    return synth.write(t, tmp_path / name), t.column("unique_id")[0].as_py()


def test_unreadable_times_make_time_filters_fail_with_one_line(tmp_path, capsys):
    src, uid = _with_timestamps(tmp_path, ["17/07/2020 10:50"] * 30 + ["20200717T105031"] * 30)
    with pytest.raises(DataError, match="17/07/2020 10:50"):
        mtquery.search(src, start="2020-01-01", end="2020-12-31")
    for args in (["search", "--dataset", src, "--start", "2020-01-01"],
                 ["knn", "--dataset", src, "--id", uid, "--start", "2020-01-01", "--exact"],
                 ["knn", "--dataset", src, "--id", uid, "--end", "2021-01-01"]):
        code, out, err = run(capsys, *args)
        assert code == 1, (args, out)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and "time filters cannot be applied" in lines[0], err
    # without a time window the data serves as before
    assert mtquery.search(src, limit=None).num_rows == 60


def test_placeholders_are_no_time_not_an_error(tmp_path):
    src, _ = _with_timestamps(tmp_path, ["unknown", "", None] * 10 + ["20200717T105031"] * 30)
    assert mtquery.search(src, start="2020-07-17", end="2020-07-17", limit=None
                          ).num_rows == 30


@pytest.mark.parametrize("scale", [1, 1_000, 1_000_000, 1_000_000_000])
def test_integer_epochs_are_read_as_epochs(tmp_path, capsys, scale):
    base = 1_594_983_031  # 2020-07-17T10:50:31Z
    values = [(base + 86_400 * i) * scale for i in range(40)]
    src, uid = _with_timestamps(tmp_path, values, pa.int64())
    got = mtquery.search(src, start="2020-07-17", end="2020-07-26", limit=None)
    assert got.num_rows == 10
    assert got.column("timestamp")[0].as_py().startswith("2020-07-17T10:50:31")
    exact = mtquery.knn(src, id=uid, k=5, start="2020-07-17", end="2020-07-26", exact=True)
    assert exact.num_rows == 5
    assert all(t.startswith("2020-07-") for t in exact.column("timestamp").to_pylist())


def test_null_vector_optimizes_and_validates_alike(tmp_path):
    t = synth.make_table(n=300, dim=8, seed=4)
    m = synth.vectors(t)
    arr = embedding_array(m)
    mask = np.zeros(300, bool)
    mask[20] = True
    nulled = pa.FixedSizeListArray.from_arrays(arr.flatten(), 8, mask=pa.array(mask))
    t = t.set_column(t.schema.get_field_index("embedding"), "embedding", nulled)
    src = synth.write(t, tmp_path / "in.parquet")
    events = []
    manifest = optimize([src], tmp_path / "out", row_group_size=100, progress=events.append)
    assert manifest["rows"] == 300
    report = validate([str(tmp_path / "out")])
    assert report.checks["vectors"].failures == 1 and not report.ok
    note = [e.message for e in events if e.message and e.message.startswith("validated")]
    assert note and "INVALID" in note[0]  # the same verdict as validate's
    out = pa.concat_tables([pq.read_table(f)
                            for f in sorted((tmp_path / "out").glob("*.parquet"))])
    assert out.column("embedding").null_count == 1


def test_nan_vector_optimize_says_what_validate_says(tmp_path):
    t = synth.make_table(n=300, dim=8, seed=4)
    m = synth.vectors(t).copy()
    m[20, 2] = float("nan")
    t = t.set_column(t.schema.get_field_index("embedding"), "embedding", embedding_array(m))
    src = synth.write(t, tmp_path / "in.parquet")
    events = []
    optimize([src], tmp_path / "out", row_group_size=100, progress=events.append)
    note = [e.message for e in events if e.message and e.message.startswith("validated")]
    assert not validate([str(tmp_path / "out")]).ok
    assert note and "INVALID" in note[0] and "VALID with notes" not in note[0]
