"""The built-in scenario library: ready-made scenario files (see ``streamsynth scenario list``)."""
