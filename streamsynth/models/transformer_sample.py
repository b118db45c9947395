"""Batched, endless, time-ordered generation from the event transformer with a KV cache.

A fixed pool of slots holds the entities being generated; each slot keeps its own cache rows and
position, an entity leaves its slot at end-of-sequence, at its window's end or when the context
is full, and the next entity takes the slot. Every draw is a counter-based uniform of (seed,
entity, position, field), so an entity's events do not depend on the pool size, the shard, or
whether the cache is used; events are released in (time, entity, position) order once no slot
can still produce an earlier one.
"""

from __future__ import annotations

import copy
import math
import platform
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import torch

from streamsynth.devices import default_device
from streamsynth.encoders.interarrival import MIN_GAP_S
from streamsynth.errors import StreamsynthError
from streamsynth.models.arrivals import TorchClock
from streamsynth.models.heap import keep_freed_memory
from streamsynth.models.transformer_codec import OFFSET_CLASSES, UNIFORM_OFFSET_KEY, EventCodec
from streamsynth.models.transformer_network import (
    N_PLAN,
    N_TIME,
    EventTransformer,
    FieldHeads,
    KVCache,
    plan_features,
    time_features,
)
from streamsynth.rng_torch import hash_chain, seed_hash, to_uniform
from streamsynth.threads import threads_for

FLUSH_EVERY = 8  # steps between releases of finished events
# per-slot tensors of the pool; the last four hold each entity's plan (lifecycle): its count, the
# time of its last event, and its first event's exact gap and gap tokens
SLOT_STATE = ("ent", "wstart", "pos", "t", "clock", "last", "attrs", "hbase", "count", "tlast", "gap0", "tok0")
SORT_EVERY = 16  # steps between sorts of the slots by position (costs about one cache copy)

# -- counter-based uniforms in torch, bit-identical to streamsynth.rng.uniform -------------------
def cpu_has_bf16() -> bool:
    """True when this CPU multiplies bf16 matrices natively (avx512_bf16 or AMX tiles); other
    architectures than x86 are not probed (True)."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return True
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # private, hence the fallback
    found = [getattr(torch.cpu, name, None) for name in probes]
    if all(probe is None for probe in found):
        return True  # no way to tell: do not warn
    return any(probe is not None and probe() for probe in found)


# -- sampling ---------------------------------------------------------------------------------------
def pick(logits: torch.Tensor, u: torch.Tensor, temperature: float, top_k: int | None) -> torch.Tensor:
    """Inverse-CDF draw of one class per row with uniforms ``u``."""
    logits = logits.float()
    if temperature != 1.0:
        logits = logits / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    # Unnormalised: the draw is the first class whose running sum reaches u x the total.
    cdf = torch.exp(logits - logits.amax(-1, keepdim=True)).cumsum(-1)
    target = (u[:, None] * cdf[:, -1:]).to(cdf.dtype)
    tok = torch.searchsorted(cdf, target).squeeze(1)
    return tok.clamp_(max=logits.shape[-1] - 1)


def sample_fields(
    heads: FieldHeads, h: torch.Tensor, u: torch.Tensor, forced: torch.Tensor, temperature: float,
    top_k: int | None, fixed: torch.Tensor | None = None, banned: torch.Tensor | None = None,
    never: list[int] | None = None,
) -> torch.Tensor:
    """Draw every sub-field in order, each conditioned on the ones before it; ``forced`` >= 0 wins.

    ``fixed`` (rows, k): per row, the classes of the first k sub-fields where >= 0 (a planned
    first event's gap); ``banned`` (rows, classes of sub-field 0): classes never drawn (the end of
    sequence and gaps past the planned last event, when a plan ends the entity); ``never``: per
    sub-field, a class never drawn (-1: none), as a column's null where training had none.
    """
    z, out = h, []
    n = len(heads.sizes)
    for j in range(n):
        f = int(forced[j])
        if f >= 0:
            tok = torch.full((h.shape[0],), f, dtype=torch.long, device=h.device)
        else:
            logits = heads.logits(j, z)
            if j == 0 and banned is not None:
                logits = logits.masked_fill(banned, float("-inf"))
            if never is not None and never[j] >= 0:
                logits[:, never[j]] = float("-inf")
            tok = pick(logits, u[:, j], temperature, top_k)
        if fixed is not None and j < fixed.shape[1]:
            tok = torch.where(fixed[:, j] >= 0, fixed[:, j], tok)
        out.append(tok)
        if j + 1 < n:
            z = z + heads.prev[j](tok)
    return torch.stack(out, dim=1) if out else torch.zeros(h.shape[0], 0, dtype=torch.long, device=h.device)


def gap_tokens(gap: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
    """(n, 2) gap-bin and offset-class tokens of gaps (seconds on the clock) for the gap encoder's
    log ``edges``: the codec's encoding (tested equal), on the sampler's device."""
    zero = gap <= 0
    z = torch.log(gap.clamp(min=MIN_GAP_S)).clamp(float(edges[0]), float(edges[-1]))
    bins = (torch.searchsorted(edges, z, right=True) - 1).clamp(0, edges.numel() - 2)
    off = ((z - edges[bins]) / (edges[bins + 1] - edges[bins])).clamp(0.0, 1.0 - 1e-9)
    cls = torch.where(off <= 0, 0, 1 + (off * OFFSET_CLASSES).long().clamp(max=OFFSET_CLASSES - 1))
    return torch.stack([torch.where(zero, 0, bins + 1), torch.where(zero, 0, cls)], dim=1)


@dataclass
class SamplingConfig:
    """How the transformer samples; saved with the model, changed by ``configure``."""

    entity_batch: int | None = None  # entities sampled together (None: 4,096 on CPU, 65,536 on CUDA)
    temperature: float = 1.0
    top_k: int | None = None
    precision: str = "fp32"  # or "bf16"
    use_cache: bool = True
    device: str | None = None  # None: cuda when present

    def __post_init__(self) -> None:
        if self.precision not in ("fp32", "bf16"):
            raise StreamsynthError(f"precision {self.precision!r}", hint="use 'fp32' or 'bf16'")
        if self.temperature <= 0:
            raise StreamsynthError(f"temperature must be > 0, got {self.temperature}")


@dataclass(frozen=True)
class SamplerPlan:
    """What one stream asks of the sampler: which entities, from when, and when to stop."""

    start: datetime
    span_s: float  # seconds of one window (each entity lives in one)
    n_entities: int  # entities per window
    seed: int
    forced_events: np.ndarray  # per event sub-field: the class a condition fixes, or -1
    forced_attrs: np.ndarray  # the same for the entity attributes
    shard: tuple[int, int] = (0, 1)
    # What the caller keeps (sample's n_events and end): entities past the horizon (seconds from
    # the start) cannot add to it, so they leave the pool and no later ones join.
    max_events: int | None = None
    end_s: float | None = None


class Sampler:
    """The slot pool; :meth:`chunks` yields dicts of numpy arrays for ``EventCodec.decode``."""

    def __init__(self, model: EventTransformer, codec: EventCodec, plan: SamplerPlan,
                 config: SamplingConfig | None = None, trained_start: datetime | None = None) -> None:
        config = config or SamplingConfig()
        self.device = default_device(config.device)
        if self.device.type == "cpu":
            keep_freed_memory()  # each step's multi-MB temporaries would be faulted in anew
        self.dtype = torch.bfloat16 if config.precision == "bf16" else torch.float32
        if self.dtype == torch.bfloat16 and self.device.type == "cpu" and not cpu_has_bf16():
            warnings.warn(
                "precision='bf16' on a CPU without bf16 instructions (avx512_bf16 or AMX): matrix "
                "work is emulated and sampling runs many times slower than fp32 (measured 12x on "
                "an AVX2-only CPU); configure(precision='fp32') is the fast choice here",
                RuntimeWarning, stacklevel=2,
            )
        if self.dtype == torch.float32:
            self.model = model.to(self.device).eval()
        else:  # a converted copy: the whole step runs in bf16, no per-step casts (autocast)
            self.model = copy.deepcopy(model).to(self.device, dtype=self.dtype).eval()
        self.cfg = model.cfg
        self.codec = codec
        self.start_us = int(round(plan.start.timestamp() * 1e6))
        self.origin_s = self.start_us / 1e6
        self.span_s = float(plan.span_s)
        self.n_entities = plan.n_entities
        self.seed = plan.seed
        self.k, self.n_shards = plan.shard
        self.per_window = len(range(self.k, plan.n_entities, self.n_shards))
        default = 65_536 if self.device.type == "cuda" else 4096
        self.slots = max(1, min(config.entity_batch or default, self.per_window or 1))
        self.temperature, self.top_k = config.temperature, config.top_k
        self.use_cache = config.use_cache
        self.forced_events = torch.as_tensor(plan.forced_events, dtype=torch.long)
        self.forced_attrs = torch.as_tensor(plan.forced_attrs, dtype=torch.long)
        edges = torch.as_tensor(codec.gap_edges, dtype=torch.float64, device=self.device)
        self.edges, self.edges_lo, self.edges_hi = edges, edges[:-1], edges[1:]
        self.eos = codec.eos
        self.next_index = 0
        self.max_events = plan.max_events
        self.horizon = math.inf if plan.end_s is None else float(plan.end_s)
        self.clock_of = TorchClock(codec.clock, self.origin_s, self.device)
        self.plan = model.cfg.plan and codec.lifecycles is not None
        # Entities born and gone inside the span follow their plans to the end; those living
        # through it only start at their birth (the plan's bounds cost a purchase stream its
        # daily profile: hour-of-day TV 0.14 against 0.06, on held-out customers).
        self.bounded = self.plan and codec.lifecycles.bounded
        self.never = codec.never_drawn()
        # The start and attribute tokens (positions 0 and 1) sit at the window start, which in
        # training was always the training start: the network knows them only at its hour and
        # weekday. At another (a window starting at noon) every later position attended to clock
        # inputs it had never seen: a taxi series' lag-one correlation fell from 0.74 to 0.07.
        # So they take the training start's clock features wherever the window starts.
        self.start_clock = None
        if trained_start is not None:
            zero = torch.zeros(1, dtype=torch.float64, device=self.device)
            self.start_clock = time_features(zero, trained_start.timestamp(), zero, self.span_s,
                                             self.cfg.window_share)[0]

    # -- the pool ---------------------------------------------------------------------------
    def _init_pool(self) -> None:
        b, f, a, dev = self.slots, len(self.cfg.event_sizes), len(self.cfg.attr_sizes), self.device
        self.ent = torch.full((b,), -1, dtype=torch.long, device=dev)
        self.wstart = torch.zeros(b, dtype=torch.float64, device=dev)
        self.pos = torch.zeros(b, dtype=torch.long, device=dev)
        self.t = torch.zeros(b, dtype=torch.float64, device=dev)
        self.clock = torch.zeros(b, dtype=torch.float64, device=dev)  # t on the codec's clock (warped s)
        self.last = torch.zeros(b, f, dtype=torch.long, device=dev)
        self.attrs = torch.zeros(b, a, dtype=torch.long, device=dev)
        self.hbase = torch.zeros(b, dtype=torch.long, device=dev)
        self.count = torch.zeros(b, dtype=torch.long, device=dev)
        self.tlast = torch.zeros(b, dtype=torch.float64, device=dev)
        self.gap0 = torch.zeros(b, dtype=torch.float64, device=dev)
        self.tok0 = torch.full((b, 2), -1, dtype=torch.long, device=dev)
        self.seed_h = seed_hash(self.seed, dev)
        self.steps = 0
        if self.use_cache:
            self.cache = KVCache(self.cfg, b, dev, self.dtype)
            if dev.type == "cpu" and self.dtype == torch.float32:
                # Measured: fp32 matmuls over the whole pool are as fast as row blocks on CPU,
                # so sorting the slots would only cost (~10% at pool 4096); bf16 gains 2.2x.
                self.cache.block_rows = b
        else:
            t = self.cfg.block_size
            self.hist_ev = torch.zeros(b, t, f, dtype=torch.long, device=dev)
            width = N_TIME + 2 + (N_PLAN if self.plan else 0)
            self.hist_tf = torch.zeros(b, t, width, dtype=torch.float32, device=dev)

    def _entity(self, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Global entity number and window start (s) of this shard's ``index``-th entity."""
        window, j = np.divmod(index, self.per_window)
        return window * self.n_entities + self.k + j * self.n_shards, window * self.span_s

    def _admit(self) -> None:
        free = torch.nonzero(self.ent < 0).squeeze(1)
        if free.numel() == 0:
            return
        index = np.arange(self.next_index, self.next_index + free.numel())
        ent, wstart = self._entity(index)
        if wstart[-1] > self.horizon:  # windows start in index order: admit those before it
            n = int(np.searchsorted(wstart, self.horizon, side="right"))
            free, index, ent, wstart = free[:n], index[:n], ent[:n], wstart[:n]
            if n == 0:
                return
        self.next_index += free.numel()
        ent_t = torch.as_tensor(ent, dtype=torch.long, device=self.device)
        self.ent[free] = ent_t
        self.wstart[free] = torch.as_tensor(wstart, dtype=torch.float64, device=self.device)
        self.t[free] = self.wstart[free]
        self.clock[free] = self.clock_of.warp(self.wstart[free])
        self.pos[free] = 0
        self.last[free] = 0
        self.attrs[free] = 0
        self.hbase[free] = hash_chain(self.seed_h, ent_t)
        if self.plan:
            self._plan(free, ent, wstart)

    def _plan(self, free: torch.Tensor, ent: np.ndarray, wstart: np.ndarray) -> None:
        """Draw the admitted entities' lifecycles: the first event at the drawn birth (its gap
        on the clock exact, its tokens those of that gap), the last by the drawn time and count."""
        birth, last, count = self.codec.lifecycles.draw(self.seed, ent)
        as_t = {"dtype": torch.float64, "device": self.device}
        born = self.clock_of.warp(torch.as_tensor(wstart + birth, **as_t))
        gap = (born - self.clock[free]).clamp(min=0.0)
        self.gap0[free] = gap
        self.tok0[free] = gap_tokens(gap, self.edges)
        self.tlast[free] = torch.as_tensor(wstart + last, **as_t)
        self.count[free] = torch.as_tensor(count, dtype=torch.long, device=self.device)

    def _hidden(self) -> torch.Tensor:
        tfeat = time_features(self.t, self.origin_s, self.wstart, self.span_s, self.cfg.window_share)
        if self.start_clock is not None:
            tfeat = torch.where((self.pos < 2)[:, None], self.start_clock, tfeat)
        if self.plan:  # position k has made k - 1 events
            left = self.count - (self.pos - 1).clamp(min=0)
            tfeat = torch.cat([tfeat, plan_features(self.t, self.tlast, left, self.span_s)], dim=-1)
        if self.use_cache:
            self.cache.prepare(self.pos, int(self.pos.max()) + 1)
            x = self.model.embed(self.pos[:, None], self.attrs, self.last[:, None, :], tfeat[:, None, :])
            return self.model.hidden(x, self.cache)[:, 0]
        rows = torch.arange(self.slots, device=self.device)
        self.hist_ev[rows, self.pos] = self.last
        self.hist_tf[rows, self.pos] = tfeat
        length = int(self.pos.max()) + 1
        positions = torch.arange(length, device=self.device).expand(self.slots, length)
        x = self.model.embed(positions, self.attrs, self.hist_ev[:, :length], self.hist_tf[:, :length])
        return self.model.hidden(x)[rows, self.pos]

    def _sort_slots(self) -> None:
        """Sort the slots by position, longest first, so that the cache's row blocks each read
        only as many keys as their own longest row needs (most entities are short)."""
        perm = torch.argsort(self.pos, descending=True, stable=True)
        self._take_state(perm)
        self.cache.reorder(perm)

    def _step(self) -> dict[str, torch.Tensor] | None:
        """Advance every slot by one position; returns the events emitted (on the device)."""
        self.steps += 1
        if self.use_cache and self.slots > self.cache.block_rows and self.steps % SORT_EVERY == 0:
            self._sort_slots()
        self._admit()
        h = self._hidden()
        hpos = hash_chain(self.hbase, self.pos)
        n_fields = max(len(self.cfg.event_sizes), len(self.cfg.attr_sizes))
        keys = torch.arange(n_fields, device=self.device)
        u = to_uniform(hash_chain(hpos[:, None], keys[None, :]))
        live = self.ent >= 0  # all but slots left empty near a horizon
        at_start = (self.pos == 0) & live
        ended = torch.zeros(self.slots, dtype=torch.bool, device=self.device)
        start_rows = torch.nonzero(at_start).squeeze(1)
        if start_rows.numel() and self.cfg.attr_sizes:
            self.attrs[start_rows] = sample_fields(
                self.model.attr_heads, h[start_rows], u[start_rows], self.forced_attrs,
                self.temperature, self.top_k, never=self.never["attr"],
            )
        rows = torch.nonzero(live & ~at_start).squeeze(1)
        out = None
        if rows.numel():
            fixed = banned = log_room = None
            if self.bounded:
                log_room = self._log_room(rows)
                banned = self._past_plan(log_room)
            if self.plan:
                fixed = self._planned_gaps(rows, log_room)
            tok = sample_fields(
                self.model.event_heads, h[rows], u[rows], self.forced_events, self.temperature, self.top_k,
                fixed, banned, self.never["event"],
            )
            out = self._advance(rows, tok, hpos[rows], ended, log_room)
        self.pos += live  # an empty slot stays at position 0 (inside its cache rows)
        self.ent[ended] = -1
        self.pos[ended] = 0
        return out

    def _log_room(self, rows: torch.Tensor) -> torch.Tensor:
        """Log seconds on the clock from each row's last event to its planned last one."""
        room = self.clock_of.warp(self.tlast[rows]) - self.clock[rows]
        return torch.log(room.clamp(min=1e-300))

    def _planned_gaps(self, rows: torch.Tensor, log_room: torch.Tensor | None) -> torch.Tensor:
        """(rows, 2) gap tokens the plans fix (-1: drawn): the first event's, at the birth, and
        with ``log_room`` (bounded plans) the last planned event's, at the planned last time (so
        the lifetime is the plan's); unbounded, the network paces and ends the entity."""
        pos = self.pos[rows]
        fixed = torch.full((rows.numel(), 2), -1, dtype=torch.long, device=self.device)
        if log_room is not None:
            count = self.count[rows]
            last = ((pos == count) & (count >= 2))[:, None]
            fixed = torch.where(last, gap_tokens(torch.exp(log_room), self.edges), fixed)
        return torch.where((pos == 1)[:, None], self.tok0[rows], fixed)

    def _past_plan(self, log_room: torch.Tensor) -> torch.Tensor:
        """Gap classes the plans rule out: the end of sequence (the planned count ends an entity)
        and gap bins starting past the planned last event, which training never shows (its plans
        are the real entities'). The zero gap stays, so a row always has a class."""
        banned = torch.zeros(log_room.numel(), self.eos + 1, dtype=torch.bool, device=self.device)
        banned[:, 1 : 1 + self.edges_lo.numel()] = self.edges_lo[None, :] > log_room[:, None]
        banned[:, self.eos] = True
        return banned

    def _advance(
        self, rows: torch.Tensor, tok: torch.Tensor, hpos: torch.Tensor, ended: torch.Tensor,
        log_room: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        gap_bin, gap_cls = tok[:, 0], tok[:, 1]
        u = to_uniform(hash_chain(hpos, UNIFORM_OFFSET_KEY + 1))
        inner = (gap_bin - 1).clamp(0, len(self.edges_lo) - 1)
        off = torch.where(gap_cls == 0, 0.0, (gap_cls - 1 + u) / OFFSET_CLASSES)
        lo, hi = self.edges_lo[inner], self.edges_hi[inner]
        if log_room is not None:  # the bin holding the planned last event ends there
            hi = torch.maximum(torch.minimum(hi, log_room), lo)
        z = lo + off * (hi - lo)
        gap = torch.where(gap_bin == 0, 0.0, torch.exp(z))
        if self.bounded:  # the planned last event exactly where planned
            pos, count = self.pos[rows], self.count[rows]
            gap = torch.where((pos == count) & (count >= 2), torch.exp(log_room), gap)
        if self.plan:  # the first event at the planned birth
            gap = torch.where(self.pos[rows] == 1, self.gap0[rows], gap)
        new_clock = self.clock[rows] + gap
        new_t = torch.maximum(self.clock_of.unwarp(new_clock), self.t[rows]) if self.clock_of.on else new_clock
        stop = (gap_bin == self.eos) | (new_t > self.wstart[rows] + self.span_s)
        keep = ~stop
        emit = rows[keep]
        self.t[emit] = new_t[keep]
        self.clock[emit] = new_clock[keep]
        self.last[emit] = tok[keep]
        full = self.pos[rows] >= self.cfg.block_size - 1
        if self.bounded:  # this event (number pos - 1 from 0) was the entity's last planned one
            full = full | (self.pos[rows] >= self.count[rows])
        ended[rows[stop | full]] = True
        return {
            "entity_no": self.ent[emit],
            "seq": self.pos[emit] - 1,
            "t": new_t[keep],
            "events": tok[keep],
            "attrs": self.attrs[emit],
        }

    def _next_start(self) -> float:
        """Window start of the next entity to admit; infinite when it is past the horizon."""
        _, start = self._entity(np.array([self.next_index]))
        return float(start[0]) if start[0] <= self.horizon else math.inf

    def _watermark(self) -> float:
        """No slot, and no entity not yet admitted, can emit an event before this time."""
        earliest = float(torch.where(self.ent >= 0, self.t, math.inf).min())  # one device sync
        return min(earliest, self._next_start())

    def _emptying(self) -> bool:
        """True when no slot is generating (only ever near a horizon): time to release all."""
        return self.horizon != math.inf and not bool((self.ent >= 0).any())

    def _narrow(self, released: int, buffer: list[dict[str, np.ndarray]]) -> None:
        """Lower the horizon to the time of the last event needed, once that many exist; drop
        the entities past it, and shrink the pool once half of it is empty for good."""
        if self.max_events is not None:
            wanted = self.max_events - released
            if wanted <= 0:  # all released: nothing more is needed
                self.horizon = -math.inf
            elif wanted <= sum(len(b["t"]) for b in buffer):
                held = np.concatenate([b["t"] for b in buffer])
                # Later events of entities *at* this time could still come first (ties are
                # ordered by entity): only those past it leave.
                self.horizon = min(self.horizon, float(np.partition(held, wanted - 1)[wanted - 1]))
        if self.horizon == math.inf:
            return
        self.ent[(self.ent >= 0) & (self.t > self.horizon)] = -1
        live = torch.nonzero(self.ent >= 0).squeeze(1)
        if self._next_start() == math.inf and live.numel() <= self.slots // 2:
            self._keep_slots(live)

    def _take_state(self, index: torch.Tensor) -> None:
        for name in SLOT_STATE:
            setattr(self, name, getattr(self, name)[index])

    def _keep_slots(self, keep: torch.Tensor) -> None:
        """Only the slots ``keep`` go on (the pool gets smaller; nothing else changes)."""
        self._take_state(keep)
        self.slots = int(keep.numel())
        if self.use_cache:
            self.cache.keep_rows(keep)
        else:
            self.hist_ev, self.hist_tf = self.hist_ev[keep], self.hist_tf[keep]

    # -- output -------------------------------------------------------------------------------
    def chunks(self, batch_size: int) -> Iterator[dict[str, Any]]:
        """Endless time-ordered chunks of decoded-ready arrays (about ``batch_size`` rows each)."""
        if self.per_window == 0:
            return
        with torch.inference_mode():
            self._init_pool()
        buffer: list[dict[str, np.ndarray]] = []
        ready: list[dict[str, np.ndarray]] = []
        n_ready, last_window, step, fresh, held, n_yielded = 0, 0, 0, 0, 0, 0
        while self.slots:
            with torch.inference_mode(), threads_for(self.slots * self.cfg.n_embd):
                out = self._step()
            step += 1
            if out is not None and out["seq"].numel():
                buffer.append(_to_numpy(out))
                fresh += len(buffer[-1]["seq"])
            # Release when the new rows are a fair share of those held, so that rows waiting
            # behind a slow entity are not re-scanned at every flush (linear total cost).
            if step % FLUSH_EVERY or (4 * fresh < held and not self._emptying()):
                continue
            with torch.inference_mode():
                self._narrow(n_yielded + n_ready, buffer)
            if self.slots == 0:  # nothing more can be needed: release what is held
                break
            watermark = self._watermark()
            released, buffer = _release(buffer, watermark)
            held, fresh = sum(len(b["seq"]) for b in buffer), 0
            if released is not None:
                ready.append(released)
                n_ready += len(released["seq"])
            window = math.floor(watermark / self.span_s)
            if n_ready and (n_ready >= batch_size or window > last_window):
                yield from self._batches(ready, batch_size)
                n_yielded += n_ready
                ready, n_ready = [], 0
                last_window = window
        released, _ = _release(buffer, math.inf)
        yield from self._batches(ready + ([released] if released is not None else []), batch_size)

    def _batches(self, ready: list[dict[str, np.ndarray]], batch_size: int) -> Iterator[dict[str, Any]]:
        if not ready:
            return
        merged = _concat(ready)
        for lo in range(0, len(merged["seq"]), batch_size):
            yield self._finish({k: v[lo : lo + batch_size] for k, v in merged.items()})

    def _finish(self, part: dict[str, np.ndarray]) -> dict[str, Any]:
        time_us = self.start_us + np.round(part["t"] * 1e6).astype(np.int64)
        return {
            "entity_no": part["entity_no"],
            "seq": part["seq"],
            "time_us": time_us,
            "events": part["events"],
            "attrs": part["attrs"],
        }


def _to_numpy(out: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    small = {"seq", "events", "attrs"}  # narrow types: rows may wait in memory a while
    return {k: (v.to(torch.int32) if k in small else v).cpu().numpy() for k, v in out.items()}


def _concat(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    if len(parts) == 1:
        return parts[0]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _release(
    buffer: list[dict[str, np.ndarray]], watermark: float
) -> tuple[dict[str, np.ndarray] | None, list[dict[str, np.ndarray]]]:
    """Events strictly before ``watermark``, in (time, entity, position) order, and the rest."""
    if not buffer:
        return None, buffer
    merged = _concat(buffer)
    early = merged["t"] < watermark
    if not early.any():
        return None, [merged]
    rest = {k: v[~early] for k, v in merged.items()}
    out = {k: v[early] for k, v in merged.items()}
    order = np.lexsort((out["seq"], out["entity_no"], out["t"]))
    out = {k: v[order] for k, v in out.items()}
    return out, ([rest] if len(rest["t"]) else [])
