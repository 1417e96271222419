"""``mtquery eval ...``: linear probe, retrieval, report, benchmark adapters, label derivation.

Options follow the rest of the CLI: ``--dataset/-d`` reads, ``--output/-o`` writes, ``--start`` /
``--end`` bound acquisition dates. The spellings of the previous release (``--embeddings/-e``,
``--out``, ``--out-dir``, ``--date-from``, ``--date-to``) still work, hidden, for one release;
giving an option and its old spelling together is a usage error.

Heavy imports (scikit-learn, matplotlib, torch, faiss) happen inside the commands."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

import mtquery.cli.options as options
from mtquery.cli.options import (
    DateFromAlias,
    DateToAlias,
    EmbeddingsAlias,
    EndOpt,
    OutAlias,
    StartOpt,
    pick,
)
from mtquery.errors import MTQueryError, UsageError

eval_app = typer.Typer(
    name="eval",
    help="Evaluate embeddings: linear probe, k-NN, retrieval, reports.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

#: library arguments of eval -> the options that set them, named in error messages
FLAGS = {
    "labels": "--labels", "label_col": "--label-col", "join": "--join",
    "multi_label": "--multi-label", "window_days": "--window-days",
    "max_per_class": "--max-per-class", "min_class_count": "--min-class-count",
    "seeds": "--seeds", "split": "--split", "train_fraction": "--train-fraction",
    "h3_res": "--h3-res", "buffer_rings": "--buffer-rings", "ks": "--k",
    "n_queries": "--queries", "ann": "--ann", "rule": "--rule", "sources": "--source",
    **options.FLAGS,
}

_JOIN = typer.Option("unique_id", "--join", help="How labels meet fragments: unique_id, "
                     "grid_cell or spatial (points/polygons).")
_LABEL_COL = typer.Option(None, "--label-col", help="Label column (default: label/labels/"
                          "class, or the only non-key column).")
_MULTI = typer.Option("auto", "--multi-label", help="auto (list column or several labels per "
                      "fragment), yes, or no (keep the dominant label).")
_WINDOW = typer.Option(None, "--window-days", help="grid_cell join: keep fragments acquired "
                       "within N days of the label's 'date' column.")
_CAP = typer.Option(None, "--max-per-class", help="Balanced sampling: at most N fragments per "
                    "class (seeded).")
_ONE = typer.Option(False, "--one-per-cell-date", help="Keep one fragment per grid cell and "
                    "acquisition date (fragments overlap by 10 %).")
_MINC = typer.Option(2, "--min-class-count", help="Drop classes with fewer samples.")
ResultsOpt = Annotated[
    Path | None, typer.Option("--output", "-o", help="Write the results JSON here "
                              "(atomically); default: print it.", dir_okay=False)
]


def _required(value, flag: str, what: str):
    if value is None:
        raise UsageError(f"missing option {flag}: {what}")
    return value


def _path(value: Path | str | None) -> str | None:
    return None if value is None else str(value)


@contextmanager
def _cli_names() -> Iterator[None]:
    """Library errors name arguments (``seeds``); add the option that sets it (``--seeds``)."""
    try:
        yield
    except MTQueryError as exc:
        flag = FLAGS.get(exc.argument or "")
        if flag is None or flag in str(exc):
            raise
        raise type(exc)(f"{exc} ({flag})") from exc


def _summary_line(doc: dict) -> str:
    task = doc["task"]
    return (f"{doc['kind']}: {task['n_samples']} fragments, {len(task['classes'])} classes, "
            f"{'multi' if task['multi_label'] else 'single'}-label, dim {task['dim']}")


def _print_doc(doc: dict, output: str | None) -> None:
    from mtquery.eval import report, results

    if output is None:
        sys.stdout.write(results.dumps(doc))
        return
    sys.stdout.write(_summary_line(doc) + "\n")
    sys.stdout.write(report.markdown_table([doc]) + "\n")
    sys.stdout.write(f"wrote {output}\n")


@eval_app.command("linear-probe")
def linear_probe_cmd(
    dataset: options.DatasetOpt = None,
    labels: str = typer.Option(..., "--labels", "-l", help="Label table: CSV, Parquet, "
                               "GeoParquet (or GeoJSON/GPKG for --join spatial)."),
    label_col: str | None = _LABEL_COL,
    join: str = _JOIN,
    split: str = typer.Option("random", "--split", help="random, spatial (H3 cells never on "
                              "both sides) or both (with the gap)."),
    seeds: str = typer.Option("0,1,2", "--seeds", help="Comma-separated seeds."),
    train_fraction: float = typer.Option(0.8, "--train-fraction"),
    h3_res: int | None = typer.Option(None, "--h3-res", help="H3 resolution of the spatial "
                                         "split (default: from the data's spacing)."),
    buffer_rings: int = typer.Option(0, "--buffer-rings", help="Spatial split: drop training "
                                     "fragments within N H3 rings of a test cell."),
    multi_label: str = _MULTI,
    window_days: int | None = _WINDOW,
    start: StartOpt = None,
    end: EndOpt = None,
    max_per_class: int | None = _CAP,
    one_per_cell_date: bool = _ONE,
    min_class_count: int = _MINC,
    no_knn: bool = typer.Option(False, "--no-knn", help="Skip the k-NN classifier."),
    max_iter: int = typer.Option(1000, "--max-iter", help="Logistic regression iterations."),
    c: float = typer.Option(1.0, "--C", help="Inverse L2 regularisation strength."),
    output: ResultsOpt = None,
    old_dataset: EmbeddingsAlias = None,
    old_start: DateFromAlias = None,
    old_end: DateToAlias = None,
    old_out: OutAlias = None,
) -> None:
    """Linear probe (standardised features, logistic regression) and k-NN (k=1,5,20) over
    seeded random and/or spatial splits; mean ± std over seeds."""
    from mtquery.eval import runner

    with _cli_names():
        output = _path(pick(output, old_out, "--output", "--out"))
        doc = runner.linear_probe(
            pick(dataset, old_dataset, "--dataset", "--embeddings"), labels,
            label_col=label_col, join=join, split=split, seeds=seeds,
            train_fraction=train_fraction, h3_res=h3_res, buffer_rings=buffer_rings,
            multi_label=multi_label, window_days=window_days,
            start=pick(start, old_start, "--start", "--date-from"),
            end=pick(end, old_end, "--end", "--date-to"), max_per_class=max_per_class,
            one_per_cell=one_per_cell_date, min_class_count=min_class_count, knn=not no_knn,
            max_iter=max_iter, C=c, output=output)
    _print_doc(doc, output)


@eval_app.command("retrieval")
def retrieval_cmd(
    dataset: options.DatasetOpt = None,
    labels: str = typer.Option(..., "--labels", "-l", help="Label table (see linear-probe)."),
    label_col: str | None = _LABEL_COL,
    join: str = _JOIN,
    k: str = typer.Option("1,5,10,50", "--k", help="Cut-offs, comma-separated."),
    queries: int = typer.Option(1000, "--queries", help="Number of seeded query fragments."),
    seed: int = typer.Option(0, "--seed"),
    multi_label: str = _MULTI,
    window_days: int | None = _WINDOW,
    start: StartOpt = None,
    end: EndOpt = None,
    max_per_class: int | None = _CAP,
    one_per_cell_date: bool = _ONE,
    min_class_count: int = _MINC,
    exclude_same_cell: bool = typer.Option(False, "--exclude-same-cell", help="Do not count "
                                           "fragments of the query's own grid cell."),
    ann: str | None = typer.Option(None, "--ann", help="Compare with an ANN index: 'index' "
                                      "(the dataset's own, from 'mtquery index build'), "
                                      "'hnsw' (faiss, built here) or a faiss index file."),
    output: ResultsOpt = None,
    old_dataset: EmbeddingsAlias = None,
    old_start: DateFromAlias = None,
    old_end: DateToAlias = None,
    old_out: OutAlias = None,
) -> None:
    """Retrieval: precision@k, recall@k, mAP@k, nDCG@k (same-label relevance, exact cosine);
    with --ann, ANN recall against exact and latency side by side."""
    from mtquery.eval import runner

    with _cli_names():
        output = _path(pick(output, old_out, "--output", "--out"))
        doc = runner.retrieval(
            pick(dataset, old_dataset, "--dataset", "--embeddings"), labels,
            label_col=label_col, join=join, ks=k, n_queries=queries, seed=seed,
            multi_label=multi_label, window_days=window_days,
            start=pick(start, old_start, "--start", "--date-from"),
            end=pick(end, old_end, "--end", "--date-to"), max_per_class=max_per_class,
            one_per_cell=one_per_cell_date, min_class_count=min_class_count,
            exclude_same_cell=exclude_same_cell, ann=ann, output=output)
    _print_doc(doc, output)


@eval_app.command("report")
def report_cmd(
    results_files: list[str] = typer.Argument(..., help="Results JSON files (globs allowed)."),
    output: str | None = typer.Option(None, "--output", "-o", help="Folder for report.md, "
                                      "report.html and the PNG plots. Default: eval-report."),
    no_plots: bool = typer.Option(False, "--no-plots", help="Tables only."),
    old_out_dir: str | None = typer.Option(None, "--out-dir", hidden=True),
) -> None:
    """Comparison table (markdown + HTML) and PNG plots (per-class scores, PCA->RGB map)."""
    from mtquery.eval import report

    with _cli_names():
        folder = pick(output, old_out_dir, "--output", "--out-dir") or "eval-report"
        written = report.make_report(results_files, folder, plots=not no_plots)
    sys.stdout.write(Path(written["markdown"]).read_text(encoding="utf-8"))
    for kind, path in written.items():
        if kind != "markdown":
            sys.stdout.write(f"wrote {path}\n")
    sys.stdout.write(f"wrote {written['markdown']}\n")


@eval_app.command("embed-benchmark")
def embed_benchmark_cmd(
    kind: str = typer.Argument(..., help="bigearthnet or eurosat"),
    root: str = typer.Argument(..., help="Benchmark folder (BigEarthNet patch folders, or "
                               "EuroSAT class folders of 13-band GeoTIFFs)."),
    model: str = typer.Option("spectral", "--model", "-m", help="Generation model name."),
    output: Path | None = typer.Option(None, "--output", "-o", help="Embedding GeoParquet to "
                                       "write (required).", dir_okay=False),
    labels_out: str = typer.Option(..., "--labels-out", help="Label Parquet to write "
                                   "(unique_id, labels)."),
    weights: str | None = typer.Option(None, "--weights", help="Local weights file."),
    device: str | None = typer.Option(None, "--device"),
    batch_size: int = typer.Option(64, "--batch-size"),
    limit: int | None = typer.Option(None, "--limit", help="Only the first N patches."),
    old_out: OutAlias = None,
) -> None:
    """Embed a labelled patch benchmark with a generation model; write a standard embedding
    GeoParquet and a label file that linear-probe / retrieval take with --join unique_id."""
    from mtquery.eval import adapters

    with _cli_names():
        output = _required(_path(pick(output, old_out, "--output", "--out")), "--output",
                           "the embedding GeoParquet to write")
        info = adapters.embed_benchmark(kind, root, model=model, output=output,
                                        labels_out=labels_out, weights=weights, device=device,
                                        batch_size=batch_size, limit=limit)
    sys.stdout.write(f"{info['patches']} {kind} patches, {len(info['classes'])} classes, "
                     f"model {model} (dim {info['dim']}) -> {output}, {labels_out}\n")


@eval_app.command("derive-labels")
def derive_labels_cmd(
    dataset: options.DatasetOpt = None,
    output: Path | None = typer.Option(None, "--output", "-o", help="Label Parquet to write "
                                       "(required).", dir_okay=False),
    rule: str = typer.Option("auto", "--rule", help="auto, ndwi or scl (see docs/eval.md)."),
    source: list[str] | None = typer.Option(None, "--source", help="Source scene folder "
                                            "(repeatable; default: the demo's real scenes)."),
    old_dataset: EmbeddingsAlias = None,
    old_out: OutAlias = None,
) -> None:
    """Derive land/water-style labels for the bundled real-imagery demo from its source
    pixels by a stated rule (NDWI or the L2A SCL layer)."""
    from mtquery.eval import derive_labels

    with _cli_names():
        output = _required(_path(pick(output, old_out, "--output", "--out")), "--output",
                           "the label Parquet to write")
        info = derive_labels.derive(pick(dataset, old_dataset, "--dataset", "--embeddings"),
                                    output, rule=rule, sources=source or None)
    sys.stdout.write(f"{info['rows']} fragments labelled by rule {info['rule']!r}: "
                     f"{info['counts']} -> {output}\n")


def register(app: typer.Typer) -> None:
    """Add ``mtquery eval ...`` to the app."""
    app.add_typer(eval_app, name="eval")
