"""Run the examples of the README and the docs pages, the same way for pasting and for checking.

An example is a ```console block (``$ command`` lines, each followed by its output) or a
```pycon block (``>>>`` statements, each followed by what the interpreter prints). A block
may carry a marker on the line before it:

    <!-- example: check -->            run, and the tests compare the output (the default)
    <!-- example: slow -->             the same, on a document whose test is marked slow
    <!-- example: no-check REASON -->  run and pasted, not compared (REASON says why)
    <!-- example: static REASON -->    neither run nor compared (e.g. needs a cluster)

The blocks of one document run in order in one sandbox: a fresh temporary folder holding
links to the repository's ``tests/``, ``benchmarks/`` and ``mtquery/`` folders (so the
examples name files relatively, as from the repository root, and whatever they write lands in
the sandbox, never in the repository), with its own vector cache and no other ``MTQUERY_*``
variable of the caller's environment. ``docs/update_readme.py`` pastes the output;
``tests/test_readme.py`` compares it, volatile numbers (durations, rates) masked.
"""

from __future__ import annotations

import contextlib
import doctest
import io
import math
import os
import re
import subprocess
import sys
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINKED = ("tests", "benchmarks", "mtquery")
MODES = ("check", "slow", "no-check", "static")
BLOCK = re.compile(
    r"(?:<!-- example: (?P<mode>[a-z-]+)(?P<why>[^>]*?)\s*-->\n)?"
    r"```(?P<lang>console|pycon)\n(?P<body>.*?)```", re.S)
VOLATILE = [
    (re.compile(r"\b\d+(?:\.\d+)? ?(?:[kMG]B|rows|points)/s\b"), "<rate>"),
    (re.compile(r"\b\d+(?:\.\d+)? ?(?:ms|s|min)\b"), "<time>"),
    (re.compile(r"\bETA [0-9:]+"), "ETA <time>"),
]


@dataclass
class Block:
    lang: str
    body: str
    mode: str
    start: int
    end: int
    line: int


def blocks(text: str) -> list[Block]:
    """The example blocks of a markdown text, in order."""
    out = []
    for m in BLOCK.finditer(text):
        mode = m.group("mode") or "check"
        if mode not in MODES:
            raise ValueError(f"unknown example mode {mode!r} (one of {', '.join(MODES)})")
        out.append(Block(m.group("lang"), m.group("body"), mode, m.start("body"), m.end("body"),
                         text.count("\n", 0, m.start()) + 1))
    return out


def documents() -> list[Path]:
    """README.md and every docs page that holds an example block."""
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    return [p for p in pages if blocks(p.read_text())]


NUMBER = re.compile(r"-?\d+\.\d+(?:[eE][-+]?\d+)?")


def same(expected: str, actual: str, rel: float = 1e-6) -> bool:
    """Equal outputs, volatile numbers masked and decimals equal to ``rel`` (the last digits
    of a float sum depend on how DuckDB and BLAS split the work)."""
    expected, actual = normalise(expected), normalise(actual)
    if NUMBER.split(expected) != NUMBER.split(actual):
        return False
    return all(math.isclose(float(a), float(b), rel_tol=rel, abs_tol=1e-12)
               for a, b in zip(NUMBER.findall(expected), NUMBER.findall(actual)))


def normalise(text: str) -> str:
    """Output with the numbers that change from run to run masked, trailing blanks cut."""
    for pattern, repl in VOLATILE:
        text = pattern.sub(repl, text)
    return "\n".join(line.rstrip() for line in text.strip("\n").splitlines())


class Sandbox:
    """A working folder for one document's examples (see the module docstring)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        for name in LINKED:
            link = self.workdir / name
            if not link.exists():
                link.symlink_to(ROOT / name, target_is_directory=True)
        self.cache = self.workdir / ".cache"
        env = {k: v for k, v in os.environ.items() if not k.startswith("MTQUERY_")}
        bin_dir = str(Path(sys.executable).parent)
        env.update(COLUMNS="110", MTQUERY_CACHE=str(self.cache), TZ="UTC", PYTHONUNBUFFERED="1",
                   PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}")
        env.pop("FORCE_COLOR", None)
        self.env = env
        self.namespace: dict = {"__name__": "__doc_example__"}

    def neutral(self, text: str) -> str:
        """No machine paths in pasted output: the sandbox and the checkout are '.'."""
        for base in (str(self.workdir.resolve()), str(self.workdir), str(ROOT)):
            text = text.replace(base + os.sep, "").replace(base, ".")
        return text.replace(str(Path.home()), "~")

    def run(self, block: Block) -> str:
        """The block's body with fresh output under each command or statement."""
        if block.mode == "static":
            return block.body
        if block.lang == "console":
            return self._console(block.body)
        return self._pycon(block.body)

    def _console(self, body: str) -> str:
        out = []
        for line in body.splitlines():
            if not line.startswith("$ "):
                continue
            proc = subprocess.run(line[2:], shell=True, cwd=self.workdir, env=self.env,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                  timeout=600)
            text = self.neutral(proc.stdout.rstrip())
            out.append(line)
            if text:
                out.append(text)
            if proc.returncode:
                out.append(f"(exit code {proc.returncode})")
        return "\n".join(out) + "\n"

    def _pycon(self, body: str) -> str:
        out = []
        with self._inside():
            for ex in doctest.DocTestParser().get_examples(body):
                lines = ex.source.rstrip("\n").splitlines()
                out.append(">>> " + lines[0])
                out.extend("... " + ln for ln in lines[1:])
                printed = self.neutral(self._exec(ex.source).rstrip("\n"))
                out.extend(ln if ln.strip() else "<BLANKLINE>" for ln in printed.splitlines())
        return "\n".join(out) + "\n"

    def _exec(self, source: str) -> str:
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            try:
                exec(compile(source, "<example>", "single"), self.namespace)
            except Exception as exc:
                last = traceback.format_exception_only(type(exc), exc)[-1].rstrip()
                print(f"Traceback (most recent call last):\n  ...\n{last}")
        return buf.getvalue()

    @contextlib.contextmanager
    def _inside(self) -> Iterator[None]:
        """Python examples run in this process, in the sandbox, with its cache."""
        old_cwd, old_env = os.getcwd(), dict(os.environ)
        os.chdir(self.workdir)
        for key in [k for k in os.environ if k.startswith("MTQUERY_")]:
            del os.environ[key]
        os.environ["MTQUERY_CACHE"] = str(self.cache)
        try:
            yield
        finally:
            os.chdir(old_cwd)
            os.environ.clear()
            os.environ.update(old_env)


def refresh(text: str, sandbox: Sandbox, log=None) -> str:
    """The document with every runnable block's output replaced by a fresh run."""
    parts, pos = [], 0
    for block in blocks(text):
        parts.append(text[pos:block.start])
        parts.append(sandbox.run(block))
        pos = block.end
        if log:
            log(f"line {block.line}: {block.lang} block ({block.mode})")
    parts.append(text[pos:])
    return "".join(parts)
