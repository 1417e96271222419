"""Options shared by the commands, one spelling each: ``--dataset/-d`` for what is read,
``--output/-o`` for what is written, ``--start/--end`` for time windows. Old spellings
(``--embeddings``, ``--out``, ``--date-from``, ``--date-to``, ``--index-dir``) stay as hidden
aliases for one release."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from mtquery.errors import UsageError
from mtquery.query.session import Session, open_session

DATASET_HELP = ("File, directory, glob, comma-separated list (URLs too), @list.txt (one path or "
                "URL a line), URL (https://, hf://) or catalog name (demo, siglip, dinov2, "
                "ssl4eo-s2l1c, ssl4eo-s1rtc; $MTQUERY_HF_ENDPOINT reads them from a mirror). "
                "Default: demo.")
DatasetOpt = Annotated[
    str | None,
    typer.Option("--dataset", "-d", help=DATASET_HELP + " ($MTQUERY_DATASET sets the default.)"),
]


def _set_columns(value: str | None) -> str | None:
    """--columns for the rest of the command (mtquery.io.roles.OVERRIDE)."""
    if value is not None:
        from mtquery.io.columns import parse_override
        from mtquery.io.roles import OVERRIDE

        parse_override(value)
        OVERRIDE.set(value)
    return value


ColumnsOpt = Annotated[
    str | None,
    typer.Option("--columns", callback=_set_columns, help="Column roles of a file not written "
                 "to the standard: role=column pairs, roles vector, id, time, geometry, lat, "
                 "lon, crs; e.g. vector=emb,id=chip_id,time=acquired (detected when left "
                 "out; remembered for the same files; '' forgets). See docs/columns.md."),
]
EmbeddingsAlias = Annotated[
    str | None, typer.Option("--embeddings", "-e", hidden=True, help="Old name of --dataset.")
]
FormatOpt = Annotated[
    str, typer.Option("--format", "-f", help="Output format: table | json | csv | parquet | "
                      "geojson (parquet and geojson keep the footprints where there are some).")
]
OutputOpt = Annotated[
    Path | None, typer.Option("--output", "-o", help="Write to FILE (atomically) instead of "
                              "stdout.", dir_okay=False)
]
OutAlias = Annotated[
    Path | None, typer.Option("--out", hidden=True, help="Old name of --output.")
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
    str | None, typer.Option("--start", help="Earliest acquisition (inclusive, UTC), e.g. "
                             "2020-01-01.")
]
EndOpt = Annotated[
    str | None, typer.Option("--end", help="Latest acquisition (inclusive, UTC), e.g. "
                             "2020-12-31.")
]
DateFromAlias = Annotated[
    str | None, typer.Option("--date-from", hidden=True, help="Old name of --start.")
]
DateToAlias = Annotated[
    str | None, typer.Option("--date-to", hidden=True, help="Old name of --end.")
]
CellOpt = Annotated[
    str | None, typer.Option("--cell", help="Only this grid cell, e.g. 451U_946L.")
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")]
DryRunOpt = Annotated[
    bool, typer.Option("--dry-run", help="Print the files, row groups and bytes the command "
                       "would read (from the Parquet footers), and read nothing more.")
]
MaxReadOpt = Annotated[
    str | None, typer.Option("--max-read", help="Remote data: refuse to read more than this, "
                             "a size (500MB, 2GB) or a share of the dataset (25%). Default: "
                             "2GB or 25%, whichever is less ($MTQUERY_MAX_READ).")
]
AllowFullScanOpt = Annotated[
    bool, typer.Option("--allow-full-scan", help="Remote data: read whatever the question "
                       "needs, however much.")
]

#: library argument names -> the flag a CLI user typed (for error messages)
FLAGS = {"k": "--k", "lat": "--lat", "lon": "--lon", "bbox": "--bbox", "start": "--start",
         "end": "--end", "cell": "--cell", "limit": "--limit", "id": "--id", "ids": "--ids",
         "vector": "--vector", "exact": "--exact",
         "query": "--lat/--lon, --id, --vector, --text or --image", "not_ids": "--not-id",
         "text": "--text", "image": "--image", "model": "--model", "weights": "--weights",
         "output": "--output", "dataset": "--dataset", "max_read": "--max-read",
         "allow_full_scan": "--allow-full-scan",
         # score / classify
         "labels": "--labels", "label_column": "--label-column",
         "positive_label": "--positive-label", "positives": "--positive",
         "negatives": "--negative", "background": "--background", "threshold": "--threshold",
         "suggest": "--suggest", "heatmap": "--heatmap", "detections": "--detections",
         "save_model": "--save-model", "resolution": "--resolution"}


def pick(new: object, old: object, new_flag: str, old_flag: str) -> object:
    """The value of an option given under its new or its old (hidden) name, not both."""
    if new is not None and old is not None:
        raise UsageError(f"{old_flag} is the old name of {new_flag}; give only {new_flag}")
    return new if new is not None else old


def show_sql(enabled: bool, sql: str, params: list | None = None) -> None:
    if not enabled:
        return
    text = sql.rstrip().rstrip(";") + ";"
    if params:
        text += f"\n-- parameters: {params!r}"
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


class _NoPandas:
    """An import finder that makes pandas unavailable to this process.

    DuckDB's Python binding imports pandas the first time any parameter is bound (to check
    whether it is a DataFrame): 0.14-0.3 s of a 0.8 s one-shot ``mtquery knn`` (``python -X
    importtime``, benchmarks/cold_start.py). One-shot query commands never hand DuckDB a
    DataFrame, so they run with pandas hidden; MTQUERY_PANDAS=1 keeps it. (numpy.ma, which
    DuckDB imports too, stays: pyarrow needs it to build arrays from numpy.)"""

    HIDDEN = ("pandas",)

    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        if any(name == h or name.startswith(h + ".") for h in self.HIDDEN):
            raise ModuleNotFoundError(f"{name} is hidden from one-shot query commands",
                                      name=name)
        return None


def hide_pandas() -> None:
    import os

    if "pandas" in sys.modules or os.environ.get("MTQUERY_PANDAS"):
        return
    if not any(isinstance(f, _NoPandas) for f in sys.meta_path):
        sys.meta_path.insert(0, _NoPandas())


def session_for(dataset: str | None, all_extensions: bool = False,
                read_only: bool = False, models: bool = False) -> Session:
    """A session for a one-shot query command (pandas hidden, see ``_NoPandas``, unless the
    command runs a model: torch probes for pandas)."""
    from mtquery.query.session import EXTENSIONS

    if not models:
        hide_pandas()
    return open_session(dataset, extensions=EXTENSIONS if all_extensions else None,
                        read_only=read_only)


def cost_first(dataset: str | None, filters: object, kind: str, *, dry_run: bool = False,
               max_read: str | None = None, allow_full_scan: bool = False,
               point: tuple[float, float] | None = None, lookup_id: bool = False,
               fmt: str = "table") -> object:
    """``mtquery.io.cost.plan_first`` for a command: the resolved dataset, or None after
    --dry-run printed the plan (the command then stops). The budget stays set for the
    library's own checks until the command ends (``main`` runs each in its own context)."""
    from mtquery.errors import DataError
    from mtquery.io.cost import ReadRefused, plan_first

    try:
        ds, read = plan_first(dataset, filters, kind, dry_run=dry_run, max_read=max_read,
                              allow_full_scan=allow_full_scan, point=point,
                              lookup_id=lookup_id)
    except ReadRefused as exc:
        raise DataError(exc.explain(cli=True)) from exc
    if dry_run:
        write_plan(read, fmt)
        return None
    return ds


def write_plan(read: object, fmt: str) -> None:
    import json

    from mtquery.cli.output import write_rows

    if fmt == "json":
        sys.stdout.write(json.dumps(read.as_dict(), indent=2) + "\n")
        return
    sys.stdout.write(read.summary() + "\n")
    write_rows(read.table(), "table", None)


def check_output(fmt: str, output: Path | None) -> None:
    from mtquery.cli.output import check_output_args

    check_output_args(fmt, output)


# ---------------------------------------------------------------- what to search with
# (knn, score): one declaration each, so the commands take a query the same way
LatOpt = Annotated[float | None, typer.Option(help="Query by the fragment covering this "
                                              "point (with --lon).")]
LonOpt = Annotated[float | None, typer.Option(help="Longitude of the query point.")]
IdOpt = Annotated[list[str] | None, typer.Option("--id", help="Query by unique_id (or a "
                                                 "unique prefix of 8+ characters); repeat "
                                                 "for several examples (their mean "
                                                 "direction).")]
NotIdOpt = Annotated[list[str] | None, typer.Option("--not-id", help="A negative example "
                                                    "(repeatable): the query moves away "
                                                    "from it (half the weight of the "
                                                    "positives).")]
VectorOpt = Annotated[Path | None, typer.Option(help="Query by a vector in a .npy file.")]
TextOpt = Annotated[str | None, typer.Option(help="Query by a text, embedded with the "
                                             "dataset's model (models with a text tower: "
                                             "siglip).")]
ImageOpt = Annotated[Path | None, typer.Option(help="Query by an image: a GeoTIFF with the "
                                               "model's bands, or PNG/JPEG for RGB models; "
                                               "a square fragment.")]
ModelOpt = Annotated[str | None, typer.Option(help="Model for --text/--image (default: the "
                                              "dataset's, from its manifest or catalog "
                                              "entry).")]
WeightsOpt = Annotated[str | None, typer.Option(help="Weights for --text/--image: a path, or "
                                                "'random' (the untrained architecture).")]
