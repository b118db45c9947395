"""The scenario layer: declarative rare-event injection with exact ground-truth labels.

``load_scenario`` validates a scenario file, ``plan_base`` says which base to open,
``open_scenario`` applies its events to the opened base (``inject`` to any stream), ``INJECTORS``
maps kinds to classes. ``streamsynth.pipeline.open_scenario_run`` opens the base and does both.
"""

from streamsynth.scenarios.engine import inject
from streamsynth.scenarios.injectors import INJECTORS, Context
from streamsynth.scenarios.source import open_scenario, plan_base
from streamsynth.scenarios.spec import Scenario, load_scenario, parse_scenario

__all__ = [
    "INJECTORS", "Context", "Scenario", "inject", "load_scenario", "open_scenario", "parse_scenario", "plan_base",
]
