"""The model registry: name -> synthesizer class, imported only when asked for.

Registering a model is one line in ``MODELS`` ("module:Class"); lazy import keeps commands
that never touch torch (``inspect``, the baseline) fast to start.
"""

from __future__ import annotations

import importlib

from streamsynth.errors import StreamsynthError
from streamsynth.models.base import Synthesizer

MODELS: dict[str, str] = {
    "baseline": "streamsynth.models.baseline:BaselineSynthesizer",
    "transformer": "streamsynth.models.transformer:TransformerSynthesizer",
    "rules": "streamsynth.models.rules:RuleSynthesizer",
    "timegan": "streamsynth.models.timegan:TimeGANSynthesizer",
}


def model_class(name: str) -> type[Synthesizer]:
    """The synthesizer class registered as ``name``."""
    try:
        target = MODELS[name]
    except KeyError:
        raise StreamsynthError(
            f"unknown model {name!r}", hint=f"models are: {', '.join(sorted(MODELS))}"
        ) from None
    module, _, cls = target.partition(":")
    return getattr(importlib.import_module(module), cls)
