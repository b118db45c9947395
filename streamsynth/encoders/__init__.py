"""Per-type column encoders behind one small interface: fit, encode, decode, to_json/from_json.

Models keep one encoder per column; encoders are saved as JSON (never pickled). Registering a
new encoding is one line in ``ENCODERS``.
"""

from __future__ import annotations

from typing import Any

from streamsynth.encoders.base import Encoder
from streamsynth.encoders.categorical import CategoricalEncoder
from streamsynth.encoders.interarrival import InterArrivalEncoder
from streamsynth.encoders.numeric import QuantileEncoder
from streamsynth.errors import StreamsynthError

ENCODERS: dict[str, type[Encoder]] = {
    "categorical": CategoricalEncoder,
    "quantile": QuantileEncoder,
    "interarrival": InterArrivalEncoder,
}


def encoder_from_json(data: dict[str, Any]) -> Encoder:
    """Rebuild any encoder from the dict its ``to_json`` wrote."""
    kind = data.get("type")
    if kind not in ENCODERS:
        raise StreamsynthError(
            f"unknown encoder type {kind!r} in a saved model",
            hint="the model was saved by another version of streamsynth; re-create it",
        )
    return ENCODERS[kind].from_json(data)


__all__ = [
    "ENCODERS",
    "CategoricalEncoder",
    "Encoder",
    "InterArrivalEncoder",
    "QuantileEncoder",
    "encoder_from_json",
]
