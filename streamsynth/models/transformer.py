"""TransformerSynthesizer: the event transformer as a model (fit, sample, save, load).

The network is in ``transformer_network``, the codec between events and token fields in
``transformer_codec``, training in ``transformer_train`` (DP-SGD in ``transformer_dp``), batched
streaming generation in ``transformer_sample``.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

import numpy as np
import polars as pl
import torch

from streamsynth import threads
from streamsynth.encoders.resolution import TimeSnapper
from streamsynth.errors import StreamsynthError
from streamsynth.models.base import Synthesizer
from streamsynth.models.lifecycle import Lifecycles
from streamsynth.models.options import set_options
from streamsynth.models.segments import segment_length, with_segments
from streamsynth.models.transformer_codec import GRID_KEY, EventCodec
from streamsynth.models.transformer_dp import require_entity, train_private
from streamsynth.models.transformer_network import EventTransformer, TransformerConfig
from streamsynth.models.transformer_sample import Sampler, SamplerPlan, SamplingConfig
from streamsynth.models.transformer_sizing import NetworkSize, budget_for, check_preset, network_for
from streamsynth.models.transformer_train import (
    ENTITY_BATCH,
    SEGMENT_BATCH,
    SEGMENT_EPOCH_STEPS,
    Encoded,
    TrainConfig,
    passes_per_epoch,
    train,
)
from streamsynth.privacy import PrivacyBudget
from streamsynth.request import StreamRequest
from streamsynth.rng import uniform


# -- the synthesizer ------------------------------------------------------------------------------
@dataclass
class TransformerOptions:
    """Everything ``fit --option`` sets on the transformer, in three parts; a flat name such as
    ``epochs`` or ``temperature`` sets the field of that name (``device`` sets both)."""

    size: NetworkSize = field(default_factory=NetworkSize)
    train: TrainConfig = field(default_factory=TrainConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    preset: str = "auto"  # what sizes the network and budget left None (transformer_sizing)

    def __post_init__(self) -> None:
        check_preset(self.preset)


class TransformerSynthesizer(Synthesizer):
    """Autoregressive event transformer with conditioning and KV-cache batched generation.

    Built from a :class:`TransformerOptions`, or from its fields by name
    (``TransformerSynthesizer(epochs=3, temperature=0.9)``).

    ``n_kv_head`` (default 1): key/value heads shared by the query heads (grouped-query
    attention). One shared head makes the KV cache ``n_head`` times smaller and each row's cached
    attention a small matmul instead of ``n_head`` matvecs: generation on CPU was ~2x faster at a
    pool of 4096 with the same fidelity (benchmarks/bench_transformer_fidelity.py --kv-heads 1,4).
    ``None``: one per query head (models saved before the option load so).
    """

    name = "transformer"
    finite_weights = True
    supports_conditions = True
    Options = TransformerOptions

    def __init__(self, seed: int = 0, options: TransformerOptions | None = None, **values: Any) -> None:
        super().__init__(seed=seed)
        self.options = set_options(options or TransformerOptions(), values)
        train_config = self.options.train
        if train_config.dp_epsilon is not None:  # check the budget now, before any data is read
            PrivacyBudget(epsilon=train_config.dp_epsilon, delta=train_config.dp_delta)
        self.codec: Any = None
        self.model: EventTransformer | None = None
        self.history: list[dict[str, float]] = []

    @property
    def span_s(self) -> float:
        return max(self.fitted_span.total_seconds() if self.fitted_span else 0.0, 1.0)

    def _fit(self, frame: pl.DataFrame) -> None:
        threads.configure()
        start = self.fitted_start
        private = self.options.train.dp_epsilon is not None
        segmented = self.schema.entity is None
        if private:
            require_entity(self.schema.entity)
        if segmented:  # one stream: learned as consecutive segments (see ``segments``)
            frame = with_segments(frame, segment_length(frame.height))
        self.codec = EventCodec().fit(frame, self.schema, start, self.span_s, segmented=segmented)
        data = self.codec.encode(frame, start, self.span_s)
        lengths = np.diff(data["offsets"])
        encoded = Encoded(data, start.timestamp(), self.span_s)
        # Real entities' shapes would leak past a DP-SGD budget: those fits end sequences by EOS.
        self.codec.lifecycles = None if private else Lifecycles.fit(
            data["times"][data["offsets"][:-1]], data["times"][data["offsets"][1:] - 1], lengths, self.span_s,
            self.seed, tiled=segmented)
        preset = self.options.preset
        given = self.options.train
        self.options = replace(self.options, train=replace(
            given, batch_size=given.batch_size or (SEGMENT_BATCH if segmented else ENTITY_BATCH),
            min_epoch_steps=given.min_epoch_steps or (SEGMENT_EPOCH_STEPS if segmented else 1)))
        passes = passes_per_epoch(len(lengths), self.options.train)
        size = network_for(preset, self.options.size, frame.height)
        block = size.block_size or int(min(512, max(16, np.quantile(lengths, 0.99) + 3)))
        cfg = TransformerConfig(
            event_sizes=self.codec.event_sizes, attr_sizes=self.codec.attr_sizes, block_size=block,
            n_layer=size.n_layer, n_head=size.n_head, n_embd=size.n_embd, n_kv_head=size.n_kv_head,
            plan=self.codec.lifecycles is not None, window_share=not segmented,
            numeric_inputs=[f.index for f in self.codec.scope_fields("event") if f.kind in ("numeric", "gap")],
        )
        sizing = budget_for(preset, (self.options.size, self.options.train), size,
                            parameters=sum(p.numel() for p in EventTransformer(cfg).parameters()),
                            positions=passes * int(np.minimum(lengths + 2, block).sum()), n_events=frame.height,
                            segmented=segmented)
        self.options = replace(self.options, size=size, train=sizing.train)
        if self.options.train.progress:
            print(sizing.describe(), file=sys.stderr, flush=True)
        if private:  # DP-SGD, the entity as the unit of privacy
            self.model, self.history, privacy = train_private(
                cfg, encoded, self.options.train, seed=self.seed, entity_column=self.schema.entity,
            )
            self.metadata["privacy"] = privacy.to_dict()
        else:
            self.model, self.history = train(cfg, encoded, self.options.train, seed=self.seed)
        self.metadata.update(
            parameters=sum(p.numel() for p in self.model.parameters()),
            truncated_entities=int((lengths > block - 1).sum()),
            epochs_run=len(self.history),
            best_val_nll=min((h["val"] for h in self.history if "val" in h), default=None),
            sizing=sizing.describe(),  # what fit chose, said once more in the saved model
        )

    def _stream(self, request: StreamRequest) -> Iterator[pl.DataFrame]:
        start, n_entities, seed, batch_size = request.start, request.n_entities, request.seed, request.events_per_batch
        conditions, shard = request.conditions, request.shard
        threads.configure()
        forced_events, forced_attrs, exact = self.codec.forced(conditions)
        grid = self.codec.time_grid
        max_events = request.n_events
        end_s = (request.end - start).total_seconds() if request.end is not None else None
        if grid is not None:
            # Times snap down by less than the coarsest step; when only a share snap, the first
            # events after snapping need not be the first generated: generate without a count.
            end_s = end_s + grid.steps[0] / 1e6 if end_s is not None else None
            max_events = max_events if grid.always else None
        # A segmented model's entities are streams, each every training segment in turn.
        streams = n_entities if self.codec.segmented else 1
        sequences = n_entities * self.codec.stream_segments if self.codec.segmented else n_entities
        sampler = self.sampler(SamplerPlan(
            start=start, span_s=self.span_s, n_entities=sequences, seed=seed, shard=shard or (0, 1),
            forced_events=forced_events, forced_attrs=forced_attrs, max_events=max_events, end_s=end_s,
        ))
        if grid is None:
            for chunk in sampler.chunks(batch_size):
                yield self.codec.decode(**chunk, seed=seed, exact=exact, streams=streams)
            return
        snapper = TimeSnapper(grid, int(round(start.timestamp() * 1e6)), "time_us", ("entity_no", "seq"))
        for chunk in sampler.chunks(batch_size):
            u = None if grid.always else uniform(seed, chunk["entity_no"], chunk["seq"], GRID_KEY)
            for ready in snapper.push(chunk, u):
                yield self.codec.decode(**ready, seed=seed, exact=exact, streams=streams)
        for ready in snapper.flush():
            yield self.codec.decode(**ready, seed=seed, exact=exact, streams=streams)

    # -- persistence ----------------------------------------------------------------------------
    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray], dict[str, Any]]:
        config = {
            "model": asdict(self.model.cfg),
            "train": asdict(self.options.train),
            "sampling": asdict(self.options.sampling),
            "preset": self.options.preset,
            "history": self.history,
        }
        tensors = {k: v.detach().float().cpu().numpy() for k, v in self.model.state_dict().items()}
        return config, tensors, self.codec.to_json()

    def _restore(self, config: dict[str, Any], tensors: dict[str, np.ndarray], encoders: dict[str, Any]) -> None:
        self.codec = EventCodec.from_json(encoders)
        cfg = TransformerConfig(**config["model"])
        self.options = TransformerOptions(
            size=NetworkSize(**{f.name: getattr(cfg, f.name) for f in fields(NetworkSize)}),
            train=TrainConfig(**config["train"]),
            sampling=SamplingConfig(**config["sampling"]),
            preset=config.get("preset", "auto"),
        )
        self.history = config.get("history", [])
        model = EventTransformer(cfg)
        state = {k: torch.from_numpy(np.array(v)) for k, v in tensors.items()}
        missing = set(model.state_dict()) ^ set(state)
        if missing:
            raise KeyError(f"weights do not match the architecture: {sorted(missing)[:3]}")
        model.load_state_dict(state)
        self.model = model.eval()

    def configure(self, **sampling: Any) -> TransformerSynthesizer:
        """Change sampling options (entity_batch, temperature, top_k, precision, use_cache, device)."""
        known = [f.name for f in fields(SamplingConfig)]
        unknown = set(sampling) - set(known)
        if unknown:
            raise StreamsynthError(f"unknown sampling options {sorted(unknown)}", hint=f"options: {', '.join(known)}")
        self.options.sampling = replace(self.options.sampling, **sampling)
        return self

    def sampler(self, plan: SamplerPlan) -> Sampler:
        """The sampling runtime for ``plan`` with this model's sampling options."""
        return Sampler(self.model, self.codec, plan, self.options.sampling, trained_start=self.fitted_start)
