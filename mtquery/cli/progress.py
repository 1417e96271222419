"""Render the library's progress events as a rich bar on stderr, with rates and ETA."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

from mtquery.progress import ProgressCallback, ProgressEvent


def _noop(_event: ProgressEvent) -> None:
    return None


def _lines(event: ProgressEvent) -> None:
    """Without a terminal: status lines only, no bar."""
    if event.message:
        sys.stderr.write(event.message + "\n")
        sys.stderr.flush()


@contextlib.contextmanager
def progress_bar(quiet: bool = False) -> Iterator[ProgressCallback]:
    """Yield a ProgressCallback drawing one bar per task (rate of each unit and counter, ETA);
    ``quiet`` gives a callback that does nothing, a non-terminal stderr one that writes the
    status lines only."""
    if quiet or not sys.stderr.isatty():
        yield _noop if quiet else _lines
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = [TextColumn("[progress.description]{task.description}"), BarColumn(),
               MofNCompleteColumn(), TaskProgressColumn(),
               TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TimeRemainingColumn()]
    from rich.console import Console

    with Progress(*columns, transient=False, console=Console(stderr=True)) as prog:
        tasks: dict[str, int] = {}
        counts: dict[str, dict[str, int]] = {}

        def on_event(ev: ProgressEvent) -> None:
            if ev.task not in tasks:
                tasks[ev.task] = prog.add_task(ev.task, total=ev.total, rate="")
                counts[ev.task] = {}
            tid = tasks[ev.task]
            if ev.total is not None:
                prog.update(tid, total=ev.total)
            if ev.advance:
                prog.advance(tid, ev.advance)
            for name, n in ev.counters.items():
                counts[ev.task][name] = counts[ev.task].get(name, 0) + n
            task = prog.tasks[tid]
            elapsed = task.elapsed or 0.0
            parts = []
            if task.speed:
                parts.append(f"{task.speed:,.1f} {ev.unit}/s")
            if elapsed > 0:
                parts += [f"{c / elapsed:,.1f} {name}/s" for name, c in counts[ev.task].items()]
            prog.update(tid, rate=", ".join(parts))
            if ev.message:
                prog.console.print(ev.message)

        yield on_event
