"""The CLI reference, generated from the typer app at build time (never pasted).

As an mkdocs hook (``hooks:`` in mkdocs.yml) it adds ``cli.md`` to the site; run as a script
it prints the same markdown:

    .venv/bin/python docs/hooks/cli_reference.py > /tmp/cli.md
"""

from __future__ import annotations

import inspect
import warnings
from typing import Any

import click

PAGE = "cli.md"
HEADER = """# Command-line reference

Generated from the `mtquery` command tree when the site is built (`docs/hooks/cli_reference.py`
walks the Click commands of `mtquery.cli`), so it is always the installed version's. Every
command prints the same with `--help`. Conventions: a dataset is `--dataset/-d` (default
`demo`, or `$MTQUERY_DATASET`), an output `--output/-o`, a time window `--start/--end`
(inclusive UTC dates); errors are one line on stderr with exit code 2 (bad argument) or
1 (data problem). Hidden options (the old spellings kept for one release) are not listed.
"""


def _cell(text: str) -> str:
    """One markdown table cell: one line, no pipes, no raw HTML."""
    text = " ".join(text.split())
    return text.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def _help(text: str | None) -> str:
    lines = [ln for ln in inspect.cleandoc(text or "").splitlines() if ln.strip() != "\b"]
    return "\n".join(lines).replace("<", "&lt;").replace(">", "&gt;").strip()


def _names(param: click.Parameter) -> str:
    if isinstance(param, click.Argument):
        return f"`{param.human_readable_name}`"
    names = ", ".join(f"`{o}`" for o in param.opts)
    if param.secondary_opts:
        names += " / " + ", ".join(f"`{o}`" for o in param.secondary_opts)
    return names


def _type(param: click.Parameter) -> str:
    if isinstance(param, click.Option) and param.is_flag:
        return "flag"
    if isinstance(param.type, click.Choice):
        return " \\| ".join(str(c) for c in param.type.choices)
    name = getattr(param.type, "name", "") or ""
    return {"text": "text", "integer": "int", "float": "float", "path": "path",
            "boolean": "bool"}.get(name, name)


def _default(param: click.Parameter) -> str:
    value: Any = param.default
    if callable(value) or value is None or value is False or value == () or value == []:
        return ""
    if isinstance(param, click.Option) and param.is_flag and value is True:
        return "on"
    return f"`{value}`"


def _param_rows(cmd: click.Command) -> list[str]:
    rows = []
    for param in cmd.params:
        if getattr(param, "hidden", False):
            continue
        required = " (required)" if param.required else ""
        help_text = getattr(param, "help", None) or ""
        rows.append(f"| {_names(param)} | {_type(param)} | {_default(param)} | "
                    f"{_cell(help_text)}{required} |")
    return rows


def _command(cmd: click.Command, path: list[str], out: list[str]) -> None:
    if getattr(cmd, "hidden", False):
        return
    ctx = click.Context(cmd, info_name=path[-1])
    level = "#" * min(len(path), 4)
    out.append(f"{level} {' '.join(path)}\n")
    usage = " ".join(cmd.collect_usage_pieces(ctx))
    out.append(f"```text\n{' '.join(path)} {usage}\n```\n")
    help_text = _help(cmd.help)
    if help_text:
        out.append(help_text + "\n")
    rows = _param_rows(cmd)
    if rows:
        out.append("| option | type | default | description |\n|---|---|---|---|")
        out.extend(rows)
        out.append("")
    if isinstance(cmd, click.Group):
        for name in sorted(cmd.commands):
            _command(cmd.commands[name], [*path, name], out)


def render() -> str:
    """The whole reference as markdown, from the installed ``mtquery.cli`` app."""
    with warnings.catch_warnings():  # typer's imports of click names deprecated in click 8.2+
        warnings.simplefilter("ignore", DeprecationWarning)
        import typer

        from mtquery.cli import app

    root = typer.main.get_command(app)
    out = [HEADER]
    names = sorted(root.commands) if isinstance(root, click.Group) else []
    out.append("Commands: " + ", ".join(f"[`{n}`](#mtquery-{n})" for n in names) + ".\n")
    for name in names:
        _command(root.commands[name], ["mtquery", name], out)
    return "\n".join(out).rstrip() + "\n"


def on_files(files: Any, config: Any) -> Any:
    """mkdocs hook: add the generated page to the site's files."""
    from mkdocs.structure.files import File

    files.append(File.generated(config, PAGE, content=render()))
    return files


if __name__ == "__main__":
    print(render(), end="")
