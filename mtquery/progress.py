"""How the library reports progress: one callback protocol, no rendering.

Long operations (generate, validate, optimize, index build, eval) accept ``progress``, a
callable that receives :class:`ProgressEvent` objects. The library never draws a bar; the
command line (``mtquery.cli.progress``) turns events into a rich bar with rates and ETA, and a
notebook may pass ``print`` or a tqdm adapter. ``None`` means no reporting.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ProgressEvent:
    """``advance`` more ``unit`` of ``task`` are done (``total`` in all, when known).

    ``counters`` carries secondary counts that advanced with it, e.g. ``{"fragments": 25}``
    while the task counts samples; a renderer may show their rates too. ``advance=0`` with a
    new ``total`` announces a task before work starts; ``message`` is a one-line status."""

    task: str
    advance: int = 0
    total: int | None = None
    unit: str = "items"
    counters: dict[str, int] = field(default_factory=dict)
    message: str | None = None


ProgressCallback = Callable[[ProgressEvent], None]


def emit(progress: ProgressCallback | None, task: str, advance: int = 0, *,
         total: int | None = None, unit: str = "items", message: str | None = None,
         **counters: int) -> None:
    """Send one event to ``progress`` when there is a receiver."""
    if progress is not None:
        progress(ProgressEvent(task=task, advance=advance, total=total, unit=unit,
                               counters=dict(counters), message=message))
