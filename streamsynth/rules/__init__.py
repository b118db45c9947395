"""Rule-based schema mode: generate event streams from a YAML schema when there is no data yet.

``load_spec`` reads and checks a schema file, ``build_plan`` resolves it, ``RuleGenerator``
makes the stream; :class:`streamsynth.models.rules.RuleSynthesizer` wraps them as a model.
"""

from streamsynth.rules.generator import RuleGenerator
from streamsynth.rules.plan import Plan, build_plan, load_spec
from streamsynth.rules.spec import RuleSpec, parse_spec

EXAMPLES = ("payments", "weblogs", "metrics")

__all__ = ["EXAMPLES", "Plan", "RuleGenerator", "RuleSpec", "build_plan", "load_spec", "parse_spec"]
