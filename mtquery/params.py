"""Validated parameter types. Each error says what was wrong and shows a good value."""

from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass

from mtquery.errors import UsageError

BBOX_EXAMPLE = "-75.8,37.5,-75.4,37.8"


@dataclass(frozen=True)
class BBox:
    min_lon: float
    min_lat: float
    max_lon: float
    max_lat: float

    def as_list(self) -> list[float]:
        return [self.min_lon, self.min_lat, self.max_lon, self.max_lat]


def _finite(text: str, what: str, example: str) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise UsageError(f"{what} must be a number, e.g. {example} (got {text!r})") from None
    if not math.isfinite(value):
        raise UsageError(f"{what} must be a finite number, e.g. {example} (got {text!r})")
    return value


def check_lat(value: float | str) -> float:
    lat = _finite(str(value), "latitude", "40.58")
    if not -90 <= lat <= 90:
        raise UsageError(f"latitude must be within -90..90, e.g. 40.58 (got {value})")
    return lat


def check_lon(value: float | str) -> float:
    lon = _finite(str(value), "longitude", "-111.66")
    if not -180 <= lon <= 180:
        raise UsageError(f"longitude must be within -180..180, e.g. -111.66 (got {value})")
    return lon


def parse_bbox(text: str | BBox | None) -> BBox | None:
    """``min_lon,min_lat,max_lon,max_lat`` in degrees."""
    if text is None or isinstance(text, BBox):
        return text
    parts = [p.strip() for p in str(text).split(",")]
    if len(parts) != 4 or not all(parts):
        raise UsageError(f"bbox must be min_lon,min_lat,max_lon,max_lat, e.g. {BBOX_EXAMPLE} "
                         f"(got {text!r})")
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise UsageError(f"bbox must hold four numbers, e.g. {BBOX_EXAMPLE} "
                         f"(got {text!r})") from None
    if not all(math.isfinite(v) for v in values):
        raise UsageError(f"bbox must hold finite numbers, e.g. {BBOX_EXAMPLE} (got {text!r})")
    b = BBox(*values)
    for lon in (b.min_lon, b.max_lon):
        if not -180 <= lon <= 180:
            raise UsageError(f"bbox longitude {lon} is outside -180..180, e.g. {BBOX_EXAMPLE}")
    for lat in (b.min_lat, b.max_lat):
        if not -90 <= lat <= 90:
            raise UsageError(f"bbox latitude {lat} is outside -90..90, e.g. {BBOX_EXAMPLE}")
    if b.min_lon > b.max_lon or b.min_lat > b.max_lat:
        raise UsageError(f"bbox minimum exceeds maximum (got {text!r}); order is "
                         f"min_lon,min_lat,max_lon,max_lat, e.g. {BBOX_EXAMPLE}")
    return b


_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_S2_STYLE = re.compile(r"^\d{8}T\d{6}$")


def parse_time(text: str, what: str = "date") -> tuple[dt.datetime, bool]:
    """Parse ``YYYY-MM-DD``, ISO 8601 date-time or S2 style ``20200717T105031``.

    Returns (naive UTC datetime, date_only)."""
    s = str(text).strip()
    try:
        if _DATE_ONLY.match(s):
            return dt.datetime.fromisoformat(s), True
        if _S2_STYLE.match(s):
            return dt.datetime.strptime(s, "%Y%m%dT%H%M%S"), False
        value = dt.datetime.fromisoformat(s.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"{what} must be a date like 2020-07-17 or 2020-07-17T10:50:31 "
                         f"(got {text!r})") from None
    if value.tzinfo is not None:
        value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return value, False


@dataclass(frozen=True)
class TimeRange:
    """``start <= t`` and ``t < end`` (``end`` exclusive: a date-only end covers its whole day)."""

    start: dt.datetime | None = None
    end: dt.datetime | None = None


def parse_time_range(start: str | None, end: str | None) -> TimeRange:
    s = parse_time(start, "--start")[0] if start else None
    e = None
    if end:
        e_val, date_only = parse_time(end, "--end")
        e = e_val + (dt.timedelta(days=1) if date_only else dt.timedelta(microseconds=1))
    if s is not None and e is not None and s >= e:
        raise UsageError(f"--start {start} is after --end {end}")
    return TimeRange(s, e)


def check_k(k: int) -> int:
    if k <= 0:
        raise UsageError(f"k must be a positive number of neighbours, e.g. 10 (got {k})")
    return k


def check_limit(limit: int | None) -> int | None:
    if limit is not None and limit <= 0:
        raise UsageError(f"--limit must be positive, e.g. 100 (got {limit})")
    return limit
