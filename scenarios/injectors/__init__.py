"""The injector registry: a scenario event's ``kind`` -> the class that carries it out.

A new injector is one module plus one line here.
"""

from __future__ import annotations

from streamsynth.scenarios.injectors.account_takeover import AccountTakeover
from streamsynth.scenarios.injectors.base import Context, Injector
from streamsynth.scenarios.injectors.card_testing import CardTesting
from streamsynth.scenarios.injectors.compromised_merchant import CompromisedMerchant
from streamsynth.scenarios.injectors.drift import Drift
from streamsynth.scenarios.injectors.dropout import Dropout
from streamsynth.scenarios.injectors.duplicate_events import DuplicateEvents
from streamsynth.scenarios.injectors.error_spike import ErrorSpike
from streamsynth.scenarios.injectors.latency_spike import LatencySpike
from streamsynth.scenarios.injectors.mule_fan_in import MuleFanIn
from streamsynth.scenarios.injectors.mule_fan_out import MuleFanOut
from streamsynth.scenarios.injectors.out_of_order import OutOfOrder
from streamsynth.scenarios.injectors.traffic_surge import TrafficSurge
from streamsynth.scenarios.injectors.velocity_burst import VelocityBurst

INJECTORS: dict[str, type[Injector]] = {
    "card_testing": CardTesting,
    "account_takeover": AccountTakeover,
    "velocity_burst": VelocityBurst,
    "mule_fan_in": MuleFanIn,
    "mule_fan_out": MuleFanOut,
    "compromised_merchant": CompromisedMerchant,
    "error_spike": ErrorSpike,
    "latency_spike": LatencySpike,
    "dropout": Dropout,
    "duplicate_events": DuplicateEvents,
    "out_of_order": OutOfOrder,
    "traffic_surge": TrafficSurge,
    "drift": Drift,
}

__all__ = ["INJECTORS", "Context", "Injector"]
