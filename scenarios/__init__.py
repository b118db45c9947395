"""The scenario layer: declarative rare-event injection with exact ground-truth labels."""
