"""Models: create one by its registered name, or load a saved one whatever its kind.

The registry (:mod:`streamsynth.models.registry`) maps names to classes, imported only when asked
for, so commands that never touch torch (``inspect``, the baseline) stay fast to start.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from streamsynth.models.base import Synthesizer, read_config
from streamsynth.models.options import check_options
from streamsynth.models.registry import MODELS, model_class


def create(name: str, **options: Any) -> Synthesizer:
    """A new, unfitted synthesizer of kind ``name``; unknown options, or values of the wrong
    type, are a user error naming the valid ones (see :mod:`streamsynth.models.options`)."""
    cls = model_class(name)
    return cls(**check_options(name, options))


def load_model(directory: str | Path) -> Synthesizer:
    """Load any saved model; the kind is read from its ``config.json``."""
    header = read_config(directory)
    cls = model_class(header["model"])
    return cls._from_header(Path(directory), header)


__all__ = ["MODELS", "Synthesizer", "create", "load_model", "model_class"]
