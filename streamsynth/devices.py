"""Where torch work runs: the device a user names, checked, or CUDA when present, else the CPU.

One function for the models and the evaluation alike, so a bad ``--device`` is the same clear
error everywhere rather than a torch traceback minutes into a fit.
"""

from __future__ import annotations

import torch

from streamsynth.errors import StreamsynthError


def default_device(device: str | None = None) -> torch.device:
    """``device`` if given (checked: a torch device this machine has), else ``cuda`` when
    present, else CPU."""
    if not device:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise StreamsynthError(
            f"device {device!r} is not a torch device", hint="e.g. cpu, cuda or cuda:1"
        ) from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise StreamsynthError(
            f"device {device!r}: CUDA is not available on this machine",
            hint="use --device cpu, or leave --device out to pick one",
        )
    return dev
