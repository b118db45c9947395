"""Differential privacy: DP-SGD training with the entity as the unit of privacy, and its budget.

Models call :class:`PrivateTraining` from their training loop; the spent budget is a
:class:`PrivacyRecord` kept in the model's config and copied into every manifest.
"""

from __future__ import annotations

from streamsynth.privacy.budget import UNIT_ENTITY, Plan, PrivacyBudget, PrivacyRecord, plan
from streamsynth.privacy.dp import PrivateTraining

__all__ = ["UNIT_ENTITY", "Plan", "PrivacyBudget", "PrivacyRecord", "PrivateTraining", "plan"]
