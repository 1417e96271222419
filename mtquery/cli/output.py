"""Render result tables as table | json | csv | parquet, to stdout or a file (atomically)."""

from __future__ import annotations

import datetime as dt
import io
import json
import math
import os
import sys
from pathlib import Path
from typing import Literal

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from mtquery.errors import UsageError
from mtquery.fsio import atomic_path, atomic_write_text

Format = Literal["table", "json", "csv", "parquet"]
FORMATS = ("table", "json", "csv", "parquet")


def _jsonable(value: object) -> object:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


def to_records(table: pa.Table) -> list[dict]:
    return [{k: _jsonable(v) for k, v in row.items()} for row in table.to_pylist()]


def to_json(table: pa.Table) -> str:
    return json.dumps(to_records(table), indent=2)


def to_csv(table: pa.Table) -> str:
    buf = io.BytesIO()
    pacsv.write_csv(_flat_for_csv(table), buf)
    return buf.getvalue().decode()


def _flat_for_csv(table: pa.Table) -> pa.Table:
    cols = []
    for col in table.columns:
        t = col.type
        if pa.types.is_list(t) or pa.types.is_fixed_size_list(t) or pa.types.is_struct(t):
            col = pa.array([json.dumps(_jsonable(v)) for v in col.to_pylist()], pa.string())
        elif pa.types.is_binary(t) or pa.types.is_large_binary(t):
            col = pa.array([None if v is None else v.hex() for v in col.to_pylist()], pa.string())
        cols.append(col)
    return pa.Table.from_arrays(cols, names=table.column_names)


def _fmt_cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}" if abs(value) < 1e6 else f"{value:.6e}"
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, (list, tuple)):
        inner = ", ".join(_fmt_cell(v) for v in value[:6])
        return f"[{inner}{', ...' if len(value) > 6 else ''}]"
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    return str(value)


#: In tables (for people), ids are shortened; ``knn --id`` accepts such a prefix.
SHORT_ID = 16


def _pipe_width() -> int:
    """Width of tables written to a pipe or file: $COLUMNS when set, else 200."""
    try:
        return max(40, int(os.environ.get("COLUMNS", "")))
    except ValueError:
        return 200


def print_table(table: pa.Table, title: str | None = None, file=None) -> None:
    from rich.console import Console
    from rich.table import Table

    out = file or sys.stdout
    width = None if (file is None and out.isatty()) else _pipe_width()
    console = Console(file=out, width=width)
    rt = Table(title=title, show_lines=False)
    for name in table.column_names:
        rt.add_column(name, overflow="fold")
    for row in table.to_pylist():
        cells = []
        for key, v in row.items():
            if key == "unique_id" and isinstance(v, str) and len(v) > SHORT_ID:
                v = v[:SHORT_ID] + "…"
            cells.append(_fmt_cell(v))
        rt.add_row(*cells)
    console.print(rt)


def write_rows(table: pa.Table, fmt: str = "table", output: str | Path | None = None,
               title: str | None = None) -> None:
    """Write a result table in ``fmt`` to ``output`` (atomically) or stdout."""
    if fmt not in FORMATS:
        raise UsageError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if fmt == "parquet":
        if output is None:
            raise UsageError("--format parquet needs --output FILE")
        with atomic_path(output) as tmp:
            pq.write_table(table, tmp)
        return
    if fmt == "table":
        if output is None:
            print_table(table, title)
            return
        buf = io.StringIO()
        print_table(table, title, file=buf)
        text = buf.getvalue()
    elif fmt == "json":
        text = to_json(table) + "\n"
    else:
        text = to_csv(table)
    if output is None:
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        atomic_write_text(output, text)


def check_output_args(fmt: str, output: str | Path | None) -> None:
    """Validate --format/--output before any work is done."""
    if fmt not in FORMATS:
        raise UsageError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if fmt == "parquet" and output is None:
        raise UsageError("--format parquet needs --output FILE")
    if output is not None and Path(output).is_dir():
        raise UsageError(f"--output {output} is a directory; give a file name")
