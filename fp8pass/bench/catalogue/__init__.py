"""Every denoiser class the installed diffusers exports, built small enough for a CPU.

Each :class:`~fp8pass.bench.zoo.ZooModel` keeps the real block structure of its published model
(every kind of block, one or two of each, the published flags) at widths of 64-128 (multiples of
16, so that both compute paths really run) and minimal latents, with the inputs the matching
diffusers pipeline passes. ``python -m fp8pass sweep`` runs fp8pass on all of them; the tests run
a subset (tests/test_catalogue.py).

``notes`` keys: ``family``; ``output`` where the prediction is not simply
``model(**inputs, return_dict=False)[0]``; ``graph_break`` where the model itself breaks
``fullgraph=True`` (diffusers' file:line and why). :data:`UNSUPPORTED` names the classes that cannot
run from a config on a CPU here, and why.
"""

from __future__ import annotations

from ..zoo import ZooModel
from . import classes_a_to_l, classes_l_to_z

__all__ = ["CATALOGUE", "UNSUPPORTED", "denoiser_classes"]

_ENTRIES = [*classes_a_to_l.ENTRIES, *classes_l_to_z.ENTRIES]
CATALOGUE: dict[str, ZooModel] = {e.name: e for e in _ENTRIES}
assert len(CATALOGUE) == len(_ENTRIES), "two catalogue entries share a name"
UNSUPPORTED: dict[str, str] = {**classes_a_to_l.UNSUPPORTED, **classes_l_to_z.UNSUPPORTED}

# diffusers exports with "Model" / "Transformer" / "UNet" in their names that are not denoisers
_NOT_DENOISERS = {
    "AutoModel",
    "EMAModel",
    "FromOriginalModelMixin",
    "ModelMixin",
    "NVIDIAModelOptConfig",
    "OnnxRuntimeModel",
    "VQModel",
    "AudioLDM2ProjectionModel",
    "StableAudioProjectionModel",
}


def denoiser_classes() -> list[str]:
    """The denoiser (and ControlNet) classes the installed diffusers exports; the ``Multi*``
    wrappers, which hold other ControlNets, are left out."""
    import diffusers

    names = [n for n in dir(diffusers) if ("Transformer" in n or "UNet" in n or "Model" in n)]
    return sorted(
        n for n in names if not n.endswith("Pipeline") and n not in _NOT_DENOISERS and "Multi" not in n
    )
