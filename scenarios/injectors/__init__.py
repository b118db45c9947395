"""The injector registry: a scenario event's ``kind`` -> the class that carries it out.

A new injector is one module plus one line here.
"""

from __future__ import annotations

from scenarios.injectors.account_takeover import AccountTakeover
from scenarios.injectors.base import Context, Injector
from scenarios.injectors.card_testing import CardTesting
from scenarios.injectors.compromised_merchant import CompromisedMerchant
from scenarios.injectors.drift import Drift
from scenarios.injectors.dropout import Dropout
from scenarios.injectors.duplicate_events import DuplicateEvents
from scenarios.injectors.error_spike import ErrorSpike
from scenarios.injectors.latency_spike import LatencySpike
from scenarios.injectors.mule_fan_in import MuleFanIn
from scenarios.injectors.mule_fan_out import MuleFanOut
from scenarios.injectors.out_of_order import OutOfOrder
from scenarios.injectors.traffic_surge import TrafficSurge
from scenarios.injectors.velocity_burst import VelocityBurst

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
