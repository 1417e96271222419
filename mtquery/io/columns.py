"""Column roles: which column of an embedding table is the vector, the id, the time and the
place, for any Parquet / GeoParquet, not only files written to the Major TOM standard.

``detect`` reads the roles off the column names and types (DuckDB's, so the SQL views and
the Arrow readers agree) and the GeoParquet ``geo`` metadata; ``--columns
vector=emb,id=chip,time=acq`` (``parse_override``) names them instead. A file with every
standard column is read as it is (``Roles.standard``: the views are those of a Major TOM file,
nothing is derived). Otherwise the views derive what is missing
(``mtquery.io.derive``): the centre from the geometry, the grid cell, row and column from the
Major TOM grid of the centre, an id from the file and row, ``product_id`` NULL.

The rules (docs/columns.md):

- vector: a list / fixed-size list of float16/32/64 or int8 (``Array2D(1, dim)`` too); the
  column ``embedding`` when there is one, else the only such column (coordinate-sized lists of
  at most 4 values and ``bbox``-like names are not candidates); two candidates are an error
  naming both.
- id: the first of ``ID_NAMES`` present, else ``<file relative to the dataset>:<row>``.
- time: the first of ``TIME_NAMES`` present (text, timestamp, date or epoch); none is allowed.
- place: the GeoParquet primary geometry column, else a GEOMETRY / WKB column named like
  ``GEOMETRY_NAMES``, else ``lat``/``lon``-like columns. A geometry without a CRS whose
  coordinates lie within lon/lat bounds is read as OGC:CRS84 (with a notice); a projected CRS
  is transformed to lon/lat (PROJ, the CRS read with pyproj).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from mtquery.errors import DataError, UsageError
from mtquery.standard.schema import REQUIRED

VECTOR_NAMES = ("embedding", "embeddings", "emb", "embed", "vector", "vectors", "features",
                "feature", "embedding_vector", "feature_vector")
ID_NAMES = ("unique_id", "id", "chips_id", "chip_id", "fid", "uid", "uuid", "sample_id",
            "patch_id", "item_id", "key")
TIME_NAMES = ("timestamp", "datetime", "date", "time", "acquired", "acquired_at",
              "acquisition_date", "acquisition_time", "date_acquired", "capture_date",
              "sensing_time", "start_datetime", "dt")
GEOMETRY_NAMES = ("geometry", "geom", "footprint", "wkb_geometry", "the_geom", "wkb", "shape")
LAT_NAMES = ("centre_lat", "center_lat", "lat", "latitude", "centroid_lat")
LON_NAMES = ("centre_lon", "center_lon", "lon", "lng", "long", "longitude", "centroid_lon")
NOT_VECTORS = ("bbox", "pixel_bbox", "coordinates", "coords", "centroid", "center", "centre")
#: the roles --columns may name (crs is a CRS, not a column)
ROLE_KEYS = ("vector", "id", "time", "geometry", "lat", "lon", "crs")
EXAMPLE = "vector=emb,id=chip_id,time=acquired"

_VECTOR_TYPE = re.compile(
    r"^(FLOAT|DOUBLE|REAL|TINYINT|DECIMAL\(\d+,\d+\))((?:\[\d*\])+)$")
_NUMERIC = ("DOUBLE", "FLOAT", "REAL", "DECIMAL", "INTEGER", "BIGINT", "SMALLINT", "TINYINT",
            "HUGEINT", "UBIGINT", "UINTEGER", "USMALLINT", "UTINYINT")
_TIME_TYPES = ("VARCHAR", "TIMESTAMP", "DATE", "BIGINT", "INTEGER", "UBIGINT", "UINTEGER",
               "HUGEINT")


@dataclass(frozen=True)
class Roles:
    """What each standard role is read from, and what is derived."""

    vector: str
    id: str | None = None  # None: <file>:<row>
    time: str | None = None  # None: no time (timestamp NULL)
    geometry: str | None = None
    lat: str | None = None  # centre read from these when there is no geometry, or when they
    lon: str | None = None  # are floating-point columns beside it
    crs: str | None = None  # None: lon/lat (OGC:CRS84); else the geometry's CRS (transformed)
    standard: bool = False  # every standard column present: read as they are
    points: bool = False  # the places are points (lat/lon, GeoArrow or declared Point types)
    derived: tuple[str, ...] = ()
    notices: tuple[str, ...] = field(default=(), compare=False)

    def mapping(self) -> dict[str, str]:
        """role -> source column (or a description of how it is derived)."""
        out = {"vector": self.vector,
               "id": self.id or "derived: <file>:<row>",
               "time": self.time or "none",
               "place": (self.geometry or f"{self.lat}, {self.lon}")}
        if self.crs:
            out["crs"] = f"{self.crs} (transformed to lon/lat)"
        return out

    def to_dict(self) -> dict:
        d = asdict(self)
        d["derived"] = list(self.derived)
        d.pop("notices")
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Roles:
        try:
            return cls(**{**d, "derived": tuple(d.get("derived", ()))})
        except TypeError as exc:
            raise DataError(f"remembered column roles are malformed: {exc}") from exc

    def key(self) -> str:
        """A short identity of the roles (for cache and index keys); '' for standard files."""
        if self.standard:
            return ""
        import hashlib

        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()
                              ).hexdigest()[:16]

    def source_columns(self) -> list[str]:
        """The source columns the derivation reads."""
        return [c for c in (self.vector, self.id, self.time, self.geometry, self.lat,
                            self.lon) if c]


STANDARD = Roles(vector="embedding", id="unique_id", time="timestamp", geometry="geometry",
                 lat="centre_lat", lon="centre_lon", standard=True)


def parse_override(text: str | None) -> dict[str, str]:
    """``vector=emb,id=chip,time=acq`` -> {role: column}; ``time=`` (empty) means none."""
    if not text or not text.strip():
        return {}
    out: dict[str, str] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        key = key.strip().lower()
        if not sep or key not in ROLE_KEYS:
            raise UsageError(f"--columns takes role=column pairs with roles "
                             f"{', '.join(ROLE_KEYS)}, e.g. {EXAMPLE} (got {part.strip()!r})",
                             "columns")
        if key in out:
            raise UsageError(f"--columns names {key} twice", "columns")
        out[key] = value.strip()
    return out


def override_text(override: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(override.items()))


def is_vector_type(dtype: str) -> bool:
    m = _VECTOR_TYPE.match(dtype.replace(" ", ""))
    if not m:
        return False
    dims = re.findall(r"\[(\d*)\]", m.group(2))
    if len(dims) > 2 or (len(dims) == 2 and dims[0] not in ("", "1")):
        return False
    return not (dims[-1] and int(dims[-1]) <= 4)  # coordinates, not a vector


def is_geometry_type(dtype: str) -> bool:
    d = dtype.replace(" ", "").upper()
    return d.startswith("GEOMETRY") or d in ("BLOB", "WKB_BLOB") or geoarrow_depth(d) is not None


def geoarrow_depth(dtype: str) -> int | None:
    """List depth of a GeoArrow (separated coordinates) geometry: 0 point, 1 linestring,
    2 polygon, 3 multipolygon; None for anything else."""
    d = dtype.replace(" ", "").replace('"', "").upper()
    m = re.match(r"^STRUCT\(XDOUBLE,YDOUBLE(?:,ZDOUBLE)?\)((?:\[\])*)$", d)
    return None if m is None or len(m.group(1)) > 6 else len(m.group(1)) // 2


def _numeric(dtype: str) -> bool:
    return dtype.split("(")[0].upper() in _NUMERIC


def _first(names: tuple[str, ...], types: dict[str, str], ok=lambda t: True) -> str | None:
    lower = {c.lower(): c for c in types}
    for n in names:
        c = lower.get(n)
        if c is not None and ok(types[c]):
            return c
    return None


def _check_column(role: str, col: str, types: dict[str, str],
                  ok: Callable[[str], bool] | None = None, kind: str = "") -> str:
    """``col``, named by ``--columns role=col``: it exists and (``ok``) is of the ``kind``."""
    if col not in types:
        raise DataError(f"--columns {role}={col}: no column {col!r} in the dataset (columns: "
                        f"{', '.join(types)})", "columns")
    if ok is not None and not ok(types[col]):
        raise DataError(f"--columns {role}={col}: column {col!r} has type {types[col]}, "
                        f"not {kind}", "columns")
    return col


def _vector(types: dict[str, str], override: dict[str, str]) -> str:
    if "vector" in override:
        return _check_column("vector", override["vector"], types, is_vector_type,
                             "a list of numbers")
    cands = [c for c, t in types.items() if is_vector_type(t) and c.lower() not in NOT_VECTORS]
    if "embedding" in cands:
        return "embedding"
    if len(cands) == 1:
        return cands[0]
    if not cands:
        raise DataError("no vector column: expected a list or fixed-size list of float16/32/64 "
                        "or int8 (e.g. a column 'embedding'); columns: "
                        f"{', '.join(f'{c} {t}' for c, t in types.items())}")
    raise DataError(f"{len(cands)} candidate vector columns: {', '.join(cands)}; choose one "
                    f"with --columns vector={cands[0]}")


def _time(types: dict[str, str], override: dict[str, str]) -> str | None:
    if "time" in override:
        col = override["time"]
        if col.lower() in ("", "none"):
            return None
        _check_column("time", col, types)
        return col
    return _first(TIME_NAMES, types, lambda t: t.startswith("TIMESTAMP")  # _NS, _MS, _S too
                  or t.split("(")[0].split(" ")[0] in _TIME_TYPES)


def _id(types: dict[str, str], override: dict[str, str]) -> str | None:
    if "id" in override:
        col = override["id"]
        if col.lower() in ("", "none", "row"):
            return None
        _check_column("id", col, types)
        return col
    return _first(ID_NAMES, types, lambda t: not t.endswith("]") and "STRUCT" not in t)


def _geo_column(geo: dict | None, name: str | None) -> dict | None:
    if not geo or not name:
        return None
    col = (geo.get("columns") or {}).get(name)
    return col if isinstance(col, dict) else None


def crs_of(geo_col: dict | None) -> tuple[str | None, bool]:
    """(CRS to transform from or None for lon/lat, whether the CRS is unknown) of a geo
    metadata column entry (GeoParquet: a missing ``crs`` is OGC:CRS84, ``null`` unknown)."""
    if geo_col is None:
        return None, True
    if "crs" not in geo_col:
        return None, False
    crs = geo_col["crs"]
    if crs is None:
        return None, True
    from pyproj import CRS
    from pyproj.exceptions import CRSError

    ident = crs.get("id") if isinstance(crs, dict) else None
    if isinstance(ident, dict) and ident.get("authority") and ident.get("code"):
        crs = f"{ident['authority']}:{ident['code']}"  # PROJJSON's id: enough, and robust
    try:
        c = CRS.from_user_input(crs if not isinstance(crs, dict) else json.dumps(crs))
    except CRSError as exc:
        raise DataError(f"the geometry's CRS cannot be read: {str(exc).splitlines()[0]}"
                        ) from exc
    if c.is_geographic and (c.to_epsg() in (4326, None) or "CRS84" in c.to_string()):
        return None, False
    auth = c.to_authority()
    return (f"{auth[0]}:{auth[1]}" if auth else c.to_wkt()), False


def _place(types: dict[str, str], geo: dict | None, override: dict[str, str]
           ) -> tuple[str | None, str | None, str | None, str | None, bool]:
    """(geometry, lat, lon, crs, crs unknown)."""
    lat_o, lon_o = override.get("lat"), override.get("lon")
    if "geometry" in override:
        geom = _check_column("geometry", override["geometry"], types, is_geometry_type,
                             "a geometry (WKB, GEOMETRY or a GeoArrow point)")
    elif lat_o or lon_o:
        geom = None
    else:
        primary = (geo or {}).get("primary_column")
        geom = primary if primary in types and is_geometry_type(types[primary]) else None
        geom = geom or next((c for c, t in types.items() if t.upper().startswith("GEOMETRY")),
                            None)
        geom = geom or _first(GEOMETRY_NAMES, types, is_geometry_type)
    lat = lon = None
    for role, names, given in (("lat", LAT_NAMES, lat_o), ("lon", LON_NAMES, lon_o)):
        if given:
            col = _check_column(role, given, types, _numeric, "a number")
        else:
            float_only = geom is not None  # beside a geometry only exact centres are used
            col = _first(names, types, (lambda t: t.upper() in ("DOUBLE", "FLOAT", "REAL"))
                         if float_only else _numeric)
        if role == "lat":
            lat = col
        else:
            lon = col
    if (lat is None) != (lon is None):
        lat = lon = None
    if geom is None and lat is None:
        bad = _first(GEOMETRY_NAMES, types)
        if bad is not None:
            raise DataError(f"column {bad!r} has type {types[bad]}, not a geometry (WKB, "
                            "GEOMETRY or a GeoArrow point); name the place with --columns "
                            "geometry=COL or lat=COL,lon=COL")
        raise DataError("no place: expected a geometry column (WKB / GeoParquet) or lat/lon "
                        "columns; name them with --columns geometry=COL or lat=COL,lon=COL")
    if "crs" in override:
        crs = override["crs"] or None
        if crs and crs.upper() in ("OGC:CRS84", "EPSG:4326", "CRS84"):
            crs = None
        return geom, lat, lon, crs, False
    if geom is None:
        return None, lat, lon, None, False
    entry = _geo_column(geo, geom)
    typed = re.match(r"^GEOMETRY\('(.+)'\)$", types[geom].strip())
    if entry is None and typed:  # DuckDB's GEOMETRY('EPSG:32633'): the CRS the file declares
        entry = {"crs": typed.group(1)}
    crs, unknown = crs_of(entry)
    return geom, lat, lon, crs, unknown


def detect(types: dict[str, str], geo: dict | None = None,
           override: dict[str, str] | None = None) -> Roles:
    """The roles of a table with ``types`` ({column: DuckDB type}) and GeoParquet ``geo``
    metadata. Raises DataError naming the problem (two vector columns, none, a missing
    --columns column, a geometry that is not one...)."""
    override = override or {}
    if not override and all(c in types for c in REQUIRED):
        return STANDARD
    vector = _vector(types, override)
    geom, lat, lon, crs, unknown = _place(types, geo, override)
    roles_id, time = _id(types, override), _time(types, override)
    if all(c in types for c in REQUIRED) and (vector, roles_id, time, geom, lat, lon, crs) == (
            "embedding", "unique_id", "timestamp", "geometry", "centre_lat", "centre_lon",
            None):
        return STANDARD
    derived = []
    if roles_id is None:
        derived.append("unique_id")
    if lat is None:
        derived += ["centre_lat", "centre_lon"]
    if geom is None:
        derived.append("geometry")
    derived += ["grid_cell", "grid_row_u", "grid_col_r", "product_id"]
    notices = []
    if unknown and geom is not None:
        notices.append(f"the geometry column {geom!r} has no CRS: read as lon/lat (OGC:CRS84); "
                       "say otherwise with --columns crs=EPSG:CODE")
    return Roles(vector=vector, id=roles_id, time=time, geometry=geom, lat=lat, lon=lon,
                 crs=crs, standard=False, points=_points(types, geo, geom),
                 derived=tuple(derived), notices=tuple(notices))


def _points(types: dict[str, str], geo: dict | None, geom: str | None) -> bool:
    """Whether every place is a point: lat/lon columns, a GeoArrow point, or a geometry
    column whose GeoParquet ``geometry_types`` are points only."""
    if geom is None:
        return True
    if geoarrow_depth(types[geom]) == 0:
        return True
    kinds = (_geo_column(geo, geom) or {}).get("geometry_types") or []
    return bool(kinds) and all(str(k).split(" ")[0] in ("Point", "MultiPoint") for k in kinds)


def id_root(sources: list[str] | tuple[str, ...]) -> str:
    """The prefix stripped from file names in derived ids: the folder holding every source
    (with its trailing separator)."""
    if not sources:
        return ""
    import os

    if len(sources) == 1:
        s = sources[0]
        cut = max(s.rfind("/"), s.rfind("\\"))
        return s[:cut + 1]
    common = os.path.commonprefix(list(sources))
    cut = max(common.rfind("/"), common.rfind("\\"))
    return common[:cut + 1]
