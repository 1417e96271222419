"""Cost first: what a question would read, estimated from the Parquet footers, and the guard
that stops a remote command before it reads too much.

``plan`` keeps the row groups whose statistics may hold an answer (the same ranges the SQL
carries, ``filters.prune_windows``) and counts the bytes of the column chunks the question
reads. ``guard`` refuses a remote read above the budget: by default more than 2 GB or more
than 25 % of the dataset (``read_budget(max_read=...)``, ``$MTQUERY_MAX_READ``, the CLI's
``--max-read``), unless ``allow_full_scan``.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import pyarrow as pa

from mtquery.errors import DataError, UsageError
from mtquery.io.datasets import Dataset, resolve
from mtquery.io.remote import Footer, RowGroup, expand, read_footers
from mtquery.query.filters import CentreWindow, Filters, point_window, prune_windows

DEFAULT_MAX_BYTES = 2_000_000_000
DEFAULT_MAX_SHARE = 0.25
ENV_MAX_READ = "MTQUERY_MAX_READ"
_SEARCH = ("unique_id", "timestamp", "product_id", "grid_cell", "centre_lat", "centre_lon",
           "geometry", "bbox")
#: top-level columns each kind of read touches (None: every column)
KIND_COLUMNS: dict[str, tuple[str, ...] | None] = {
    "search": _SEARCH, "knn": (*_SEARCH, "embedding"), "extract": None, "id": ("unique_id",),
}


def may_match(g: RowGroup, window: CentreWindow | None, ts: tuple[str | None, str | None],
              cell: str | None = None) -> bool:
    """Whether a row group's statistics allow a row in the window (no statistics: yes)."""
    def outside(col: str, lo: object, hi: object) -> bool:
        st = g.stats.get(col)
        if st is None:
            return False
        try:
            return (lo is not None and st[1] < lo) or (hi is not None and st[0] > hi)
        except TypeError:
            return False

    if window is not None:
        if outside("centre_lat", *window.lat):
            return False
        if window.lon is not None and outside("centre_lon", *window.lon):
            return False
    lo, hi = ts
    if lo is not None and outside("timestamp", lo, None):
        return False
    st = g.stats.get("timestamp")
    if hi is not None and st is not None and isinstance(st[0], str) and st[0] >= hi:
        return False
    return not (cell is not None and outside("grid_cell", cell, cell))


@dataclass(frozen=True)
class FilePlan:
    footer: Footer
    groups: tuple[int, ...]
    bytes: int
    rows: int


@dataclass(frozen=True)
class ReadPlan:
    """The row groups a question reads, and the dataset's totals."""

    what: str
    files: tuple[FilePlan, ...]
    total_bytes: int
    total_rows: int
    total_files: int
    total_groups: int

    @property
    def bytes(self) -> int:
        return sum(f.bytes for f in self.files)

    @property
    def rows(self) -> int:
        return sum(f.rows for f in self.files)

    @property
    def row_groups(self) -> int:
        return sum(len(f.groups) for f in self.files)

    @property
    def share(self) -> float:
        return self.bytes / self.total_bytes if self.total_bytes else 0.0

    def summary(self) -> str:
        return (f"{self.what} would read {human(self.bytes)} of {human(self.total_bytes)} "
                f"({100 * self.share:.1f} %): {self.rows:,} rows in {self.row_groups} of "
                f"{self.total_groups} row groups, {len(self.files)} of {self.total_files} "
                "file(s) (estimate from the Parquet footers)")

    def table(self, full_names: bool = False) -> pa.Table:
        return pa.table({
            "file": [f.footer.source if full_names else f.footer.name for f in self.files],
            "row_groups": [",".join(map(str, f.groups)) for f in self.files],
            "rows": pa.array([f.rows for f in self.files], pa.int64()),
            "bytes": pa.array([f.bytes for f in self.files], pa.int64()),
        })

    def as_dict(self) -> dict:
        return {"what": self.what, "bytes": self.bytes, "rows": self.rows,
                "row_groups": self.row_groups, "files": len(self.files),
                "dataset_bytes": self.total_bytes, "dataset_rows": self.total_rows,
                "dataset_row_groups": self.total_groups, "dataset_files": self.total_files,
                "share": round(self.share, 6), "read": self.table(True).to_pylist()}


def human(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def plan(footers: Sequence[Footer], filters: Filters | None = None, kind: str = "knn",
         point: tuple[float, float] | None = None, lookup_id: bool = False,
         what: str | None = None) -> ReadPlan:
    """The row groups and bytes a ``kind`` read (search, knn, extract) over ``filters``
    touches; ``point`` adds the lookup of the fragment at (lat, lon), ``lookup_id`` the scan
    of the unique_id column that finds a fragment by id."""
    if kind not in KIND_COLUMNS:
        raise UsageError(f"kind must be one of {', '.join(KIND_COLUMNS)} (got {kind!r})",
                         "kind")
    filters = filters or Filters()
    window, ts = prune_windows(filters)
    columns = KIND_COLUMNS[kind]
    pw = point_window(*point) if point is not None else None
    files = []
    for f in footers:
        groups, nbytes, rows = [], 0, 0
        for g in f.row_groups:
            scan = may_match(g, window, ts, filters.cell)
            near = pw is not None and may_match(g, pw, (None, None))
            if not (scan or near or lookup_id):
                continue
            b = g.nbytes(columns) if (scan or near) else 0
            if lookup_id and not scan:
                b = max(b, g.nbytes(KIND_COLUMNS["id"]))
            groups.append(g.index)
            nbytes += b
            rows += g.rows if scan else 0
        if groups:
            files.append(FilePlan(f, tuple(groups), nbytes, rows))
    return ReadPlan(what or kind, tuple(files), sum(f.size for f in footers),
                    sum(f.rows for f in footers), len(footers),
                    sum(len(f.row_groups) for f in footers))


def footers_of(dataset: Dataset | str, fresh: bool = False) -> list[Footer] | None:
    """The footers of a dataset's files (None when its sources cannot be read by range)."""
    ds = resolve(dataset)
    files = expand(ds.sources)
    return None if files is None else read_footers(files, fresh=fresh)


# ---------------------------------------------------------------- the budget


@dataclass(frozen=True)
class Budget:
    max_bytes: int | None = DEFAULT_MAX_BYTES
    max_share: float | None = DEFAULT_MAX_SHARE
    allow_full_scan: bool = False

    def limit(self, total: int) -> int | None:
        if self.allow_full_scan:
            return None
        caps = [c for c in (self.max_bytes, None if self.max_share is None else
                            math.floor(self.max_share * total)) if c is not None]
        return min(caps) if caps else None

    def describe(self, total: int) -> str:
        parts = ([human(self.max_bytes)] if self.max_bytes is not None else []) + (
            [f"{100 * self.max_share:g} % of the dataset"] if self.max_share is not None
            else [])
        return "the lesser of " + " and ".join(parts) if len(parts) > 1 else parts[0]


_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(%|(?:[kKmMgGtT]i?)?[bB]?)\s*$")


def parse_max_read(value: str | int | float | None) -> Budget:
    """``2GB``, ``500MB``, ``25%``, a number of bytes, or None (the defaults)."""
    if value is None or value == "":
        return Budget()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return Budget(max_bytes=int(value), max_share=None)
    m = _SIZE.match(str(value))
    if m is None:
        raise UsageError(f"max_read must be a size like 2GB or 500MB, or a share like 25% "
                         f"(got {value!r})", "max_read")
    number, unit = float(m.group(1)), m.group(2).lower()
    if unit == "%":
        return Budget(max_bytes=None, max_share=number / 100)
    base = 1024 if "i" in unit else 1000
    mult = base ** "bkmgt".index(unit[0]) if unit else 1
    return Budget(max_bytes=int(number * mult), max_share=None)


_BUDGET: contextvars.ContextVar[Budget | None] = contextvars.ContextVar("mtquery_budget",
                                                                       default=None)


def current_budget() -> Budget:
    b = _BUDGET.get()
    return b if b is not None else parse_max_read(os.environ.get(ENV_MAX_READ))


@contextlib.contextmanager
def read_budget(max_read: str | int | None = None,
                allow_full_scan: bool = False) -> Iterator[Budget]:
    """Within the block, remote reads are guarded by this budget (see ``parse_max_read``)."""
    base = parse_max_read(max_read) if max_read is not None else current_budget()
    budget = Budget(base.max_bytes, base.max_share, allow_full_scan or base.allow_full_scan)
    token = _BUDGET.set(budget)
    try:
        yield budget
    finally:
        _BUDGET.reset(token)


class ReadRefused(DataError):
    """A read above the budget, refused before it started."""

    def __init__(self, read: ReadPlan, budget: Budget, cli: bool = False) -> None:
        self.plan, self.budget = read, budget
        super().__init__(self.explain(cli), "max_read")

    def explain(self, cli: bool = False) -> str:
        p = self.plan
        head = (f"{p.summary()}; that is above the limit of "
                f"{human(self.budget.limit(p.total_bytes) or 0)} "
                f"({self.budget.describe(p.total_bytes)}), so nothing more was read")
        if cli:
            ways = ("narrow it with --bbox / --start / --end / --cell, copy the region once "
                    "with 'mtquery extract', raise --max-read, or pass --allow-full-scan")
        else:
            ways = ("narrow it with bbox / start / end / cell, copy the region once with "
                    "mtquery.io.extract.extract, or raise the budget: with "
                    "mtquery.io.cost.read_budget(max_read=... or allow_full_scan=True)")
        if p.what.startswith("extract"):
            ways = ways.replace(", copy the region once with 'mtquery extract'", "").replace(
                ", copy the region once with mtquery.io.extract.extract", "")
        return f"{head}. Ways out: {ways}"


def check(read: ReadPlan, budget: Budget | None = None) -> None:
    budget = budget or current_budget()
    limit = budget.limit(read.total_bytes)
    if limit is not None and read.bytes > limit:
        raise ReadRefused(read, budget)


def guard(dataset: Dataset, filters: Filters | None, kind: str,
          point: tuple[float, float] | None = None, lookup_id: bool = False,
          what: str | None = None, budget: Budget | None = None) -> ReadPlan | None:
    """For a remote dataset: the plan of the read, refused (``ReadRefused``) above the
    budget. None for local data and for sources that cannot be read by range."""
    if not dataset.remote:
        return None
    footers = footers_of(dataset)
    if footers is None:
        return None
    read = plan(footers, filters, kind, point, lookup_id, what)
    check(read, budget)
    return read


def footer_dim(dataset: Dataset, vector: str = "embedding") -> int | None:
    """A remote dataset's embedding dimension from its footers (type or value counts), so
    opening it reads no vector; None when the footers cannot tell."""
    from mtquery.io.remote import check_footers

    footers = footers_of(dataset)
    return check_footers(footers, vector) if footers else None


def use_budget(max_read: str | int | None = None, allow_full_scan: bool = False) -> Budget:
    """Set the budget for the rest of this context (a one-shot command's whole run), from
    ``max_read`` or $MTQUERY_MAX_READ, never from an earlier command's."""
    base = parse_max_read(max_read if max_read is not None else os.environ.get(ENV_MAX_READ))
    budget = Budget(base.max_bytes, base.max_share, allow_full_scan or base.allow_full_scan)
    _BUDGET.set(budget)
    return budget


def plan_first(dataset: Dataset | str | None, filters: Filters | None, kind: str, *,
               dry_run: bool = False, max_read: str | int | None = None,
               allow_full_scan: bool = False, point: tuple[float, float] | None = None,
               lookup_id: bool = False) -> tuple[Dataset, ReadPlan | None]:
    """Cost first, for one query: set the read budget, resolve ``dataset`` and, for remote
    data (or ``dry_run``), plan the read from the footers. Returns the dataset and the plan
    (None for local data); above the budget ``ReadRefused`` says what it would read."""
    budget = use_budget(max_read, allow_full_scan)
    ds = resolve(dataset)
    if not (dry_run or ds.remote):
        return ds, None
    footers = footers_of(ds)
    if footers is None:
        if dry_run:
            raise UsageError("a dry run reads footers by range: local files, http(s):// or "
                             "hf:// datasets", "dry_run")
        return ds, None
    read = plan(footers, filters, kind, point=point, lookup_id=lookup_id)
    if not dry_run:
        check(read, budget)
    return ds, read
