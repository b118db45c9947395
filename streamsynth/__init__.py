"""streamsynth: learn event streams, inject labelled rare events, deliver them in real time."""

from streamsynth.errors import StreamsynthError

__version__ = "0.1.0"

__all__ = ["StreamsynthError", "__version__"]
