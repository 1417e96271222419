"""Validated filter values (bbox, time window, cell) and the WHERE clause they make.

Each parse error says what was wrong and shows a good value; SQL is built by pure functions
with bound parameters, never pasted values. All times are UTC."""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from mtquery.errors import UsageError

BBOX_EXAMPLE = "-75.8,37.5,-75.4,37.8"
MAX_ROWS = 2**63 - 1


@dataclass(frozen=True)
class BBox:
    min_lon: float
    min_lat: float
    max_lon: float
    max_lat: float

    def as_list(self) -> list[float]:
        return [self.min_lon, self.min_lat, self.max_lon, self.max_lat]


def _finite(value: object, what: str, example: str) -> float:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise UsageError(f"{what} must be a number, e.g. {example} (got {value!r})",
                         what) from None
    if not math.isfinite(number):
        raise UsageError(f"{what} must be a finite number, e.g. {example} (got {value!r})",
                         what)
    return number


def _in_range(value: float | str, what: str, kind: str, bound: float, example: str) -> float:
    number = _finite(value, what, example)
    if not -bound <= number <= bound:
        raise UsageError(f"{what} must be a {kind} within -{bound:g}..{bound:g}, e.g. {example} "
                         f"(got {value})", what)
    return number


def check_lat(value: float | str, what: str = "lat") -> float:
    return _in_range(value, what, "latitude", 90, "40.58")


def check_lon(value: float | str, what: str = "lon") -> float:
    return _in_range(value, what, "longitude", 180, "-111.66")


def parse_bbox(value: str | Sequence[float] | BBox | None) -> BBox | None:
    """``min_lon,min_lat,max_lon,max_lat`` in degrees, as text or a sequence of 4 numbers."""
    if value is None or isinstance(value, BBox):
        return value
    parts = ([p.strip() for p in value.split(",")] if isinstance(value, str)
             else list(value))
    if len(parts) != 4 or not all(str(p) for p in parts):
        raise UsageError(f"bbox must be min_lon,min_lat,max_lon,max_lat, e.g. {BBOX_EXAMPLE} "
                         f"(got {value!r})", "bbox")
    try:
        values = [float(p) for p in parts]
    except (TypeError, ValueError):
        raise UsageError(f"bbox must hold four numbers, e.g. {BBOX_EXAMPLE} "
                         f"(got {value!r})", "bbox") from None
    if not all(math.isfinite(v) for v in values):
        raise UsageError(f"bbox must hold finite numbers, e.g. {BBOX_EXAMPLE} (got {value!r})",
                         "bbox")
    b = BBox(*values)
    for lon in (b.min_lon, b.max_lon):
        if not -180 <= lon <= 180:
            raise UsageError(f"bbox longitude {lon} is outside -180..180, e.g. {BBOX_EXAMPLE}",
                             "bbox")
    for lat in (b.min_lat, b.max_lat):
        if not -90 <= lat <= 90:
            raise UsageError(f"bbox latitude {lat} is outside -90..90, e.g. {BBOX_EXAMPLE}",
                             "bbox")
    if b.min_lon > b.max_lon or b.min_lat > b.max_lat:
        raise UsageError(f"bbox minimum exceeds maximum (got {value!r}); order is "
                         f"min_lon,min_lat,max_lon,max_lat, e.g. {BBOX_EXAMPLE}", "bbox")
    return b


_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_S2_STYLE = re.compile(r"^\d{8}T\d{6}$")


def parse_time(value: str | dt.datetime | dt.date, what: str = "date"
               ) -> tuple[dt.datetime, bool]:
    """``YYYY-MM-DD``, ISO 8601 date-time (an offset is applied, none means UTC) or S2 style
    ``20200717T105031``, or a datetime / date. Returns (naive UTC datetime, date_only)."""
    if isinstance(value, dt.datetime):
        v = value
        date_only = False
    elif isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day), True
    else:
        s = str(value).strip()
        date_only = bool(_DATE_ONLY.match(s))
        try:
            if _S2_STYLE.match(s):
                v = dt.datetime.strptime(s, "%Y%m%dT%H%M%S")
            else:
                v = dt.datetime.fromisoformat(s.replace("Z", "+00:00"))
        except ValueError:
            raise UsageError(f"{what} must be a date like 2020-07-17 or 2020-07-17T10:50:31 "
                             f"(got {value!r})", what) from None
    if v.tzinfo is not None:
        v = v.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return v, date_only


@dataclass(frozen=True)
class TimeRange:
    """``start <= t`` and ``t < end`` (``end`` exclusive: a date-only end covers its whole day),
    naive datetimes in UTC."""

    start: dt.datetime | None = None
    end: dt.datetime | None = None


def parse_time_range(start: str | dt.date | None, end: str | dt.date | None) -> TimeRange:
    """The window [start, end], both inclusive (a date-only end covers its day)."""
    s = parse_time(start, "start")[0] if start not in (None, "") else None
    e = None
    if end not in (None, ""):
        e_val, date_only = parse_time(end, "end")
        try:
            e = e_val + (dt.timedelta(days=1) if date_only else dt.timedelta(microseconds=1))
        except OverflowError:
            e = dt.datetime.max  # the last representable instant: nothing lies beyond it
    if s is not None and e is not None and s >= e:
        raise UsageError(f"start {start} is after end {end}", "start")
    return TimeRange(s, e)


def check_k(k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, int) or k <= 0:
        raise UsageError(f"k must be a positive number of neighbours, e.g. 10 (got {k})", "k")
    return k


def check_limit(limit: int | None) -> int | None:
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)
                              or not 0 < limit <= MAX_ROWS):
        raise UsageError(f"limit must be a positive number of rows up to {MAX_ROWS}, e.g. 100"
                         f" (got {limit})", "limit")
    return limit


@dataclass(frozen=True)
class Filters:
    """Candidate filters: the geometry intersects ``bbox``, the acquisition lies in ``time``,
    the fragment is in ``cell``. Empty filters select everything."""

    bbox: BBox | None = None
    time: TimeRange = field(default_factory=TimeRange)
    cell: str | None = None

    def __post_init__(self) -> None:
        if self.cell is not None:
            from mtquery.standard.grid import parse_cells

            parse_cells([self.cell])  # raises UsageError on a malformed name

    @classmethod
    def of(cls, bbox: str | Sequence[float] | BBox | None = None,
           start: str | dt.date | None = None, end: str | dt.date | None = None,
           cell: str | None = None) -> Filters:
        """Filters from user values, each validated."""
        return cls(bbox=parse_bbox(bbox), time=parse_time_range(start, end), cell=cell)

    @property
    def empty(self) -> bool:
        return (self.bbox is None and self.time.start is None and self.time.end is None
                and self.cell is None)


# ---------------------------------------------------------------- pruning through the grid
#: how far (km) any point of a fragment may lie from its centre: a fragment is a pixel window
#: of a Core image (10.68 km a side, docs/standard.md "Core windows"), so at most half the
#: image's diagonal (7.6 km), with room for reprojection. Range predicates on centre_lat /
#: centre_lon widened by it select a superset of the rows ST_Intersects keeps, and let the
#: Parquet reader skip files and row groups by their statistics (files without a bbox
#: covering column, as released).
FRAGMENT_REACH_KM = 10.0
KM_PER_DEG_LAT = 110.574
KM_PER_DEG_LON_EQUATOR = 111.320


@dataclass(frozen=True)
class CentreWindow:
    """Ranges a fragment's centre must lie in to reach a box (``lon`` None: no limit, near a
    pole or the antimeridian)."""

    lat: tuple[float, float]
    lon: tuple[float, float] | None


def centre_window(b: BBox, reach_km: float = FRAGMENT_REACH_KM) -> CentreWindow:
    """The centre ranges of every fragment (reaching at most ``reach_km`` from its centre)
    that may intersect ``b``."""
    dlat = reach_km / KM_PER_DEG_LAT
    lat = (b.min_lat - dlat, b.max_lat + dlat)
    widest = max(abs(lat[0]), abs(lat[1]))
    if widest >= 89.0:
        return CentreWindow(lat, None)
    dlon = reach_km / (KM_PER_DEG_LON_EQUATOR * math.cos(math.radians(widest)))
    lon = (b.min_lon - dlon, b.max_lon + dlon)
    if lon[0] < -180 or lon[1] > 180:  # a fragment may cross the antimeridian
        return CentreWindow(lat, None)
    return CentreWindow(lat, lon)


def point_window(lat: float, lon: float) -> CentreWindow:
    return centre_window(BBox(lon, lat, lon, lat))


def timestamp_window(time: TimeRange) -> tuple[str | None, str | None]:
    """Bounds ``lo <= timestamp < hi`` on the ``timestamp`` text that every row whose
    acquisition lies in ``time`` satisfies: S2-style ``%Y%m%dT%H%M%S`` strings sort as time,
    and ISO strings (``YYYY-MM-DD...``, any offset) are kept by a margin of a day or two, so
    the bounds are the looser of the two spellings. None: no bound."""
    lo = hi = None
    day = dt.timedelta(days=1)
    if time.start is not None and time.start.year >= 1001:
        s = time.start.replace(microsecond=0)
        lo = min(s.strftime("%Y%m%dT%H%M%S"), (s - day).strftime("%Y-%m-%d"))
    if time.end is not None and time.end.year <= 9997:
        e = time.end
        if e.microsecond:
            e = e.replace(microsecond=0) + dt.timedelta(seconds=1)
        hi = max(e.strftime("%Y%m%dT%H%M%S"), (time.end + 2 * day).strftime("%Y-%m-%d"))
    return lo, hi


def prune_windows(filters: Filters, reach_km: float | None = FRAGMENT_REACH_KM
                  ) -> tuple[CentreWindow | None, tuple[str | None, str | None]]:
    """(centre window, timestamp bounds) implied by the filters: by the bbox (footprints
    reaching ``reach_km`` from their centre; None: unknown, no window), or the grid cell's
    bounds (a cell holds its fragments' centres)."""
    window = (centre_window(filters.bbox, reach_km)
              if filters.bbox is not None and reach_km is not None else None)
    if filters.cell is not None:
        from mtquery.standard.grid import cell_bounds

        c = cell_bounds([filters.cell])[0]
        cw = centre_window(BBox(float(c[0]), float(c[1]), float(c[2]), float(c[3])))
        window = cw if window is None else CentreWindow(
            (max(window.lat[0], cw.lat[0]), min(window.lat[1], cw.lat[1])),
            window.lon if cw.lon is None else cw.lon if window.lon is None else
            (max(window.lon[0], cw.lon[0]), min(window.lon[1], cw.lon[1])))
    return window, timestamp_window(filters.time)


def prune_sql(filters: Filters, reach_km: float | None = FRAGMENT_REACH_KM
              ) -> tuple[list[str], list]:
    """Range predicates on ``centre_lat`` / ``centre_lon`` / ``timestamp`` implied by the
    filters (supersets of what they keep, see ``FRAGMENT_REACH_KM``, ``timestamp_window``)."""
    clauses: list[str] = []
    params: list = []
    window, (lo, hi) = prune_windows(filters, reach_km)
    if window is not None:
        clauses.append("centre_lat BETWEEN ? AND ?")
        params += list(window.lat)
        if window.lon is not None:
            clauses.append("centre_lon BETWEEN ? AND ?")
            params += list(window.lon)
    if lo is not None:
        clauses.append('"timestamp" >= ?')
        params.append(lo)
    if hi is not None:
        clauses.append('"timestamp" < ?')
        params.append(hi)
    return clauses, params


def where_sql(filters: Filters, has_bbox_column: bool = False,
              reach_km: float | None = FRAGMENT_REACH_KM) -> tuple[str, list]:
    """``WHERE`` clause (or ``""``) and its parameters. Range predicates on the centre and the
    timestamp text come first (``prune_sql``: the reader skips row groups by statistics);
    with a bbox covering column, the cheap struct comparison prunes too; then the exact
    ST_Intersects and acquisition window."""
    clauses, params = prune_sql(filters, reach_km)
    b = filters.bbox
    if b is not None:
        if has_bbox_column:
            clauses.append("bbox.xmin <= ? AND bbox.xmax >= ? AND bbox.ymin <= ? AND "
                           "bbox.ymax >= ?")
            params += [b.max_lon, b.min_lon, b.max_lat, b.min_lat]
        clauses.append("ST_Intersects(geometry, ST_MakeEnvelope(?, ?, ?, ?))")
        params += [b.min_lon, b.min_lat, b.max_lon, b.max_lat]
    if filters.time.start is not None:
        clauses.append("acquired_at >= ?")
        params.append(filters.time.start)
    if filters.time.end is not None:
        clauses.append("acquired_at < ?")
        params.append(filters.time.end)
    if filters.cell is not None:
        clauses.append("grid_cell = ?")
        params.append(filters.cell)
    if not clauses:
        return "", []
    return "WHERE " + "\n  AND ".join(clauses), params
