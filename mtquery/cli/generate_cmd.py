"""``mtquery generate`` and ``mtquery models``. Heavy imports stay inside the commands."""

from __future__ import annotations

import sys

import typer

#: this command's flags for the library arguments the shared table (cli.options.FLAGS) lacks
_FLAGS = {"engine": "--engine", "address": "--address", "workers": "--workers",
          "gpus_per_worker": "--gpus-per-worker", "connect_timeout": "--connect-timeout",
          "batch_size": "--batch-size", "shard_size": "--shard-size", "device": "--device",
          "precision": "--precision"}


def register(app: typer.Typer) -> None:
    """Add this module's commands to the app."""

    @app.command("generate")
    def generate_cmd(
        model: str = typer.Option(..., "--model", "-m", help="registry model (mtquery models)"),
        inputs: list[str] = typer.Option(
            ..., "--input", "-i",
            help="Core parquet file/dir/URL, scene dir, band files or STAC item JSON "
                 "(repeatable)"),
        output: str = typer.Option(..., "--output", "-o", help="output directory"),
        weights: str = typer.Option(
            None, "--weights",
            help="weights file/dir, or 'random' (default: $MTQUERY_WEIGHTS, caches, hub)"),
        batch_size: int = typer.Option(64, "--batch-size", help="fragments per model batch"),
        device: str = typer.Option(None, "--device", help="cpu, cuda, cuda:N, mps (default auto)"),
        limit: int = typer.Option(None, "--limit", help="at most N samples"),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar"),
        preprocessing: str = typer.Option(
            "reference", "--preprocessing",
            help="reference (released-data compatible) or corrected (dinov2 only)"),
        precision: str = typer.Option("fp32", "--precision", help="fp32, fp16 or bf16 (GPU)"),
        product_id: str = typer.Option(None, "--product-id", help="product id of a scene"),
        timestamp: str = typer.Option(None, "--timestamp", help="acquisition time of a scene"),
        shard_size: int = typer.Option(64, "--shard-size", help="samples per output shard"),
        engine: str = typer.Option(
            "local", "--engine", help="local (this process) or ray (a Ray cluster; the "
                                      "'cluster' extra)"),
        address: str = typer.Option(
            None, "--address",
            help="ray: auto, ray://HOST:PORT or HOST:PORT (default: start a local Ray)"),
        workers: int = typer.Option(
            None, "--workers", help="ray: model actors (default: one per GPU, or CPUs - 1)"),
        gpus_per_worker: float = typer.Option(
            None, "--gpus-per-worker",
            help="ray: GPUs per model actor, may be fractional (default: 1 when the cluster "
                 "has GPUs, else 0)"),
        connect_timeout: float = typer.Option(
            30.0, "--connect-timeout", help="ray: seconds to reach --address"),
        thumbnails: bool = typer.Option(
            True, "--thumbnails/--no-thumbnails",
            help="write a small RGB image chip per fragment beside the shards (for the map "
                 "page; S2 true colour, S1 vv/vh)"),
    ) -> None:
        """Embed Major TOM Core samples or Sentinel scenes into standard GeoParquet shards."""
        from mtquery.cli.progress import progress_bar
        from mtquery.errors import MTQueryError
        from mtquery.generate.pipeline import check_failures, generate, summary_line

        try:
            with progress_bar(quiet) as on_progress:
                s = generate(model, inputs, output, weights=weights, batch_size=batch_size,
                             device=device, limit=limit, preprocessing=preprocessing,
                             precision=precision, product_id=product_id, timestamp=timestamp,
                             shard_size=shard_size, progress=on_progress, engine=engine,
                             address=address, workers=workers,
                             gpus_per_worker=gpus_per_worker, connect_timeout=connect_timeout,
                             thumbnails=thumbnails)
        except MTQueryError as exc:
            flag = _FLAGS.get(exc.argument or "")
            if flag and flag not in str(exc):
                raise type(exc)(f"{exc} ({flag})", argument=exc.argument) from None
            raise
        for f in s.failed:
            sys.stderr.write(f"skipped {f['grid_cell']} / {f['product_id']} ({f['source']}): "
                             f"{f['error']}\n")
        sys.stdout.write(summary_line(s) + f"; output {output}\n")
        check_failures(s)

    @app.command("models")
    def models_cmd(
        tiny: bool = typer.Option(False, "--tiny", help="also list the tiny test models"),
    ) -> None:
        """List the embedding models of the registry."""
        from mtquery.generate.registry import list_models

        for m in list_models(include_tiny=tiny):
            sys.stdout.write(f"{m.name:20s} dim {m.dim:5d}  {m.fragment_size} px  "
                             f"bands {','.join(m.bands)}  weights {m.weights_name}"
                             f"{' @ ' + m.weights_revision if m.weights_revision else ''}\n")
