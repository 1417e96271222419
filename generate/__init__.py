"""Generation of Major TOM embeddings (imported as ``mtquery.generate``).

Public API: :func:`embed_patches`, :func:`embed_text` (models with a text tower:
:func:`text_models`), :func:`get_model_spec`, :func:`list_models`,
:func:`fragment_offsets` and the pipeline :func:`generate` (lazy; heavy imports happen on use).
A new model family: :class:`Family` + :func:`register_family`, rows via :func:`register_model`.
"""

from mtquery.generate.family import Built, Family, register_family
from mtquery.generate.fragment import (
    core_window_origin,
    fragment_footprints,
    fragment_grid,
    fragment_offsets,
)
from mtquery.generate.models import embed_patches, embed_text, load_model, text_models
from mtquery.generate.registry import (
    REGISTRY,
    ModelSpec,
    get_model_spec,
    list_models,
    register_model,
)

__all__ = ["REGISTRY", "Built", "Family", "ModelSpec", "core_window_origin", "embed_patches",
           "embed_text", "text_models",
           "fragment_footprints", "fragment_grid", "fragment_offsets", "generate",
           "get_model_spec", "list_models", "load_model", "register_family", "register_model"]


def __getattr__(name: str):
    if name == "generate":
        from mtquery.generate.pipeline import generate

        return generate
    raise AttributeError(name)
