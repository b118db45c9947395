"""TimeGAN's five recurrent networks (Yoon, Jarrett and van der Schaar, NeurIPS 2019).

Embedder, recovery, generator, supervisor and discriminator are GRU or LSTM stacks with a
linear read-out. ``R`` independent replicas can live in one set of layers, packed
block-diagonally (every weight that would connect two replicas is held at zero), so a
benchmark's repeated runs train in the time of one; a fitted synthesizer uses ``R = 1``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn

SIGMOID = "sigmoid"
SOFTMAX = "softmax"


@dataclass
class TimeGANConfig:
    """Hyper-parameters; the defaults are the paper's, except ``iterations`` (50,000 there)."""

    seq_len: int = 24
    hidden_dim: int = 24
    num_layers: int = 3
    module: str = "gru"  # "gru" or "lstm"
    batch_size: int = 128
    iterations: int = 2000  # per phase: autoencoder, supervised, joint
    learning_rate: float = 1e-3
    gamma: float = 1.0
    d_threshold: float = 0.15  # the discriminator only steps while its loss is above this

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Layout:
    """Feature layout of each replica: its width and its one-hot (softmax) groups."""

    widths: list[int]
    softmax_groups: list[list[tuple[int, int]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.softmax_groups:
            self.softmax_groups = [[] for _ in self.widths]
        self.softmax_groups = [[(int(a), int(b)) for a, b in g] for g in self.softmax_groups]

    @property
    def replicas(self) -> int:
        return len(self.widths)

    @property
    def feature_owner(self) -> torch.Tensor:
        return torch.cat([torch.full((w,), r) for r, w in enumerate(self.widths)])

    def segments(self) -> list[tuple[int, int, str]]:
        """Packed-coordinate runs of columns that share an output activation."""
        out: list[tuple[int, int, str]] = []
        offset = 0
        for width, groups in zip(self.widths, self.softmax_groups, strict=True):
            cursor = 0
            for a, b in sorted(groups):
                if a > cursor:
                    out.append((offset + cursor, offset + a, SIGMOID))
                out.append((offset + a, offset + b, SOFTMAX))
                cursor = b
            if cursor < width:
                out.append((offset + cursor, offset + width, SIGMOID))
            offset += width
        merged: list[tuple[int, int, str]] = []
        for seg in out:  # adjacent sigmoid runs (also across replicas) become one kernel
            if merged and seg[2] == SIGMOID and merged[-1][2] == SIGMOID and merged[-1][1] == seg[0]:
                merged[-1] = (merged[-1][0], seg[1], SIGMOID)
            else:
                merged.append(seg)
        return merged


def _block(rows: torch.Tensor, cols: torch.Tensor | None, nobody: int) -> torch.Tensor:
    """Owner (replica number) of every weight; ``nobody`` where rows and columns disagree."""
    if cols is None:
        return rows.clone()
    same = rows[:, None] == cols[None, :]
    return torch.where(same, rows[:, None].expand(-1, len(cols)), torch.full_like(same, nobody, dtype=torch.long))


class PackedRNN(nn.Module):
    """A GRU/LSTM stack plus a per-step linear read-out, holding ``R`` block-diagonal replicas."""

    def __init__(
        self,
        module: str,
        in_owner: torch.Tensor,
        hidden: int,
        layers: int,
        out_owner: torch.Tensor,
        replicas: int,
    ) -> None:
        super().__init__()
        cls = {"gru": nn.GRU, "lstm": nn.LSTM}[module]
        gates = 3 if module == "gru" else 4
        width = hidden * replicas
        hid_owner = torch.arange(width) // hidden
        self.rnn = cls(len(in_owner), width, num_layers=layers, batch_first=True)
        self.head = nn.Linear(width, len(out_owner))
        owners: dict[str, torch.Tensor] = {}
        for name, _ in self.rnn.named_parameters():
            rows = hid_owner.repeat(gates)
            if name.startswith("weight_ih_l0"):
                cols = in_owner
            elif name.startswith("weight"):
                cols = hid_owner
            else:
                cols = None
            owners[f"rnn.{name}"] = _block(rows, cols, replicas)
        owners["head.weight"] = _block(out_owner, hid_owner, replicas)
        owners["head.bias"] = out_owner.clone()
        # Initialise as a single replica of width ``hidden`` would be, then cut the off-blocks.
        bound = 1.0 / math.sqrt(hidden)
        self._owner_names = []
        with torch.no_grad():
            for name, param in self.named_parameters():
                param.uniform_(-bound, bound)
                param.mul_(owners[name] < replicas)
                buffer = "owner__" + name.replace(".", "__")
                self.register_buffer(buffer, owners[name], persistent=False)
                self._owner_names.append((name, buffer))

    def owned_parameters(self) -> list[tuple[nn.Parameter, torch.Tensor]]:
        params = dict(self.named_parameters())
        return [(params[name], getattr(self, buffer)) for name, buffer in self._owner_names]

    def forward(self, x: torch.Tensor, state=None):
        out, state = self.rnn(x, state)
        return self.head(out), state


class TimeGANNet(nn.Module):
    """The five networks of TimeGAN for ``layout.replicas`` packed replicas."""

    def __init__(self, config: TimeGANConfig, layout: Layout) -> None:
        super().__init__()
        if config.module not in ("gru", "lstm"):
            raise ValueError(f"module must be 'gru' or 'lstm', not {config.module!r}")
        self.config = config
        self.layout = layout
        r, h, n = layout.replicas, config.hidden_dim, config.num_layers
        feat = layout.feature_owner
        hid = torch.arange(h * r) // h
        self.embedder = PackedRNN(config.module, feat, h, n, hid, r)
        self.recovery = PackedRNN(config.module, hid, h, n, feat, r)
        self.generator = PackedRNN(config.module, feat, h, n, hid, r)  # z has the data's width
        self.supervisor = PackedRNN(config.module, hid, h, max(1, n - 1), hid, r)
        self.discriminator = PackedRNN(config.module, hid, h, n, torch.arange(r), r)
        self._segments = layout.segments()
        # Per-replica averages over features / hidden units: (width, R) matrices.
        self.register_buffer("avg_x", _averager(feat, r), persistent=False)
        self.register_buffer("avg_h", _averager(hid, r), persistent=False)

    @property
    def z_dim(self) -> int:
        return sum(self.layout.widths)

    def activate(self, y: torch.Tensor) -> torch.Tensor:
        """Recovery's output activation: sigmoid for numbers, softmax over each one-hot group."""
        if len(self._segments) == 1:
            return torch.sigmoid(y)
        parts = [
            torch.sigmoid(y[..., a:b]) if kind == SIGMOID else torch.softmax(y[..., a:b], dim=-1)
            for a, b, kind in self._segments
        ]
        return torch.cat(parts, dim=-1)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.embedder(x)[0])

    def recover(self, h: torch.Tensor) -> torch.Tensor:
        return self.activate(self.recovery(h)[0])

    def supervise(self, h: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.supervisor(h)[0])

    def generate_latent(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.generator(z)[0])

    def discriminate(self, h: torch.Tensor) -> torch.Tensor:
        return self.discriminator(h)[0]

    @torch.no_grad()
    def sample(self, z: torch.Tensor, state=None):
        """Z -> generator -> supervisor -> recovery, carrying recurrent state across calls.

        Calling it on consecutive chunks of one long Z gives one long series: the recurrent
        generator runs past the training window length.
        """
        sg, ss, sr = state if state is not None else (None, None, None)
        e, sg = self.generator(z, sg)
        h, ss = self.supervisor(torch.sigmoid(e), ss)
        x, sr = self.recovery(torch.sigmoid(h), sr)
        return self.activate(x), (sg, ss, sr)

    def weights(self) -> dict[str, np.ndarray]:
        """All weights as float32 numpy arrays, keyed like ``state_dict`` (for safetensors)."""
        return {k: v.detach().float().cpu().numpy() for k, v in self.state_dict().items()}


def _averager(owner: torch.Tensor, replicas: int) -> torch.Tensor:
    onehot = torch.nn.functional.one_hot(owner, replicas).float()
    return onehot / onehot.sum(0, keepdim=True)
