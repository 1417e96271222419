"""``mtquery stac``: a STAC Collection + one Item per data file, for catalogues."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from mtquery.cli.options import ColumnsOpt, DatasetOpt, pick
from mtquery.errors import UsageError


def register(app: typer.Typer) -> None:
    app.command("stac")(stac)


def stac(
    dataset_arg: Annotated[str | None, typer.Argument(metavar="DATASET", help="Dataset to "
                                                      "describe (files, folder, list, URL, "
                                                      "catalog name).")] = None,
    dataset: DatasetOpt = None,
    columns: ColumnsOpt = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Folder for "
                                                "collection.json and items/ (new or "
                                                "empty).", file_okay=False)] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace the folder when it is not "
                                        "empty.")] = False,
    license: Annotated[str, typer.Option("--license", help="The Collection's license "
                                         "(SPDX id, or 'other').")] = "other",
    collection_id: Annotated[str | None, typer.Option("--id", help="Collection id "
                                                      "(default: from the dataset's name)."
                                                      )] = None,
    base_url: Annotated[str | None, typer.Option("--base-url", help="Where the folder will "
                                                 "be published: adds absolute 'self' "
                                                 "links.")] = None,
) -> None:
    """Write a STAC Collection (collection.json) and one Item per data file (items/NAME.json)
    with the embedding metadata (draft STAC embeddings extension): each file's bbox,
    footprint, time range and an asset pointing at it (relative path, or its URL). The folder
    appears at once."""
    from mtquery.io.stac import stac as write_stac

    source = pick(dataset_arg, dataset, "DATASET", "--dataset")
    if output is None:
        raise UsageError("give --output DIR: the folder for collection.json and items/")
    items = write_stac(source, output, force=force, license=license,
                       collection_id=collection_id, base_url=base_url)
    rows = sum(items.column("rows").to_pylist())
    sys.stdout.write(f"{output}/collection.json: {items.num_rows} item(s) under "
                     f"{output}/items/, {rows:,} rows\n")
