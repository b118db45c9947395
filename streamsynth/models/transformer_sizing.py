"""How big a transformer to fit, and for how long: sizes from the data and a preset.

``fit --model transformer`` leaves the network's depth and width, the number of epochs and the
early-stopping patience to a preset unless they are given (``--option n_layer=6``); the choice is
printed in one line before training and saved with the model, so a user sees what was fitted and
can ask for another.

The epoch budget is counted in training compute, not steps or seconds: ``6 x parameters x
positions`` a pass (the usual forward-and-backward estimate), positions being the events the
training entities put through the network. Steps cost very different times from one data set to
the next (a step over 512-event aircraft histories took about 3 s on two CPU cores, over 20-event
customers a tenth of that), so a budget in steps made long sequences take half an hour; a budget in
seconds would make the model depend on how busy the machine was, and a seed must give one model.

Two CPU cores (AVX512) put through about 4 x 10^9 of it a second (3.4 x 10^9 on a flight schedule,
6 x 10^9 on card payments), which sets the presets' budgets:

- ``fast``: two narrow blocks, 2.5 x 10^11 (about a minute on two CPU cores), at most 8 epochs;
- ``auto`` (the default): four blocks 128 wide (about a million parameters, the size the sampling
  benchmarks measure) on any amount of data; 1.2 x 10^12 (about five minutes), between 3 and 30
  epochs (30 was the fixed default, which small data sets still get; a large one takes longer for
  its 3). Two narrow blocks on a 1,900-event cohort kept 292 of 301 entities where four blocks
  kept 299: a small network is not the safer default for small data;
- ``best``: six blocks 192 wide from 100,000 events on, 8 x 10^12 (about half an hour) and up to
  100 epochs, a longer patience: for a final model, on a GPU or with time to spare.

Early stopping on held-out entities ends every preset sooner when the validation loss stops
improving, so a larger budget costs time only while it still helps.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from streamsynth.errors import StreamsynthError

if TYPE_CHECKING:
    from streamsynth.models.transformer_train import TrainConfig

HEAD_WIDTH = 32  # a head's width when n_head is not given: n_head about n_embd / 32


@dataclass
class NetworkSize:
    """The network's size; what the data decides (field sizes) is added at fit."""

    n_layer: int | None = None  # None: the preset's for the data
    n_head: int | None = None
    n_embd: int | None = None
    n_kv_head: int | None = 1
    block_size: int | None = None  # None: from the data's 99th-percentile sequence length

    def __post_init__(self) -> None:
        # what is left None is chosen at fit (dividing what is given), and checked again then
        width = self.n_embd is not None and self.n_head is not None and self.n_embd % self.n_head
        heads = self.n_head is not None and self.n_head % (self.n_kv_head or self.n_head)
        if width or heads:
            raise StreamsynthError(
                f"n_embd={self.n_embd}, n_head={self.n_head}, n_kv_head={self.n_kv_head}",
                hint="n_embd must be a multiple of n_head, and n_head a multiple of n_kv_head",
            )


@dataclass(frozen=True)
class Preset:
    """One preset's rules: the network by data size, and the training budget."""

    small: tuple[int, int]  # (n_layer, n_embd) below ``small_below`` events
    usual: tuple[int, int]
    large: tuple[int, int]  # from ``large_from`` events on
    small_below: int
    large_from: int
    compute: float  # 6 x parameters x positions, summed over the epochs
    min_epochs: int
    max_epochs: int
    patience: int


PRESETS: dict[str, Preset] = {
    "fast": Preset(small=(2, 64), usual=(2, 64), large=(2, 128), small_below=5_000, large_from=1_000_000,
                   compute=2.5e11, min_epochs=1, max_epochs=8, patience=2),
    "auto": Preset(small=(4, 128), usual=(4, 128), large=(4, 128), small_below=5_000, large_from=1_000_000,
                   compute=1.2e12, min_epochs=3, max_epochs=30, patience=4),
    "best": Preset(small=(4, 128), usual=(4, 128), large=(6, 192), small_below=5_000, large_from=100_000,
                   compute=8e12, min_epochs=5, max_epochs=100, patience=8),
}


def check_preset(name: str) -> None:
    if name not in PRESETS:
        raise StreamsynthError(f"unknown transformer preset {name!r} (fit --preset, --option preset=...)",
                               hint=f"use one of: {', '.join(PRESETS)}")


def network_for(preset: str, size: NetworkSize, n_events: int) -> NetworkSize:
    """``size`` with the depth, width and heads it leaves None chosen by ``preset`` for this much data."""
    check_preset(preset)
    rules = PRESETS[preset]
    if n_events < rules.small_below:
        n_layer, n_embd = rules.small
    elif n_events >= rules.large_from:
        n_layer, n_embd = rules.large
    else:
        n_layer, n_embd = rules.usual
    n_embd = size.n_embd if size.n_embd is not None else n_embd
    return replace(size, n_layer=size.n_layer if size.n_layer is not None else n_layer, n_embd=n_embd,
                   n_head=size.n_head if size.n_head is not None else _heads(n_embd))


@dataclass(frozen=True)
class Sizing:
    """What the preset chose, and from what."""

    preset: str
    size: NetworkSize
    train: TrainConfig
    parameters: int
    positions: int  # events a pass puts through the network
    n_events: int
    given: tuple[str, ...]  # the options the user set, which the preset did not choose

    def describe(self) -> str:
        """One line: the network, the budget, and where they came from."""
        s, t = self.size, self.train
        given = f"; given: {', '.join(self.given)}" if self.given else ""
        epochs = f"{t.epochs} epoch{'s' if t.epochs != 1 else ''}"
        return (f"transformer: {s.n_layer} blocks x {s.n_embd} wide, {s.n_head} heads ({self.parameters:,} "
                f"parameters), up to {epochs} of {self.positions:,} positions, stopping after "
                f"{t.patience} without improvement (preset {self.preset}, from {self.n_events:,} events{given}; "
                "change with fit --preset fast|auto|best or --option n_layer=...)")


def budget_for(preset: str, given: tuple[NetworkSize, TrainConfig], size: NetworkSize, *, parameters: int,
               positions: int, n_events: int, segmented: bool = False) -> Sizing:
    """The epochs and patience ``given``'s TrainConfig leaves None, for a network of ``parameters``
    through which a pass puts ``positions`` events; ``given`` is what the user set.

    A stream without entities (``segmented``) gets the preset's most epochs and twice its
    patience: its information is in the order of its events, which the network learns late,
    after a plateau where it ignores its inputs. By the compute rule a machine-temperature
    series (11,000 events) had 10 epochs and kept a lag-one correlation of 0.30 (real 0.998;
    held-out judge AUC 0.88, floor 0.41); with 28 it kept 0.69 (AUC 0.58) in 49 s."""
    rules = PRESETS[preset]
    asked, train = given
    per_epoch = 6.0 * parameters * max(positions, 1)
    epochs = min(rules.max_epochs, max(rules.min_epochs, round(rules.compute / per_epoch)))
    patience = rules.patience
    if segmented:
        epochs, patience = rules.max_epochs, 2 * rules.patience
    named = tuple(name for name, value in (("n_layer", asked.n_layer), ("n_embd", asked.n_embd),
                                           ("n_head", asked.n_head), ("epochs", train.epochs),
                                           ("patience", train.patience)) if value is not None)
    train = replace(train, epochs=train.epochs if train.epochs is not None else epochs,
                    patience=train.patience if train.patience is not None else patience)
    return Sizing(preset, size, train, parameters, positions, n_events, named)


def _heads(n_embd: int) -> int:
    """The most heads of at least HEAD_WIDTH each that divide ``n_embd`` (one when it is narrow)."""
    return next(h for h in range(max(1, n_embd // HEAD_WIDTH), 0, -1) if n_embd % h == 0)
