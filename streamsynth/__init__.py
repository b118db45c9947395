"""streamsynth: learn event streams, inject labelled rare events, deliver them in real time.

The package's face: the names a Python user needs, each loaded on first use (PEP 562), so that
``import streamsynth`` and the command line stay fast to start (no polars or torch until asked)::

    import streamsynth as ss
    frame = ss.read("payments.parquet")
    model = ss.create("baseline", seed=1).fit(frame)
    sample = model.sample(n_events=10_000)

A name of the face is never that of a subpackage (``streamsynth.evaluate`` is the package that
holds ``evaluate``): importing the subpackage would put it in the name's place.
"""

from __future__ import annotations

import importlib
from typing import Any

from streamsynth.errors import StreamsynthError

__version__ = "0.1.0"

#: public name -> the module that holds it
_FACE = {
    "read": "streamsynth.io",
    "write": "streamsynth.io",
    "iter_batches": "streamsynth.io",
    "Schema": "streamsynth.schema",
    "StreamRequest": "streamsynth.request",
    "create": "streamsynth.models",
    "load_model": "streamsynth.models",
    "MODELS": "streamsynth.models",
    "open_source": "streamsynth.pipeline",
    "open_scenario_run": "streamsynth.pipeline",
    "load_scenario": "streamsynth.scenarios",
    "write_report": "streamsynth.evaluate",
    "open_sink": "streamsynth.connectors.registry",
    "payments": "streamsynth.datasets",
}

__all__ = ["StreamsynthError", "__version__", *_FACE]


def __getattr__(name: str) -> Any:
    module = _FACE.get(name)
    if module is None:
        raise AttributeError(f"module 'streamsynth' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
