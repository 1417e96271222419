"""Change over time (`mtquery change`, `mtquery.change`, the SQL macro `cell_change`) against a
brute force on a fixture with two periods where some cells changed."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pyarrow as pa
import pytest
import synth

import mtquery
from mtquery.cli import main
from mtquery.errors import DataError, UsageError
from mtquery.query.change import change, parse_period
from mtquery.standard.schema import embedding_array

CHANGED = 5
CELLS = 30
PER = 4  # fragments per cell and period


@pytest.fixture(scope="module")
def two_periods(tmp_path_factory):
    base = synth.make_table(CELLS, dim=16, seed=9)
    rng = np.random.default_rng(2)
    centres = rng.normal(size=(CELLS + CHANGED, 16)).astype(np.float32)
    rows, vecs, times, pix = [], [], [], []
    for c in range(CELLS):
        for period, day in ((0, dt.datetime(2019, 6, 1, 10)), (1, dt.datetime(2023, 6, 1, 10))):
            centre = centres[CELLS + c] if (period == 1 and c < CHANGED) else centres[c]
            for f in range(PER):
                rows.append(c)
                vecs.append(centre + 0.05 * rng.normal(size=16).astype(np.float32))
                times.append((day + dt.timedelta(days=f)).strftime("%Y%m%dT%H%M%S"))
                pix.append([0, 211 * f, 224, 211 * f + 224])
    lone = synth.make_table(CELLS + 1, dim=16, seed=9).slice(CELLS, 1)  # one period only
    t = base.take(pa.array(rows))
    t = t.set_column(t.schema.get_field_index("unique_id"), "unique_id",
                     pa.array([f"id{i:05d}" for i in range(len(rows))]))
    t = t.set_column(t.schema.get_field_index("timestamp"), "timestamp", pa.array(times))
    t = t.set_column(t.schema.get_field_index("pixel_bbox"), "pixel_bbox",
                     pa.array(pix, pa.list_(pa.int64())))
    t = t.set_column(t.schema.get_field_index("embedding"), "embedding",
                     embedding_array(np.stack(vecs)))
    lone = lone.set_column(lone.schema.get_field_index("timestamp"), "timestamp",
                           pa.array(["20190602T100000"]))
    t = pa.concat_tables([t, lone.cast(t.schema)])
    return synth.write(t, tmp_path_factory.mktemp("chg") / "two.parquet")


def brute(path, per_fragment=False):
    s = mtquery.open_session(path)
    rows = s.con.execute("SELECT grid_cell, pixel_bbox, acquired_at, embedding FROM "
                         "embeddings").fetchall()
    groups: dict = {}
    for cell, pb, when, emb in rows:
        p = 0 if when.year == 2019 else 1
        key = (cell, tuple(pb)) if per_fragment else cell
        v = np.asarray(emb, np.float64)
        groups.setdefault(key, {}).setdefault(p, []).append(v / np.linalg.norm(v))
    out = {}
    for key, g in groups.items():
        if 0 in g and 1 in g:
            a, b = np.mean(g[0], 0), np.mean(g[1], 0)
            out[key] = 1 - a @ b / np.linalg.norm(a) / np.linalg.norm(b)
    return out


def test_change_per_cell_matches_brute_force(two_periods, caplog):
    s = mtquery.open_session(two_periods)
    with caplog.at_level("WARNING", logger="mtquery"):
        t = change(s, "2019-01-01..2019-12-31", "2023-01-01..2023-12-31")
    assert "1 place(s) seen in only one period" in caplog.text
    want = brute(two_periods)
    got = dict(zip(t.column("grid_cell").to_pylist(), t.column("distance").to_pylist()))
    assert set(got) == set(want) and len(got) == CELLS
    for cell, d in want.items():
        assert abs(got[cell] - d) < 1e-4
    ranked = t.column("grid_cell").to_pylist()
    changed = set(sorted(want, key=want.get, reverse=True)[:CHANGED])
    assert set(ranked[:CHANGED]) == changed  # the changed cells rank first
    assert t.column("before_n").to_pylist()[0] == PER
    assert t.column("before_first")[0].as_py().year == 2019
    assert t.column("after_last")[0].as_py() == dt.datetime(2023, 6, 4, 10)


def test_change_per_fragment(two_periods):
    s = mtquery.open_session(two_periods)
    t = change(s, "2019-01-01..2019-12-31", "2023-01-01..2023-12-31", per_fragment=True)
    want = brute(two_periods, per_fragment=True)
    assert t.num_rows == len(want) == CELLS * PER
    assert t.column("distance").to_pylist() == sorted(t.column("distance").to_pylist(),
                                                      reverse=True)


def test_sql_macro_matches(two_periods):
    con = mtquery.connect(two_periods)
    rows = con.execute("SELECT grid_cell, distance FROM cell_change(TIMESTAMP '2019-01-01', "
                       "TIMESTAMP '2020-01-01', TIMESTAMP '2023-01-01', "
                       "TIMESTAMP '2024-01-01')").fetchall()
    want = brute(two_periods)
    assert len(rows) == len(want)
    for cell, d in rows:
        assert abs(d - want[cell]) < 1e-4


def test_change_cli(two_periods, capsys):
    try:
        main(["change", "-d", two_periods, "--before", "2019-01-01..2019-12-31", "--after",
              "2023-01-01..2023-12-31", "--limit", "3", "-f", "json"])
    except SystemExit as exc:
        assert not exc.code
    out, err = capsys.readouterr()
    rows = json.loads(out)
    assert len(rows) == 3 and rows[0]["distance"] >= rows[1]["distance"]
    assert "only one period" in err


@pytest.mark.parametrize("before,after,error,words", [
    ("2020-01-01..", "2023-01-01..2023-12-31", UsageError, "START..END"),
    ("2030-01-01..2030-12-31", "2023-01-01..2023-12-31", DataError, "before"),
    ("2019-12-31..2019-01-01", "2023-01-01..2023-12-31", UsageError, "after end"),
])
def test_bad_periods(two_periods, before, after, error, words):
    s = mtquery.open_session(two_periods)
    with pytest.raises(error, match=words):
        change(s, before, after)


def test_parse_period():
    p = parse_period("2020-01-01..2020-12-31")
    assert p.time.start == dt.datetime(2020, 1, 1) and p.time.end == dt.datetime(2021, 1, 1)


def test_api(two_periods):
    t = mtquery.change(two_periods, before="2019-01-01..2019-12-31",
                       after="2023-01-01..2023-12-31", limit=2)
    assert t.num_rows == 2 and "geometry" in t.column_names
