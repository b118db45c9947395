"""The scenario layer: declarative rare-event injection with exact ground-truth labels.

``load_scenario`` validates a scenario file, ``inject`` applies its events to a base stream,
``open_scenario`` does both for a file given a base opener, ``INJECTORS`` maps kinds to classes.
"""

from streamsynth.scenarios.engine import inject
from streamsynth.scenarios.injectors import INJECTORS, Context
from streamsynth.scenarios.source import open_scenario
from streamsynth.scenarios.spec import Scenario, load_scenario, parse_scenario

__all__ = ["INJECTORS", "Context", "Scenario", "inject", "load_scenario", "open_scenario", "parse_scenario"]
