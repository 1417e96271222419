"""Generation of Major TOM embeddings (imported as ``mtquery.generate``)."""

from mtquery.generate.fragment import (
    core_window_origin,
    fragment_footprints,
    fragment_grid,
    fragment_offsets,
)

__all__ = ["core_window_origin", "fragment_footprints", "fragment_grid", "fragment_offsets"]
