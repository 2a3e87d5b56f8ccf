"""Named architectures as ordinary layer-string lists: each seed's model (seeds) and conv1d/2d/3d (nd).

A preset is a function (input_shape, cond_width, out, **preset_args) -> dict(encoder, decoder, heads?),
registered in `vaelab.core.vocab.PRESETS`: `out` is the decoder outputs per data value the likelihood needs
(the decoder ends at out * channels); its keyword arguments are the preset's `model.preset_args`.
"""
from vaelab.core.vocab import PRESETS
from vaelab.model.presets import nd, seeds  # noqa: F401  (register the presets)
from vaelab.model.presets.seeds import resolve_preset

__all__ = ["PRESETS", "resolve_preset"]
