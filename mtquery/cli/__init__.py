"""The ``mtquery`` command line. Library errors become one stderr line and an exit code here,
and only here: 2 for usage errors, 1 for data errors."""

from __future__ import annotations

import os
import sys

import click
import typer

from mtquery.errors import MTQueryError

app = typer.Typer(
    name="mtquery",
    help="Generate, query (DuckDB + spatial) and evaluate Major TOM embeddings.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _register() -> None:
    # Each module adds its commands; heavy imports (torch, sklearn, faiss) stay inside commands.
    from mtquery.cli import eval_cmd, generate_cmd, query_cmds, scale_cmd

    for module in (query_cmds, generate_cmd, eval_cmd, scale_cmd):
        module.register(app)


_register()


def _fail(message: str, code: int) -> None:
    sys.stderr.write(f"mtquery: error: {message}\n")
    sys.stderr.flush()
    raise SystemExit(code)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app, turn every error into one line on stderr + exit code."""
    try:
        rv = app(args=argv, standalone_mode=False, prog_name="mtquery")
    except MTQueryError as exc:
        _fail(str(exc), exc.exit_code)
    except click.exceptions.Abort:
        _fail("aborted", 130)
    except click.ClickException as exc:
        ctx_hint = ""
        if isinstance(exc, click.UsageError) and exc.ctx is not None:
            ctx_hint = f" (see '{exc.ctx.command_path} --help')"
        _fail(f"{exc.format_message()}{ctx_hint}", exc.exit_code)
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    except BrokenPipeError:
        raise SystemExit(0) from None
    except Exception as exc:  # the edge: never a traceback unless asked for
        if os.environ.get("MTQUERY_DEBUG"):
            raise
        _fail(f"internal error: {type(exc).__name__}: {exc} (set MTQUERY_DEBUG=1 for a "
              "traceback)", 1)
    if isinstance(rv, int) and rv:
        raise SystemExit(rv)
