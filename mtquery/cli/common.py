"""Options shared by the listing commands, and the helpers that apply them."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from mtquery.engine import Session, open_session
from mtquery.output import FORMATS, check_output_args

DatasetOpt = Annotated[
    str | None,
    typer.Option("--dataset", "-d", envvar="MTQUERY_DATASET", show_envvar=True,
                 help="File, directory, glob, comma-separated list, URL (https://, hf://) or "
                      "catalog name (demo, siglip, dinov2, ssl4eo-s2l1c, ssl4eo-s1rtc). "
                      "Default: demo."),
]
FormatOpt = Annotated[
    str, typer.Option("--format", "-f", help=f"Output format: {' | '.join(FORMATS)}.")
]
OutputOpt = Annotated[
    Path | None, typer.Option("--output", "-o", help="Write to FILE (atomically) instead of "
                              "stdout.", dir_okay=False)
]
ShowSqlOpt = Annotated[
    bool, typer.Option("--show-sql", help="Print the SQL that runs (and its bound parameters) "
                       "to stderr.")
]
BBoxOpt = Annotated[
    str | None, typer.Option("--bbox", help="min_lon,min_lat,max_lon,max_lat, e.g. "
                             "-75.8,37.5,-75.4,37.8")
]
StartOpt = Annotated[
    str | None, typer.Option("--start", help="Earliest acquisition (inclusive), e.g. 2020-01-01.")
]
EndOpt = Annotated[
    str | None, typer.Option("--end", help="Latest acquisition (inclusive), e.g. 2020-12-31.")
]
CellOpt = Annotated[
    str | None, typer.Option("--cell", help="Only this grid cell, e.g. 451U_946L.")
]


def show_sql(enabled: bool, sql: str, params: list | None = None) -> None:
    if not enabled:
        return
    text = sql.rstrip().rstrip(";") + ";"
    if params:
        text += f"\n-- parameters: {params!r}"
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def session_for(dataset: str | None, all_extensions: bool = False) -> Session:
    from mtquery.duck import EXTENSIONS

    return open_session(dataset, extensions=EXTENSIONS if all_extensions else None)


def check_output(fmt: str, output: Path | None) -> None:
    check_output_args(fmt, output)
