"""Generation of Major TOM embeddings (imported as ``mtquery.generate``).

Public API: :func:`embed_patches`, :func:`get_model_spec`, :func:`list_models`,
:func:`fragment_offsets` and the pipeline :func:`generate` (lazy; heavy imports happen on use).
"""

from mtquery.generate.fragment import (
    core_window_origin,
    fragment_footprints,
    fragment_grid,
    fragment_offsets,
)
from mtquery.generate.models import (
    REGISTRY,
    ModelSpec,
    embed_patches,
    get_model_spec,
    list_models,
)

__all__ = ["REGISTRY", "ModelSpec", "core_window_origin", "embed_patches", "fragment_footprints",
           "fragment_grid", "fragment_offsets", "generate", "get_model_spec", "list_models"]


def __getattr__(name: str):
    if name == "generate":
        from mtquery.generate.pipeline import generate

        return generate
    raise AttributeError(name)
