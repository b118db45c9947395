"""Seeded sample data sets generated on demand (nothing large is committed)."""

from streamsynth.datasets.flights import flights
from streamsynth.datasets.payments import payments

__all__ = ["flights", "payments"]
