"""``python -m streamsynth`` runs the command line (also what torchrun launches)."""

from streamsynth.cli import run

run()
