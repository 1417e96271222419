"""The query vector every search takes: its vector and the fragment(s) it came from."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class QueryVector:
    """The query: its vector and, when it came from the dataset, the fragment(s) it came from
    (left out of the answer unless asked for)."""

    vector: np.ndarray  # (dim,) float32
    unique_id: str | None = None
    grid_cell: str | None = None
    timestamp: str | None = None
    centre_lat: float | None = None
    centre_lon: float | None = None
    source_ids: tuple[str, ...] = field(default=())

    @property
    def exclude_ids(self) -> tuple[str, ...]:
        return self.source_ids or ((self.unique_id,) if self.unique_id else ())
