"""The models' options (``fit --option KEY=VALUE``): what each means, its default, its cost.

Defaults and types come from the code, so they cannot drift from it: a model class with an
``Options`` dataclass (the transformer, TimeGAN) takes its fields, nested ones by their own names
(:func:`set_options` sets them so), and other models their ``__init__`` parameters. The
meanings live in :data:`MEANINGS`, one line per option (a test checks that
every parameter of every registered model has one). :func:`check_options` turns a user's
options into the keyword arguments ``create`` passes on, with errors that name the valid keys.
"""

from __future__ import annotations

import dataclasses
import inspect
import numbers
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from streamsynth.errors import StreamsynthError
from streamsynth.models.registry import model_class

#: Parameters set by a flag of their own or by the code, not by ``--option``: name -> how.
NOT_OPTIONS = {
    "seed": "--seed",
    "dp_epsilon": "--dp-epsilon",
    "dp_delta": "--dp-delta",
    "spec": "the schema file (streamsynth schema init / sample schema.yaml)",
    "source": "the schema file's path",
}

#: model -> option -> (meaning, rough CPU cost). Costs are relative, on the default settings.
MEANINGS: dict[str, dict[str, tuple[str, str]]] = {
    "baseline": {
        "seed": ("random seed of fitting and sampling", "-"),
        "lifecycle": ("on: each entity takes a training entity's birth, lifetime and event count; off: "
                      "entities live through the stream at their rates; auto: on when the median entity "
                      "lives less than half the span", "-"),
    },
    "rules": {
        "seed": ("random seed of sampling", "-"),
        "spec": ("the parsed rules schema", "-"),
        "source": ("where the schema came from (named in errors)", "-"),
    },
    "transformer": {
        "seed": ("random seed of training and sampling", "-"),
        "preset": ("sizes what is left unset from the data: fast (2 blocks x 64, about a minute on 2 CPU cores), "
                   "auto (4 x 128; about 5 minutes, 3-30 epochs) or best (6 x 192 from "
                   "100,000 events; about half an hour); also fit --preset", "fast ~1/5 of auto"),
        "n_layer": ("transformer blocks (null: the preset's for the data)", "training and sampling time ~ linear"),
        "n_head": ("attention heads (n_embd must be a multiple; null: n_embd / 32)", "small"),
        "n_embd": ("width of the hidden state (null: the preset's for the data)", "time ~ quadratic"),
        "n_kv_head": ("key/value heads shared by the query heads (null: one per head)", "1 is fastest to sample"),
        "block_size": ("longest event sequence seen at once (null: from the data's 99th percentile)",
                       "time ~ linear, attention ~ quadratic"),
        "epochs": ("most passes over the training entities, early stopping may end sooner (null: the preset's, "
                   "from the compute a pass takes)", "training time ~ linear"),
        "batch_size": ("entities per training step (null: 32, or 4 segments of a stream without entity)",
                       "larger: fewer, slower steps"),
        "min_epoch_steps": ("least optimiser steps an epoch takes, passing over a small data set more than once "
                            "(null: 1, or 32 for a stream without entity)", "training time ~ linear"),
        "lr": ("peak learning rate (AdamW, cosine schedule)", "-"),
        "weight_decay": ("AdamW weight decay", "-"),
        "warmup": ("fraction of steps that warm the learning rate up", "-"),
        "val_fraction": ("entities held out for early stopping", "-"),
        "patience": ("epochs without validation gain before stopping (null: the preset's)",
                     "lower: shorter training"),
        "device": ("cpu, cuda or cuda:N (null: cuda when present)", "cuda is much faster"),
        "progress": ("print training progress", "-"),
        "grad_clip": ("largest gradient norm per training step (clipped above it)", "-"),
        "entity_batch": ("entities sampled together (null: automatic)", "larger: faster, more memory"),
        "temperature": ("sampling temperature (<1: safer, >1: more varied)", "-"),
        "top_k": ("sample only among the k likeliest values (null: all)", "-"),
        "precision": ("fp32 or bf16 for sampling", "bf16 faster on GPUs with it"),
        "use_cache": ("KV cache while sampling", "off: much slower sampling"),
        "dp_epsilon": ("DP-SGD privacy budget epsilon per entity", "training slower (per-sample gradients)"),
        "dp_delta": ("DP-SGD delta (default 1/(10 x entities))", "-"),
    },
    "timegan": {
        "seed": ("random seed of training and sampling", "-"),
        "preset": ("named sizes: fast (CPU, 1-2 min: 2 layers, 200 iterations) or paper (Yoon et al.: 3 layers, "
                   "2,000 iterations); the options below override it; also fit --preset", "paper ~15x fast"),
        "seq_len": ("window length in rows (training sequences; null: the preset's, 24)", "training time ~ linear"),
        "hidden_dim": ("hidden units of each recurrent network (null: the preset's, 24)", "time ~ quadratic"),
        "num_layers": ("recurrent layers of each network (null: the preset's, fast 2, paper 3)", "time ~ linear"),
        "module": ("gru or lstm", "lstm slower than gru"),
        "iterations": ("training steps of each of the three phases (null: the preset's, fast 200, paper 2,000)",
                       "training time ~ linear"),
        "batch_size": ("windows per training step (null: the preset's, 128)", "time per step ~ linear"),
        "learning_rate": ("Adam learning rate", "-"),
        "device": ("auto, cpu, cuda or cuda:N", "cuda is much faster"),
        "cpu_bf16": ("bfloat16 autocast on CPU", "faster on CPUs with bf16 units"),
        "progress": ("show training progress (a bar on a terminal, a line every 10 s in logs)", "-"),
        "verbose": ("print losses while training", "-"),
        "dp_epsilon": ("DP-SGD privacy budget epsilon per entity", "training slower (per-sample gradients)"),
        "dp_delta": ("DP-SGD delta (default 1/(10 x entities))", "-"),
    },
}


@dataclass(frozen=True)
class ModelOption:
    name: str
    default: Any
    type: Any
    meaning: str
    cost: str

    @property
    def settable(self) -> bool:
        """Set with ``--option`` (others have a flag of their own or come from a file)."""
        return self.name not in NOT_OPTIONS


def model_options(model: str) -> list[ModelOption]:
    """Every option of ``model``: ``seed`` and its ``Options`` fields, or its ``__init__``
    parameters; with default, type and meaning."""
    cls = model_class(model)
    meanings = MEANINGS.get(model, {})
    out = []
    for name, default, annotation in _declared(cls):
        meaning, cost = meanings.get(name, ("(undocumented)", "?"))
        out.append(ModelOption(name, default, annotation, meaning, cost))
    return out


def _declared(cls: type) -> Iterator[tuple[str, Any, Any]]:
    """(name, default, type) of what ``cls`` takes: ``__init__``'s named parameters, with an
    ``options`` parameter replaced by the leaf fields of the class's ``Options`` dataclass."""
    try:
        hints = typing.get_type_hints(cls.__init__)
    except NameError:  # an annotation only importable under TYPE_CHECKING: no type check then
        hints = {}
    for name, param in inspect.signature(cls.__init__).parameters.items():
        if name == "self" or param.kind in (param.VAR_KEYWORD, param.VAR_POSITIONAL):
            continue
        if name == "options" and dataclasses.is_dataclass(getattr(cls, "Options", None)):
            seen: set[str] = set()
            for leaf, default, annotation in _leaves(cls.Options()):
                if leaf not in seen:  # device is in two parts: one option sets both
                    seen.add(leaf)
                    yield leaf, default, annotation
            continue
        yield name, None if param.default is param.empty else param.default, hints.get(name, Any)


def _leaves(options: Any) -> Iterator[tuple[str, Any, Any]]:
    """(name, value, type) of every field of a dataclass that is not itself a dataclass, depth first."""
    hints = typing.get_type_hints(type(options))
    for f in dataclasses.fields(options):
        value = getattr(options, f.name)
        if dataclasses.is_dataclass(value):
            yield from _leaves(value)
        else:
            yield f.name, value, hints.get(f.name, Any)


def set_options(options: Any, values: dict[str, Any]) -> Any:
    """A copy of the ``options`` dataclass with ``values`` set by field name, in whichever nested
    part holds the field (every part that does: ``device``); an unknown name is an error listing
    the known ones, and each part checks its values as it is built."""
    known = {name for name, _, _ in _leaves(options)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise StreamsynthError(f"unknown option {unknown[0]!r}", hint=f"options: {', '.join(sorted(known))}")
    changes = {}
    for f in dataclasses.fields(options):
        value = getattr(options, f.name)
        if dataclasses.is_dataclass(value):
            mine = {k: v for k, v in values.items() if k in {name for name, _, _ in _leaves(value)}}
            if mine:
                changes[f.name] = set_options(value, mine)
        elif f.name in values:
            changes[f.name] = values[f.name]
    return dataclasses.replace(options, **changes)


def check_options(model: str, options: dict[str, Any]) -> dict[str, Any]:
    """``options`` checked against ``model``'s: known keys, values of the declared type."""
    known = {o.name: o for o in model_options(model)}
    settable = [o.name for o in known.values() if o.settable]
    valid = ", ".join(settable) or "none"
    for key, value in options.items():
        option = known.get(key)
        if option is None:
            raise StreamsynthError(
                f"the {model} model has no option {key!r}",
                hint=f"options of {model}: {valid} (see `streamsynth models`)",
            )
        if not _fits(value, option.type):
            raise StreamsynthError(
                f"option {key}={value!r} of the {model} model is not {_type_name(option.type)}",
                hint=f"{key}: {option.meaning}; default {_show(option.default)}",
            )
    return options


def describe(model: str) -> list[list[str]]:
    """Rows (option, default, meaning, cost) of ``model``'s ``--option`` keys, for help texts."""
    rows = []
    for option in model_options(model):
        if option.settable:
            rows.append([option.name, _show(option.default), option.meaning, option.cost])
        elif option.name in ("dp_epsilon", "dp_delta"):
            rows.append([NOT_OPTIONS[option.name], _show(option.default), option.meaning, option.cost])
    return rows


def _fits(value: Any, annotation: Any) -> bool:
    if annotation is Any:
        return True
    args = typing.get_args(annotation)
    if args and typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return any(_fits(value, a) for a in args)
    if annotation is type(None):
        return value is None
    if annotation is float:  # numbers.*: numpy scalars from Python callers count too
        return isinstance(value, numbers.Real) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)
    return isinstance(value, annotation) if isinstance(annotation, type) else True


def _type_name(annotation: Any) -> str:
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    names = {int: "a whole number", float: "a number", bool: "true or false", str: "text"}
    if args:
        return " or ".join(names.get(a, getattr(a, "__name__", str(a))) for a in args) + " (or null)"
    return names.get(annotation, getattr(annotation, "__name__", str(annotation)))


def _show(default: Any) -> str:
    if default is None:
        return "null"
    if isinstance(default, bool):
        return str(default).lower()
    return str(default)
