"""The rule-based schema mode as a synthesizer: same sample/stream/save/load as learned models.

Built from a YAML schema (``RuleSynthesizer.from_file``) instead of fitted; saving writes the
spec (as ``schema.yaml`` and inside ``config.json``) so ``load_model`` restores it.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import yaml

from streamsynth.contract import rebatch
from streamsynth.errors import StreamsynthError
from streamsynth.models.base import Synthesizer
from streamsynth.request import StreamRequest
from streamsynth.rules import RuleGenerator, RuleSpec, build_plan, load_spec, parse_spec

SPEC_FILE = "schema.yaml"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class RuleSynthesizer(Synthesizer):
    """Generates from declared rules (entities, fields, arrivals, state machines): no training."""

    name = "rules"

    def __init__(self, seed: int = 0, spec: RuleSpec | None = None, source: str = "schema") -> None:
        super().__init__(seed=seed)
        self.spec: RuleSpec | None = None
        self.source = source
        self._text: str | None = None
        if spec is not None:
            self._use(spec, source)

    @classmethod
    def from_file(cls, path: str | Path, seed: int | None = None) -> RuleSynthesizer:
        """Load and check a schema file (see ``streamsynth schema init``)."""
        spec = load_spec(path)
        model = cls(seed=spec.seed if seed is None else seed, spec=spec, source=str(path))
        model._text = Path(path).read_text()
        return model

    @classmethod
    def from_spec(
        cls, spec: RuleSpec | dict[str, Any], seed: int | None = None, source: str = "schema"
    ) -> RuleSynthesizer:
        """Build from a parsed spec or a plain mapping (as a YAML file would give)."""
        if not isinstance(spec, RuleSpec):
            spec = parse_spec(spec, source=source)
        return cls(seed=spec.seed if seed is None else seed, spec=spec, source=source)

    def _use(self, spec: RuleSpec, source: str) -> None:
        self.plan = build_plan(spec, source)
        self.spec = spec
        self.source = source
        self.schema = self.plan.schema
        self.fitted_start = spec.start
        self.fitted_span = timedelta(hours=spec.duration_hours)
        self.fitted_entities = spec.entity.count
        self.metadata = {"spec": spec.name, "source": source}

    # -- the Synthesizer interface ----------------------------------------------------------------
    def fit(self, frame: pl.DataFrame | None = None, schema: Any = None) -> RuleSynthesizer:
        raise StreamsynthError(
            "the rules model is defined by its schema file and needs no fit",
            hint="sample from the schema directly: `streamsynth sample schema.yaml -n 1000 -o out.parquet`",
        )

    def _fit(self, frame: pl.DataFrame) -> None:  # pragma: no cover - fit() never gets here
        self.fit(frame)

    def _require_fitted(self) -> None:
        if self.spec is None:
            raise StreamsynthError(
                "the rules model has no schema",
                hint="build it with RuleSynthesizer.from_file('schema.yaml')",
            )

    def _stream(self, request: StreamRequest) -> Iterator[pl.DataFrame]:
        start_us = (request.start - _EPOCH) // timedelta(microseconds=1)
        generator = RuleGenerator(self.plan)
        frames = generator.stream(start_us=start_us, n_entities=request.n_entities, seed=request.seed,
                                  shard=request.shard)
        yield from rebatch(frames, request.events_per_batch)

    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray], dict[str, Any]]:
        return {"spec": self.spec.model_dump(mode="json")}, {}, {}

    def _restore(self, config: dict[str, Any], tensors: dict[str, np.ndarray], encoders: dict[str, Any]) -> None:
        self._use(parse_spec(config["spec"], source="saved rules model"), "saved rules model")

    def _write_files(self, folder: Path) -> None:
        """The usual model files plus ``schema.yaml``, the spec as written (comments kept)."""
        super()._write_files(folder)
        text = self._text or yaml.safe_dump(self.spec.model_dump(mode="json"), sort_keys=False)
        (folder / SPEC_FILE).write_text(text)
