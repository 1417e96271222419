"""Grid: known answers from the spec, and a randomized comparison with an independent
implementation of the reference algorithm (per-row arrays + searchsorted, as grid.py does)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mtquery.errors import UsageError
from mtquery.standard import grid


class ReferenceGrid:
    """Independent re-implementation of the reference ``Grid`` (materialised rows/columns)."""

    R = 6378.137

    def __init__(self, dist: float) -> None:
        n = math.ceil(math.pi * self.R / dist)
        lats = np.sort(np.mod(np.linspace(-90, 90, n + 1)[:-1], 180) - 90)
        self.lats = lats
        self.zero_row = int(np.where(lats == 0)[0][0])
        self.lons = []
        self.zero_cols = []
        for lat in lats:
            m = math.ceil(2 * math.pi * self.R * math.cos(lat * math.pi / 180) / dist)
            lons = np.sort(np.mod(np.linspace(-180, 180, m + 1)[:-1], 360) - 180)
            self.lons.append(lons)
            self.zero_cols.append(int(np.where(lons == 0)[0][0]))

    def cell(self, lat: float, lon: float, side: str = "right") -> str:
        # side="right": last point <= value (spec); "left": reference searchsorted(...) - 1
        r = int(np.searchsorted(self.lats, lat, side=side)) - 1
        if side == "right":
            r = max(r, 0)
        lons = self.lons[r]
        c = int(np.searchsorted(lons, lon, side=side)) - 1
        if c < 0:
            c = len(lons) - 1  # python's -1: the antimeridian-spanning last column
        ru, cr = r - self.zero_row, c - self.zero_cols[r]
        return (f"{abs(ru)}{'U' if ru >= 0 else 'D'}_"
                f"{abs(cr)}{'R' if cr >= 0 else 'L'}")


@pytest.mark.parametrize("lat,lon,dist,expected", [
    (40.5829, -111.6556, 10, "451U_946L"),
    (0.001, 0.001, 10, "0U_0R"),
    (-0.001, -0.001, 10, "1D_1L"),
    (-63.121, -178.892, 1000, "8D_7R"),
])
def test_known_answers(lat, lon, dist, expected):
    assert grid.latlon_to_cell(lat, lon, dist_km=dist)[0] == expected


def test_rows_and_spacing():
    assert grid.n_rows(10) == 2004
    b = grid.cell_bounds(["0U_0R"])[0]
    assert b[3] - b[1] == pytest.approx(0.0898, abs=1e-4)


def test_signed_rowcol():
    r, c = grid.latlon_to_rowcol([40.5829, -0.001], [-111.6556, -0.001])
    assert r.tolist() == [451, -1] and c.tolist() == [-946, -1]


@pytest.mark.parametrize("dist", [10.0, 100.0, 1000.0, 37.3])
def test_randomized_against_independent_implementation(dist):
    ref = ReferenceGrid(dist)
    rng = np.random.default_rng(int(dist))
    lat = rng.uniform(-89.9, 89.9, 3000)
    lon = rng.uniform(-180, 180, 3000)
    got = grid.latlon_to_cell(lat, lon, dist_km=dist)
    want = [ref.cell(a, b) for a, b in zip(lat, lon)]
    assert got.tolist() == want


def test_exact_grid_points_spec_and_reference_boundaries():
    ref = ReferenceGrid(10.0)
    rng = np.random.default_rng(3)
    rows = rng.integers(10, len(ref.lats) - 10, 300)
    lat, lon = [], []
    for r in rows:
        lons = ref.lons[r]
        lat.append(ref.lats[r])
        lon.append(lons[rng.integers(1, len(lons))])
    lat, lon = np.array(lat), np.array(lon)
    spec = grid.latlon_to_cell(lat, lon)
    assert spec.tolist() == [ref.cell(a, b, "right") for a, b in zip(lat, lon)]
    refmode = grid.latlon_to_cell(lat, lon, boundary="reference")
    assert refmode.tolist() == [ref.cell(a, b, "left") for a, b in zip(lat, lon)]
    assert (spec != refmode).all()  # on grid lines the two rules differ by design


def test_points_fall_inside_their_cell_bounds():
    rng = np.random.default_rng(1)
    lat = rng.uniform(-89, 89, 20000)
    lon = rng.uniform(-180, 180, 20000)
    b = grid.cell_bounds(grid.latlon_to_cell(lat, lon))
    lon_w = np.where(lon < b[:, 0], lon + 360, lon)  # antimeridian-spanning last columns
    assert ((b[:, 0] <= lon_w) & (lon_w < b[:, 2]) & (b[:, 1] <= lat) & (lat < b[:, 3])).all()


def test_cell_bounds_round_trip_sw_corner():
    names = np.array(["451U_946L", "0U_0R", "1D_1L", "110D_457L"])
    b = grid.cell_bounds(names)
    assert grid.latlon_to_cell(b[:, 1], b[:, 0]).tolist() == names.tolist()


def test_cells_in_bbox_matches_brute_force():
    bbox = (-111.9, 40.3, -111.3, 40.8)
    names, r, c = grid.cells_in_bbox(*bbox)
    lat = np.linspace(bbox[1], bbox[3], 400)
    lon = np.linspace(bbox[0], bbox[2], 400)
    la, lo = np.meshgrid(lat, lon)
    brute = set(grid.latlon_to_cell(la.ravel(), lo.ravel()).tolist())
    assert set(names.tolist()) == brute
    assert len(names) == len(set(names.tolist()))
    assert grid.rowcol_to_cell(r, c).tolist() == names.tolist()


def test_utm_epsg_rules():
    lats = [40.58, -33.9, 60.0, 78.0, 78.0, 78.0, 78.0, 0.0]
    lons = [-111.66, 18.4, 5.0, 5.0, 15.0, 25.0, 40.0, 180.0]
    assert grid.utm_epsg(lats, lons).tolist() == [32612, 32734, 32632, 32631, 32633, 32635,
                                                  32637, 32660]


@pytest.mark.parametrize("bad", ["", "451X_946L", "0D_1R", "1U_0L", "U_1R", "451U946L"])
def test_bad_cell_names(bad):
    with pytest.raises(UsageError):
        grid.parse_cells([bad])


def test_out_of_range_inputs():
    with pytest.raises(UsageError):
        grid.latlon_to_cell(91, 0)
    with pytest.raises(UsageError):
        grid.latlon_to_cell(0, 181)
    with pytest.raises(UsageError):
        grid.latlon_to_cell(float("nan"), 0)
    with pytest.raises(UsageError):
        grid.cell_bounds(["3000U_0R"])
