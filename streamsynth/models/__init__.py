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
    """A new, unfitted synthesizer of kind ``name``; unknown options are a user error."""
    import inspect

    cls = model_class(name)
    accepted = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    unknown = sorted(set(options) - set(accepted))
    if unknown and not any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in inspect.signature(cls.__init__).parameters.values()
    ):
        raise StreamsynthError(
            f"the {name} model has no option {unknown[0]!r}",
            hint=f"options of {name}: {', '.join(accepted) or 'none'}",
        )
    return cls(**options)


def load_model(directory: str | Path) -> Synthesizer:
    """Load any saved model; the kind is read from its ``config.json``."""
    header = read_config(directory)
    cls = model_class(header["model"])
    return cls._from_header(Path(directory), header)


__all__ = ["MODELS", "Synthesizer", "create", "load_model", "model_class"]
