"""The counter-based random numbers of :mod:`streamsynth.rng`, computed in torch on any device.

The same SplitMix64 chain on int64 bit patterns (torch has no uint64 arithmetic), so the
transformer's sampler draws on the GPU exactly the uniforms the numpy module gives; a test holds
the two equal (tests/models/test_transformer.py). Kept apart from ``rng`` so that numpy-only work
never imports torch.
"""

from __future__ import annotations

import torch

_GOLDEN = 0x9E3779B97F4A7C15
_M1 = 0xBF58476D1CE4E5B9
_M2 = 0x94D049BB133111EB
_BELOW_ONE = 1.0 - 2.0**-53  # the largest double under 1


def _signed(x: int) -> int:
    x &= 0xFFFFFFFFFFFFFFFF
    return x - (1 << 64) if x >= 1 << 63 else x


def _srl(x: torch.Tensor, s: int) -> torch.Tensor:
    """Logical right shift of int64 bit patterns."""
    return (x >> s) & ((1 << (64 - s)) - 1)


def _mix(x: torch.Tensor) -> torch.Tensor:
    x = x ^ _srl(x, 30)
    x = x * _signed(_M1)
    x = x ^ _srl(x, 27)
    x = x * _signed(_M2)
    return x ^ _srl(x, 31)


def hash_chain(h: torch.Tensor | int, key: torch.Tensor | int, device: torch.device | None = None) -> torch.Tensor:
    """One step of :func:`streamsynth.rng.hash64`'s chain: ``mix(h ^ (key + golden))``."""
    if not isinstance(h, torch.Tensor):
        h = torch.tensor(_signed(h), dtype=torch.long, device=device)
    if not isinstance(key, torch.Tensor):
        key = torch.tensor(_signed(key), dtype=torch.long, device=h.device)
    return _mix(h ^ (key + _signed(_GOLDEN)))


def seed_hash(seed: int, device: torch.device) -> torch.Tensor:
    return _mix(torch.tensor(_signed(seed + _GOLDEN), dtype=torch.long, device=device))


def to_uniform(h: torch.Tensor) -> torch.Tensor:
    """As :func:`streamsynth.rng.uniform`: in the open interval (0, 1), the top word held below 1."""
    return ((_srl(h, 11).double() + 0.5) / float(2**53)).clamp_(max=_BELOW_ONE)


def torch_uniform(seed: int, *keys: torch.Tensor | int, device: torch.device | None = None) -> torch.Tensor:
    """``streamsynth.rng.uniform(seed, *keys)`` computed in torch (on any device)."""
    device = device or next((k.device for k in keys if isinstance(k, torch.Tensor)), torch.device("cpu"))
    h = seed_hash(seed, device)
    for key in keys:
        h = hash_chain(h, key)
    return to_uniform(h)
