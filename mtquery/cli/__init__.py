"""The ``mtquery`` command line. Library errors become one stderr line and an exit code here,
and only here: 2 for usage errors, 1 for data errors."""

from __future__ import annotations

import contextvars
import logging
import os
import sys

import typer

from mtquery.errors import MTQueryError

try:  # typer >= 0.2x vendors its own click (and no longer installs click)
    from typer._click import exceptions as _click_exceptions
except ImportError:  # pragma: no cover - older typer runs on click itself
    from click import exceptions as _click_exceptions

_CLICK_ERRORS = (_click_exceptions.ClickException,)
_USAGE_ERRORS = (_click_exceptions.UsageError,)
_ABORTS = (typer.Abort,)
_EXITS = (typer.Exit,)

app = typer.Typer(
    name="mtquery",
    help="Generate, query (DuckDB + spatial) and evaluate Major TOM embeddings.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _register() -> None:
    # One module per command group, each with register(app); heavy imports (torch, sklearn,
    # faiss) stay inside the commands.
    from mtquery.cli import (
        compare,
        convert,
        eval,
        extract,
        find,
        generate_cmd,
        index,
        map,
        optimize,
        query,
        serve,
        stac,
    )

    for module in (query, find, compare, generate_cmd, eval, optimize, extract, convert,
                   index, map, serve, stac):
        module.register(app)


_register()


#: optional dependencies -> the extra that installs them
OPTIONAL_MODULES = {
    "torch": "models", "torchvision": "models", "timm": "models", "open_clip": "models",
    "transformers": "models", "rasterio": "eval",
    "sklearn": "eval", "matplotlib": "eval",
    "faiss": "index",
    "starlette": "web", "uvicorn": "web",
}


class _NoticeHandler(logging.Handler):
    """Library notices (logger ``mtquery``) as one stderr line each."""

    def emit(self, record: logging.LogRecord) -> None:
        sys.stderr.write(f"mtquery: {record.levelname.lower()}: {record.getMessage()}\n")
        sys.stderr.flush()


def _setup_logging() -> None:
    log = logging.getLogger("mtquery")
    if not any(isinstance(h, _NoticeHandler) for h in log.handlers):
        log.addHandler(_NoticeHandler())
    log.setLevel(logging.INFO if os.environ.get("MTQUERY_VERBOSE") else logging.WARNING)
    log.propagate = False


def _message(exc: MTQueryError) -> str:
    """The library's message, pointing at the flag when it names a Python argument."""
    from mtquery.cli.options import FLAGS

    flag = FLAGS.get(exc.argument or "")
    text = str(exc)
    if flag and flag not in text:
        text += f" ({flag})"
    return text


def _fail(message: str, code: int) -> None:
    sys.stderr.write(f"mtquery: error: {message}\n")
    sys.stderr.flush()
    raise SystemExit(code)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app, turn every error into one line on stderr + exit code."""
    _setup_logging()
    if argv is None:  # a process of its own: Ctrl-C ends it within a second
        from mtquery.cli import interrupt

        interrupt.arm()
    try:
        # a context of its own: what a command sets (the read budget) ends with it, also
        # when several commands run in one process
        rv = contextvars.copy_context().run(app, args=argv, standalone_mode=False,
                                            prog_name="mtquery")
    except MTQueryError as exc:
        _fail(_message(exc), exc.exit_code)
    except _ABORTS:
        _fail("aborted", 130)
    except _EXITS as exc:
        raise SystemExit(getattr(exc, "exit_code", 0)) from None
    except _CLICK_ERRORS as exc:
        if not exc.format_message():  # e.g. no arguments: the help was printed
            raise SystemExit(exc.exit_code) from None
        ctx_hint = ""
        if isinstance(exc, _USAGE_ERRORS) and getattr(exc, "ctx", None) is not None:
            ctx_hint = f" (see '{exc.ctx.command_path} --help')"
        _fail(f"{exc.format_message()}{ctx_hint}", exc.exit_code)
    except KeyboardInterrupt:
        from mtquery.cli.interrupt import reported

        reported.set()
        _fail("interrupted", 130)
    except ModuleNotFoundError as exc:
        top = (exc.name or "").split(".")[0]
        extra = OPTIONAL_MODULES.get(top)
        if extra is None or os.environ.get("MTQUERY_DEBUG"):
            raise
        _fail(f"this command needs {top}, which the core install leaves out: "
              f"pip install 'mtquery[{extra}]' (make test installs every extra)", 1)
    except BrokenPipeError:
        raise SystemExit(0) from None
    except OSError as exc:  # disk full, permission denied...: the OS's words, one line
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        _fail(f"{exc.strerror or exc}{where}", 1)
    except Exception as exc:  # the edge: never a traceback unless asked for
        if os.environ.get("MTQUERY_DEBUG"):
            raise
        _fail(f"internal error: {type(exc).__name__}: {exc} (set MTQUERY_DEBUG=1 for a "
              "traceback)", 1)
    if rv == 130:  # typer's answer to Ctrl-C (KeyboardInterrupt)
        from mtquery.cli.interrupt import reported

        reported.set()
        _fail("interrupted", 130)
    if isinstance(rv, int) and rv:
        raise SystemExit(rv)
