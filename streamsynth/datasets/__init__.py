"""Seeded sample data sets generated on demand (nothing large is committed)."""
