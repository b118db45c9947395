"""The model registry: name -> synthesizer class, imported only when asked for.

Registering a model is one line in ``MODELS`` ("module:Class"); lazy import keeps commands
that never touch torch (``inspect``, the baseline) fast to start.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from streamsynth.errors import StreamsynthError
from streamsynth.models.base import Synthesizer, read_config

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


def create(name: str, **options: Any) -> Synthesizer:
    """A new, unfitted synthesizer of kind ``name``; unknown options, or values of the wrong
    type, are a user error naming the valid ones (see :mod:`streamsynth.models.options`)."""
    from streamsynth.models.options import check_options

    cls = model_class(name)
    return cls(**check_options(name, options))


def load_model(directory: str | Path) -> Synthesizer:
    """Load any saved model; the kind is read from its ``config.json``."""
    header = read_config(directory)
    cls = model_class(header["model"])
    return cls._from_header(Path(directory), header)


__all__ = ["MODELS", "Synthesizer", "create", "load_model", "model_class"]
