"""The range predicates that prune through the grid (centre_lat / centre_lon widened by a
fragment's reach, a timestamp-text range) keep every row the exact filters keep: searches with
them equal searches without them, over timestamps in every spelling the views parse."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pytest
import synth

import mtquery
from mtquery.query.filters import (
    BBox,
    Filters,
    TimeRange,
    centre_window,
    parse_time_range,
    point_window,
    prune_sql,
    timestamp_window,
)
from mtquery.query.search import run, search


def test_centre_window_widens_and_gives_up_near_poles_and_the_antimeridian():
    w = centre_window(BBox(10.0, 40.0, 11.0, 41.0))
    assert w.lat[0] < 40 - 0.08 and w.lat[1] > 41 + 0.08 and w.lon[0] < 10 - 0.1
    assert centre_window(BBox(10.0, 88.95, 11.0, 89.5)).lon is None
    assert centre_window(BBox(179.95, 0.0, 180.0, 1.0)).lon is None
    assert point_window(-60.0, -179.99).lon is None
    assert point_window(60.0, 20.0).lon[1] - 20 == pytest.approx(10 / (111.32 * 0.4925),
                                                                 rel=0.05)


SPELLINGS = (
    lambda t: t.strftime("%Y%m%dT%H%M%S"),
    lambda t: t.isoformat() + "Z",
    lambda t: t.strftime("%Y-%m-%d %H:%M:%S"),
    lambda t: (t + dt.timedelta(hours=14)).isoformat() + "+14:00",
    lambda t: (t - dt.timedelta(hours=11)).isoformat() + "-11:00",
    lambda t: t.strftime("%Y-%m-%dT%H:%M:%S.%f"),
)


def test_timestamp_window_keeps_every_spelling_in_the_window():
    rng = np.random.default_rng(3)
    base = dt.datetime(2015, 1, 1)
    for _ in range(300):
        a, b = sorted(rng.integers(0, 10 * 365 * 86400, 2))
        start = base + dt.timedelta(seconds=int(a), microseconds=int(rng.integers(0, 10**6)))
        end = base + dt.timedelta(seconds=int(b))
        tr = parse_time_range(start.isoformat(), end.isoformat())
        lo, hi = timestamp_window(tr)
        for s in rng.integers(int(a) - 86400, int(b) + 86400, 20):
            t = (base + dt.timedelta(seconds=int(s))).replace(microsecond=0)
            if not (tr.start <= t < tr.end):
                continue
            for spell in SPELLINGS:
                text = spell(t)
                assert lo <= text < hi, (text, lo, hi)
    assert timestamp_window(TimeRange()) == (None, None)


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """A synthetic dataset whose timestamps use every spelling, sorted by latitude."""
    table = synth.make_table(4000, dim=8, seed=11, embedding_layout="list")
    rng = np.random.default_rng(5)
    base = dt.datetime(2018, 1, 1)
    times = [base + dt.timedelta(seconds=int(s)) for s in rng.integers(0, 6 * 365 * 86400, 4000)]
    texts = [SPELLINGS[i % len(SPELLINGS)](t) for i, t in enumerate(times)]
    table = table.set_column(table.schema.get_field_index("timestamp"), "timestamp",
                             pa.array(texts))
    table = table.sort_by("centre_lat")
    path = tmp_path_factory.mktemp("mixed") / "mixed.parquet"
    return synth.write(table, path, row_group_size=250)


EXACT = ("SELECT unique_id FROM embeddings WHERE ST_Intersects(geometry, "
         "ST_MakeEnvelope(?, ?, ?, ?)) AND acquired_at >= ? AND acquired_at < ? "
         "ORDER BY unique_id")


def test_pruned_search_equals_the_exact_filter(mixed):
    session = mtquery.open_session(mixed)
    rng = np.random.default_rng(8)
    checked = 0
    for _ in range(40):
        lon, lat = rng.uniform(-9, 9), rng.uniform(41, 49)
        d = rng.uniform(0.05, 2.0)
        y0 = int(rng.integers(2018, 2023))
        f = Filters.of((lon - d, lat - d, lon + d, lat + d), f"{y0}-03-01", f"{y0 + 1}-02-28")
        assert prune_sql(f)[0]  # the predicates are there
        got = sorted(search(session, f, limit=None).column("unique_id").to_pylist())
        want = run(session, EXACT, [lon - d, lat - d, lon + d, lat + d, f.time.start,
                                    f.time.end]).column("unique_id").to_pylist()
        assert got == want
        checked += len(want)
    assert checked > 100


def test_cell_filter_prunes_and_keeps_its_rows(mixed):
    session = mtquery.open_session(mixed)
    cells = run(session, "SELECT grid_cell, count(*) AS n FROM embeddings GROUP BY 1 "
                         "ORDER BY 2 DESC LIMIT 5").to_pylist()
    for c in cells:
        f = Filters.of(cell=c["grid_cell"])
        assert "centre_lat BETWEEN" in " ".join(prune_sql(f)[0])
        assert search(session, f, limit=None).num_rows == c["n"]
