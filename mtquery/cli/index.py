"""``mtquery index build`` / ``index info``: the approximate kNN index of a dataset.
Heavy imports (faiss) stay inside the commands."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from mtquery.cli.options import ColumnsOpt, QuietOpt, pick
from mtquery.errors import UsageError

index_app = typer.Typer(name="index", help="Approximate nearest-neighbour index of a dataset "
                        "(used by 'mtquery knn' when present).", no_args_is_help=True)

IndexDirAlias = Annotated[Path | None, typer.Option("--index-dir", hidden=True,
                                                    file_okay=False,
                                                    help="Old name of --output.")]


def register(app: typer.Typer) -> None:
    app.add_typer(index_app, name="index")


@index_app.command("build")
def build(
    dataset_arg: Annotated[str | None, typer.Argument(metavar="[DATASET]", help="Local "
                                                      "dataset: file, directory or glob.")
                           ] = None,
    dataset: Annotated[str | None, typer.Option("--dataset", "-d", help="Local dataset: "
                                                "file, directory or glob.")] = None,
    columns: ColumnsOpt = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Where to write the "
                                                "index (default: beside the data).",
                                                file_okay=False)] = None,
    index_dir: IndexDirAlias = None,
    kind: Annotated[str, typer.Option(help="Index kind: ivf-rabitq (RaBitQ codes of the full "
                                      "vectors + exact rerank) or ivf-sq8 (PCA + 8-bit codes,"
                                      " mtquery 0.1).")] = "ivf-rabitq",
    bits: Annotated[int, typer.Option(help="ivf-rabitq: bits per dimension (1-9; 1 builds "
                                      "~7x faster than 2, reranks deeper).")] = 1,
    target_recall: Annotated[float, typer.Option(help="recall@10 the calibration aims for."
                                                 )] = 0.95,
    latency_budget: Annotated[float, typer.Option(help="Fall back to the exact scan when "
                                                  "the index at the target recall is slower "
                                                  "than this fraction of it.")] = 0.5,
    nlist: Annotated[int | None, typer.Option(help="IVF lists (default ~sqrt(rows)).")] = None,
    pca_dim: Annotated[int | None, typer.Option(help="Code dimension (default dim/2).")
                       ] = None,
    nprobe: Annotated[int | None, typer.Option(help="Lists probed (default: calibrated for "
                                               "recall@10 >= 0.97).")] = None,
    rerank: Annotated[int | None, typer.Option(help="Candidates rescored exactly at k=10 "
                                               "(default: calibrated).")] = None,
    sidecar: Annotated[str, typer.Option(help="Stored vectors: float32 (exact), float16, or "
                                         "auto (float16 above 4 GiB of float32).")] = "auto",
    threads: Annotated[int | None, typer.Option(help="Build threads.")] = None,
    per_file: Annotated[bool, typer.Option("--per-file", help="One index per file, beside "
                                           "each (<file>.mtindex): resumable file by file, "
                                           "searched shard by shard and merged.")] = False,
    exact_cache: Annotated[bool, typer.Option("--exact-cache/--no-exact-cache", hidden=True,
                                              help="No effect: the exact scan now reads the "
                                              "index's own vector store.")] = True,
    engine: Annotated[str, typer.Option(help="--per-file: build the shards here (local) or as "
                                        "Ray tasks (ray).")] = "local",
    address: Annotated[str | None, typer.Option(help="--engine ray: the cluster ('auto', "
                                                "'ray://HOST:PORT' or 'HOST:PORT'; default: "
                                                "a local Ray).")] = None,
    chunk_rows: Annotated[int, typer.Option("--chunk-rows", hidden=True, help="Rows of a "
                                            "resumable chunk.")] = 65_536,
    quiet: QuietOpt = False,
) -> None:
    """Build (or rebuild) the approximate kNN index of a local dataset. Its vector store also
    serves exact scans ('mtquery knn --exact')."""
    from mtquery.cli.progress import progress_bar
    from mtquery.vectors.build import BuildParams, build_index

    ds = pick(dataset_arg, dataset, "DATASET", "--dataset")
    if ds is None:
        raise UsageError("give the dataset to index: mtquery index build DATASET")
    out = pick(output, index_dir, "--output", "--index-dir")
    params = BuildParams(kind=kind, nlist=nlist, pca_dim=pca_dim, rerank=rerank,
                         nprobe=nprobe, bits=bits, target_recall=target_recall,
                         latency_budget=latency_budget, sidecar=sidecar, threads=threads,
                         chunk_rows=chunk_rows)
    if engine != "local" and not per_file:
        raise UsageError("--engine ray builds per-file shards: add --per-file", "engine")
    if per_file:
        from dataclasses import asdict

        from mtquery.vectors.shards import build_per_file

        if out is not None:
            raise UsageError("--per-file writes each index beside its file; leave out --output")
        with progress_bar(quiet) as on_progress:
            paths = build_per_file(ds, progress=on_progress, engine=engine, address=address,
                                   **asdict(params))
        sys.stdout.write("".join(f"{p}\n" for p in paths))
        return
    with progress_bar(quiet) as on_progress:
        path = build_index(ds, out, params, progress=on_progress)
    sys.stdout.write(f"{path}\n")


@index_app.command("update")
def update(
    dataset_arg: Annotated[str | None, typer.Argument(metavar="[DATASET]", help="Local "
                                                      "dataset whose index to update.")
                           ] = None,
    dataset: Annotated[str | None, typer.Option("--dataset", "-d", help="Local dataset "
                                                "whose index to update.")] = None,
    index: Annotated[Path | None, typer.Option("--index", help="Index directory (default: "
                                               "beside the data).", file_okay=False)] = None,
    quiet: QuietOpt = False,
) -> None:
    """Add the dataset's new files to its index and drop the removed ones, without a
    rebuild (recalibrated; a rebuild is suggested in one line when the lists drift)."""
    from mtquery.cli.progress import progress_bar
    from mtquery.vectors.update import update_index

    ds = pick(dataset_arg, dataset, "DATASET", "--dataset")
    if ds is None:
        raise UsageError("give the dataset whose index to update: mtquery index update DATASET")
    with progress_bar(quiet) as on_progress:
        summary = update_index(ds, index, progress=on_progress)
    sys.stdout.write(json.dumps(summary, indent=2) + "\n")


@index_app.command("info")
def info(
    dataset_arg: Annotated[str | None, typer.Argument(metavar="[DATASET]", help="Dataset "
                                                      "whose index to show (checks it is "
                                                      "fresh).")] = None,
    dataset: Annotated[str | None, typer.Option("--dataset", "-d", help="Dataset whose index "
                                                "to show.")] = None,
    index: Annotated[Path | None, typer.Option("--index", help="Index directory.",
                                               file_okay=False)] = None,
    index_dir: IndexDirAlias = None,
) -> None:
    """Show an index's parameters, sizes and calibration; with DATASET, check it is fresh."""
    from mtquery.io.datasets import resolve
    from mtquery.vectors.index import default_index_dir, index_info, load_index

    ds_spec = pick(dataset_arg, dataset, "DATASET", "--dataset")
    path = pick(index, index_dir, "--index", "--index-dir")
    if ds_spec is None and path is None:
        raise UsageError("give a DATASET or --index")
    ds = resolve(ds_spec) if ds_spec is not None else None
    path = path or default_index_dir(ds)
    data = index_info(path)
    if ds is not None:
        load_index(path, ds)  # raises a DataError when stale / mismatched / truncated
        data["status"] = "fresh"
    sys.stdout.write(json.dumps(data, indent=2) + "\n")


@index_app.command("verify")
def verify(
    dataset_arg: Annotated[str | None, typer.Argument(metavar="[DATASET]", help="Dataset "
                                                      "whose index to check.")] = None,
    dataset: Annotated[str | None, typer.Option("--dataset", "-d", help="Dataset whose index "
                                                "to check.")] = None,
    index: Annotated[Path | None, typer.Option("--index", help="Index directory.",
                                               file_okay=False)] = None,
) -> None:
    """Check every file of an index (manifest, codes, vectors, rows, invalid mask) against
    the checksums written at build; a damaged file is named, exit 1."""
    from mtquery.io.datasets import resolve
    from mtquery.vectors.index import default_index_dir
    from mtquery.vectors.integrity import verify_index

    ds_spec = pick(dataset_arg, dataset, "DATASET", "--dataset")
    if ds_spec is None and index is None:
        raise UsageError("give a DATASET or --index")
    path = index or default_index_dir(resolve(ds_spec))
    result = verify_index(path)
    sys.stdout.write(f"ok: {result['files']} files, {result['bytes']:,} bytes match their "
                     f"checksums ({result['path']})\n")
