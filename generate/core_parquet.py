"""Major TOM Core image parquet files as generator input.

``images/part_*.parquet``: one sample per row (in practice one per row group), one
GeoTIFF-bytes column per band, local or remote (``https://``, ``hf://datasets/...``; see
:mod:`mtquery.generate.remote`), read one row group at a time with only the needed columns.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from mtquery.errors import DataError
from mtquery.generate.remote import open_remote
from mtquery.generate.sample import NOMINAL_RES, Sample, SampleError
from mtquery.io.datasets import is_remote

META_COLUMNS = ("product_id", "grid_cell", "grid_row_u", "grid_col_r", "timestamp")


def decode_geotiff(data: bytes) -> tuple[np.ndarray, tuple[float, float], float, str]:
    """(array, (ulx, uly), pixel size, crs) of single-band GeoTIFF bytes."""
    from rasterio.io import MemoryFile

    if not data:
        raise SampleError("empty band bytes")
    try:
        with MemoryFile(data) as mf, mf.open() as src:
            arr = src.read(1)
            t = src.transform
            crs = src.crs.to_string() if src.crs else ""
    except SampleError:
        raise
    except Exception as exc:
        raise SampleError(f"corrupt GeoTIFF bytes ({type(exc).__name__})") from None
    return arr, (t.c, t.f), float(abs(t.a)), crs


@dataclass
class CoreInput:
    """One Core image parquet file; samples are (row group, row) pairs in file order."""

    path: str
    kind: str = "core"

    def __post_init__(self):
        import pyarrow.parquet as pq

        try:
            if is_remote(self.path):  # one coalesced range request per row group
                self._pf = pq.ParquetFile(open_remote(self.path), pre_buffer=True)
            else:
                self._pf = pq.ParquetFile(self.path)
        except DataError:
            raise
        except Exception as exc:
            raise DataError(f"cannot read {self.path} as parquet: {exc}") from None
        md = self._pf.metadata
        self.columns = set(self._pf.schema_arrow.names)
        missing = [c for c in META_COLUMNS if c not in self.columns]
        if missing:
            raise DataError(f"{self.path} is not a Major TOM Core image parquet (no "
                            f"{', '.join(missing)} column)")
        self.index = [(rg, r) for rg in range(md.num_row_groups)
                      for r in range(md.row_group(rg).num_rows)]

    @property
    def bands(self) -> set[str]:
        return {c for c in self.columns if c in NOMINAL_RES}

    def __len__(self) -> int:
        return len(self.index)

    def describe(self) -> dict:
        return {"path": self.path, "kind": "core-parquet",
                "row_groups": self._pf.metadata.num_row_groups, "samples": len(self.index)}

    def samples(self, start: int, stop: int, bands: tuple[str, ...]
                ) -> Iterator[tuple[int, Sample | None, str | None]]:
        """(index, sample or None, error) for samples start..stop-1, one row group read at a
        time."""
        cols = list(META_COLUMNS) + [b for b in bands if b in self.columns]
        cur_rg, table = -1, None
        for i in range(start, stop):
            rg, row = self.index[i]
            if rg != cur_rg:
                try:
                    table = self._pf.read_row_group(rg, columns=cols)
                except Exception as exc:
                    table = None
                    err = f"unreadable row group {rg} ({type(exc).__name__})"
                cur_rg = rg
            if table is None:
                yield i, Sample("?", 0, 0, "?", "", ref=f"{self.path}#{rg}"), err
                continue
            meta = {c: table.column(c)[row].as_py() for c in META_COLUMNS}
            s = Sample(str(meta["grid_cell"]), int(meta["grid_row_u"] or 0),
                       int(meta["grid_col_r"] or 0), str(meta["product_id"]),
                       str(meta["timestamp"]), ref=f"{self.path}#{rg}")
            try:
                finest = None
                for b in bands:
                    if b not in table.column_names or table.column(b)[row].as_py() is None:
                        raise SampleError(f"missing band {b}")
                    arr, origin, px, crs = decode_geotiff(table.column(b)[row].as_py())
                    s.bands[b] = arr
                    if finest is None or px < finest[1]:
                        finest = (origin, px, crs)
                s.origin, s.pixel_size, s.crs = finest
                if not s.crs:
                    raise SampleError("GeoTIFF without CRS")
            except SampleError as exc:
                yield i, s, str(exc)
                continue
            yield i, s, None
