"""Where scored batches go: the returned table (all rows, or the best ``limit``), a
GeoParquet file written batch by batch, a heat map grid, the detections above a threshold and
the rows nearest it. Every file is written to a temporary path and renamed only when the
whole run succeeded (``mtquery.io.fsio.atomic_path``): a failure leaves nothing behind."""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mtquery.find.heatmap import HeatGrid, HeatMap, heatmap_files, write_heatmap
from mtquery.find.stream import Scored

WKB_TYPES = {1: "Point", 2: "LineString", 3: "Polygon", 4: "MultiPoint", 5: "MultiLineString",
             6: "MultiPolygon", 7: "GeometryCollection"}


def wkb_types(col: pa.Array | pa.ChunkedArray) -> set[str]:
    """GeoParquet geometry type names of a WKB column, from each value's type word."""
    chunks = col.chunks if isinstance(col, pa.ChunkedArray) else [col]
    found: set[str] = set()
    for arr in chunks:
        if not len(arr) or arr.null_count == len(arr):
            continue
        arr = arr.cast(pa.binary())
        offsets = np.frombuffer(arr.buffers()[1], np.int32)[arr.offset:arr.offset + len(arr) + 1]
        data = np.frombuffer(arr.buffers()[2], np.uint8)
        start = offsets[:-1][np.asarray(arr.is_valid())]
        start = start[start + 5 <= len(data)]
        b = data[start[:, None] + np.arange(1, 5)].astype(np.uint32)
        little = data[start] == 1
        code = np.where(little, b[:, 0] | b[:, 1] << 8 | b[:, 2] << 16 | b[:, 3] << 24,
                        b[:, 3] | b[:, 2] << 8 | b[:, 1] << 16 | b[:, 0] << 24)
        for c in np.unique(code & 0x0FFFFFFF):
            base, dims = int(c) % 1000, int(c) // 1000
            name = WKB_TYPES.get(base)
            if name:
                found.add(name + (" Z" if dims in (1, 3) else ""))
    return found


def geo_metadata(types: set[str], bbox: list[float] | None) -> bytes:
    """GeoParquet 1.1 ``geo`` metadata for a WKB ``geometry`` column in EPSG:4326."""
    import pyproj

    column: dict = {"encoding": "WKB", "geometry_types": sorted(types),
                    "crs": pyproj.CRS.from_epsg(4326).to_json_dict()}
    if bbox is not None:
        column["bbox"] = bbox
    return json.dumps({"version": "1.1.0", "primary_column": "geometry",
                       "columns": {"geometry": column}}).encode()


def write_geoparquet(table: pa.Table, path: str | Path) -> None:
    """A scored table as GeoParquet (WKB geometry, EPSG:4326)."""
    from mtquery.find.heatmap import footprint_box

    box = footprint_box(table) if table.num_rows else None
    meta = dict(table.schema.metadata or {})
    meta[b"geo"] = geo_metadata(wkb_types(table.column("geometry")),
                                list(box) if box else None)
    pq.write_table(table.replace_schema_metadata(meta), path)


def geojson_text(table: pa.Table) -> str:
    """RFC 7946 FeatureCollection: the WKB footprint as geometry, the other columns as
    properties."""
    import shapely
    from shapely.geometry import mapping

    geoms = shapely.from_wkb(table.column("geometry").to_numpy(zero_copy_only=False))
    props = table.drop_columns(["geometry"]).to_pylist()
    feats = []
    for p, g in zip(props, geoms):
        clean = {k: (None if isinstance(v, float) and not np.isfinite(v) else v)
                 for k, v in p.items()}
        feats.append({"type": "Feature", "properties": clean,
                      "geometry": None if g is None else mapping(g)})
    return json.dumps({"type": "FeatureCollection", "features": feats}, allow_nan=False)


def with_value(rows: pa.Table, name: str, values: np.ndarray) -> pa.Table:
    """``rows`` (ROW_COLUMNS) with ``name`` (float32) after the geometry."""
    return rows.add_column(2, name, pa.array(np.asarray(values, np.float32), pa.float32()))


def _best(table: pa.Table, column: str, k: int, key: np.ndarray | None = None) -> pa.Table:
    """The ``k`` rows of highest ``key`` (default the column), best first, ties in order."""
    vals = table.column(column).to_numpy(zero_copy_only=False) if key is None else key
    vals = np.where(np.isfinite(vals), vals, -np.inf)
    if table.num_rows > k:
        part = np.argpartition(-vals, k - 1)[:k]
    else:
        part = np.arange(table.num_rows)
    order = part[np.lexsort((part, -vals[part]))]
    return table.take(pa.array(order))


@dataclass
class Sink:
    """Collects scored batches; ``close()`` renames the written files into place."""

    value: str
    limit: int | None = None
    output: Path | None = None
    heatmap: Path | None = None
    threshold: float | None = None
    detections: Path | None = None
    suggest: int = 0
    exclude: frozenset = frozenset()
    title: str = ""
    resolution: float | None = None
    rows: int = 0
    valid: int = 0
    heat: HeatMap | None = None
    _parts: list[pa.Table] = field(default_factory=list)
    _found: list[pa.Table] = field(default_factory=list)
    _near: pa.Table | None = None
    _grid: HeatGrid | None = None
    _writer: pq.ParquetWriter | None = None
    _stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)
    _tmp: dict[Path, Path] = field(default_factory=dict)
    _types: set[str] = field(default_factory=set)
    _box: list[float] | None = None

    def __enter__(self) -> Sink:
        from mtquery.io.fsio import atomic_path

        wanted = [p for p in (self.output, self.detections) if p is not None]
        if self.heatmap is not None:
            wanted += heatmap_files(self.heatmap)
            self._grid = HeatGrid(label=self.value)
        self._stack.__enter__()
        try:
            for p in wanted:
                self._tmp[Path(p)] = self._stack.enter_context(atomic_path(p))
        except BaseException as exc:
            self._stack.__exit__(type(exc), exc, exc.__traceback__)
            raise
        return self

    def __exit__(self, kind, exc, tb) -> bool:
        if self._writer is not None and kind is not None:
            with contextlib.suppress(Exception):
                self._writer.close()
        return bool(self._stack.__exit__(kind, exc, tb))

    def add(self, part: Scored, values: np.ndarray) -> None:
        t = with_value(part.rows, self.value, values)
        self.rows += t.num_rows
        self.valid += int(np.isfinite(values).sum())
        if part.box is not None:
            b = self._box or [np.inf, np.inf, -np.inf, -np.inf]
            self._box = [min(b[0], part.box[0]), min(b[1], part.box[1]),
                         max(b[2], part.box[2]), max(b[3], part.box[3])]
        if self.output is not None:
            if self._writer is None:
                self._writer = pq.ParquetWriter(self._tmp[Path(self.output)], t.schema)
            self._types |= wkb_types(t.column("geometry"))
            self._writer.write_table(t)
        if self._grid is not None:
            self._grid.add(part.rows.column("centre_lat").to_numpy(zero_copy_only=False),
                           part.rows.column("centre_lon").to_numpy(zero_copy_only=False),
                           values, part.box)
        if self.threshold is not None:
            hit = np.isfinite(values) & (values >= self.threshold)
            if hit.any():
                self._found.append(t.filter(pa.array(hit)))
        if self.suggest and self.threshold is not None:
            self._keep_near(t, values)
        self._parts.append(t)
        if self.limit is not None and sum(p.num_rows for p in self._parts) > 4 * self.limit:
            self._parts = [_best(pa.concat_tables(self._parts), self.value, self.limit)]

    def _keep_near(self, t: pa.Table, values: np.ndarray) -> None:
        if self.exclude:
            ids = np.asarray(t.column("unique_id").to_pylist(), dtype=object)
            keep = ~np.isin(ids, np.asarray(list(self.exclude), dtype=object))
            t, values = t.filter(pa.array(keep)), values[keep]
        near = -np.abs(values.astype(np.float64) - float(self.threshold))
        t = t.append_column("_near", pa.array(near))
        if self._near is not None:
            t = pa.concat_tables([self._near, t])
        self._near = _best(t, "_near", self.suggest)

    # ------------------------------------------------------------ results

    def table(self) -> pa.Table:
        """Every row (or the best ``limit``), highest value first."""
        if not self._parts:
            return pa.table({})
        t = pa.concat_tables(self._parts)
        return _best(t, self.value, t.num_rows if self.limit is None else self.limit)

    def found(self) -> pa.Table | None:
        if self.threshold is None:
            return None
        if not self._found:
            return self.table().slice(0, 0)
        t = pa.concat_tables(self._found)
        return _best(t, self.value, t.num_rows)

    def near(self) -> pa.Table | None:
        if not self.suggest or self._near is None:
            return None
        return self._near.drop_columns(["_near"])

    def finish(self) -> None:
        """Write what was asked for (into the temporary paths; renamed on exit)."""
        if self._writer is not None:
            self._writer.add_key_value_metadata({"geo": geo_metadata(self._types,
                                                                     self._box).decode()})
            self._writer.close()
            self._writer = None
        if self.detections is not None:
            Path(self._tmp[Path(self.detections)]).write_text(geojson_text(self.found()),
                                                              encoding="utf-8")
        if self._grid is not None:
            self.heat = self._grid.raster(self.resolution)
            files = {p: self._tmp[p] for p in heatmap_files(self.heatmap)}
            write_heatmap(self.heat, files, self.title)
