"""Run the ``mtquery`` command line in-process: (exit code, stdout, stderr)."""

from __future__ import annotations

from mtquery.cli import main


def run(capsys, *args) -> tuple[int, str, str]:
    code = 0
    try:
        main([str(a) for a in args])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err
