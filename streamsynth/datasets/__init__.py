"""Seeded sample data sets generated on demand (nothing large is committed)."""

from streamsynth.datasets.payments import payments

__all__ = ["payments"]
