"""The event transformer network: one config, the blocks, the field heads, the KV cache.

A decoder-only transformer over the events of one entity. Position 0 is a start token that
predicts the entity's attributes (and label), position 1 carries them, and every later position
carries one event and predicts the next one field by field. :class:`EventTransformer` holds the
training forward and the cached generation step; training is in ``transformer_train``, batched
generation in ``transformer_sample``, the model wrapper in ``transformer``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

N_TIME = 5  # time-of-day sin/cos, day-of-week sin/cos, fraction of the window elapsed
# time_features adds two integer-valued columns after those: hour of day and day of week, which
# get embeddings of their own (a daily profile is learned far faster from them than from sin/cos).
N_PLAN = 4  # the entity's plan (streamsynth.models.lifecycle): events left, time left (share, log),
# and the mean gap they leave


@dataclass
class TransformerConfig:
    """Architecture; saved as JSON next to the weights."""

    event_sizes: list[int] = field(default_factory=list)  # classes of each event sub-field
    attr_sizes: list[int] = field(default_factory=list)  # classes of each attribute sub-field
    block_size: int = 128  # positions: start token, attributes, then up to block_size - 2 inputs
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.0
    # Key/value heads, each shared by n_head / n_kv_head query heads (grouped-query attention).
    # None: one per query head, as every model saved before this option existed.
    n_kv_head: int | None = None
    # The entity's planned lifecycle as inputs (plan_features after the time features): each
    # entity's count and last event are drawn before it is generated. False: models saved before
    # lifecycles, and DP-SGD fits (the plan is drawn from real entities' shapes).
    plan: bool = False
    # The elapsed share of the window as an input (time_features). False for one stream cut into
    # segments (``segments``): there it names each segment's place in the one training stream,
    # which the network learns by heart (120 epochs on a taxi series: lag-one correlation 0.94 in
    # the training window, 0.14 in the next) and no other window repeats.
    window_share: bool = True
    # Event sub-fields that are a numeric column's (or the gap's) bin, each followed by its offset
    # class: also input as a number (where in the value range) and a null flag, so that values near
    # each other look alike to the network from the start. With bins alone it had to learn every
    # bin's neighbours from data; a taxi series' sample kept a lag-one correlation of 0.2 (real
    # 0.97) after 30 epochs. Empty: models saved before.
    numeric_inputs: list[int] = field(default_factory=list)

    @property
    def kv_heads(self) -> int:
        return self.n_kv_head or self.n_head


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.n_head, self.kv_heads = cfg.n_head, cfg.kv_heads
        self.head_dim = cfg.n_embd // cfg.n_head
        self.c_attn = nn.Linear(cfg.n_embd, cfg.n_embd + 2 * self.kv_heads * self.head_dim)
        self.c_proj = nn.Linear(cfg.n_embd, cfg.n_embd)
        self.dropout = cfg.dropout

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, layer: int = 0) -> torch.Tensor:
        b, t, c = x.shape
        hd, kv = self.head_dim, self.kv_heads * self.head_dim
        q, k, v = self.c_attn(x).split((c, kv, kv), dim=2)
        k, v = (z.view(b, t, self.kv_heads, hd).transpose(1, 2) for z in (k, v))
        if cache is None:
            q = q.view(b, t, self.n_head, hd).transpose(1, 2)
            p = self.dropout if self.training else 0.0
            y = F.scaled_dot_product_attention(
                q, k, v, is_causal=True, dropout_p=p, enable_gqa=self.kv_heads != self.n_head
            )
        else:  # one new position per row, written at that row's own position
            cache.write(layer, k[:, :, 0], v[:, :, 0])
            # Query head h reads key head h // group (as enable_gqa above): each key head's
            # queries form one small matrix, so a row's attention is a matmul, not group matvecs.
            q = q.view(b, self.kv_heads, self.n_head // self.kv_heads, hd).to(cache.k.dtype)
            # Row blocks, each reading only the keys up to its own longest row: the cached step
            # is memory-bound, and the sampler keeps rows sorted by position so blocks differ.
            parts = [
                _cached_attention(q[lo:hi], cache.k[layer, lo:hi, :, :n], cache.v[layer, lo:hi, :, :n],
                                  cache.hidden_keys[lo:hi, ..., :n])
                for lo, hi, n in cache.blocks
            ]
            y = (parts[0] if len(parts) == 1 else torch.cat(parts)).to(x.dtype).view(b, self.n_head, t, hd)
        return self.c_proj(y.transpose(1, 2).reshape(b, t, c))


def _cached_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
    """Each row's queries (one position; the query heads of each key head) over its cached keys
    (``hidden``: the keys a row may not see: later positions, or a previous entity's).

    Plain matmuls, the same on every device: measured on CPU, the fused kernel
    (``scaled_dot_product_attention``) was no faster for one query per row (fp32), its bf16 rows
    depend on the batch's size (pool-size invariance would break), and on GPUs some fused
    kernels (cuDNN in bf16) fail on very large batches or rebuild for every length.
    """
    # Keys times queries, not queries times transposed keys: the cached keys are read in place
    # (row-major), where the transposed operand was copied for every block on CPU.
    scores = torch.matmul(k, q.transpose(-1, -2)).transpose(-1, -2).float() * q.shape[-1] ** -0.5
    weights = torch.softmax(scores.masked_fill_(hidden, float("-inf")), dim=-1)
    return torch.matmul(weights.to(v.dtype), v)


class MLP(nn.Module):
    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(cfg.n_embd, 4 * cfg.n_embd)
        self.c_proj = nn.Linear(4 * cfg.n_embd, cfg.n_embd)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.c_proj(F.gelu(self.c_fc(x))))


class Block(nn.Module):
    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.n_embd)
        self.attn = CausalSelfAttention(cfg)
        self.ln_2 = nn.LayerNorm(cfg.n_embd)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, layer: int = 0) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), cache, layer)
        return x + self.mlp(self.ln_2(x))


class FieldHeads(nn.Module):
    """One output head per sub-field; head j sees the hidden state plus the values of 0..j-1,
    so later fields are conditioned on earlier ones (amount on merchant category)."""

    def __init__(self, sizes: list[int], d: int) -> None:
        super().__init__()
        self.sizes = list(sizes)
        self.prev = nn.ModuleList(nn.Embedding(n, d) for n in sizes[:-1])
        self.norm = nn.ModuleList(nn.LayerNorm(d) for _ in sizes)
        self.hidden = nn.ModuleList(nn.Linear(d, d) for _ in sizes)
        self.out = nn.ModuleList(nn.Linear(d, n) for n in sizes)

    def logits(self, j: int, z: torch.Tensor) -> torch.Tensor:
        return self.out[j](F.gelu(self.hidden[j](self.norm[j](z))))

    def teacher_forced(self, h: torch.Tensor, targets: torch.Tensor) -> list[torch.Tensor]:
        z, out = h, []
        for j in range(len(self.sizes)):
            out.append(self.logits(j, z))
            if j + 1 < len(self.sizes):
                z = z + self.prev[j](targets[:, j])
        return out


BLOCK_ROWS = 128  # smallest row block of the cached attention


class KVCache:
    """Preallocated keys/values for ``rows`` sequences; each row writes at its own position."""

    def __init__(self, cfg: TransformerConfig, rows: int, device: torch.device, dtype: torch.dtype) -> None:
        hd = cfg.n_embd // cfg.n_head
        shape = (cfg.n_layer, rows, cfg.kv_heads, cfg.block_size, hd)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.rows = torch.arange(rows, device=device)
        self.pos = torch.zeros(rows, dtype=torch.long, device=device)
        self.length = 1
        self.hidden_keys: torch.Tensor | None = None
        self.block_rows = max(BLOCK_ROWS, -(-rows // 16))
        self.blocks: list[tuple[int, int, int]] = [(0, rows, 1)]

    def prepare(self, pos: torch.Tensor, length: int) -> None:
        """Set this step's positions; attention reads keys ``0..length-1`` (``length`` > max pos),
        and in each block of rows only up to that block's longest row."""
        self.pos, self.length = pos, length
        keys = torch.arange(length, device=pos.device)
        self.hidden_keys = (keys[None, :] > pos[:, None])[:, None, None, :]
        rows, size = pos.shape[0], self.block_rows
        if rows <= size:
            self.blocks = [(0, rows, length)]
            return
        n_blocks = -(-rows // size)
        longest = F.pad(pos, (0, n_blocks * size - rows)).view(n_blocks, size).amax(1).tolist()
        self.blocks = [(i * size, min(rows, (i + 1) * size), int(m) + 1) for i, m in enumerate(longest)]

    def write(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> None:
        self.k[layer, self.rows, :, self.pos] = k.to(self.k.dtype)
        self.v[layer, self.rows, :, self.pos] = v.to(self.v.dtype)

    def keep_rows(self, keep: torch.Tensor) -> None:
        """Only rows ``keep`` go on, in that order (a smaller cache)."""
        whole_pool = self.block_rows >= self.k.shape[1]
        self.k, self.v = self.k[:, keep], self.v[:, keep]
        rows = int(keep.numel())
        self.rows, self.pos = self.rows[:rows], self.pos[keep]
        self.block_rows = rows if whole_pool else max(BLOCK_ROWS, -(-rows // 16))

    def reorder(self, perm: torch.Tensor) -> None:
        """Row ``i`` becomes old row ``perm[i]`` (keys up to ``length`` are all that is kept)."""
        n = self.length + 1
        for layer in range(self.k.shape[0]):  # per layer: less scratch memory, faster on CPU
            for cache in (self.k, self.v):
                cache[layer, :, :, :n] = torch.index_select(cache[layer, :, :, :n], 0, perm)


class EventTransformer(nn.Module):
    """The network: embeddings of positions, time features, events and attributes; blocks; heads."""

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.n_embd
        self.event_emb = nn.ModuleList(nn.Embedding(n, d) for n in cfg.event_sizes)
        self.attr_emb = nn.ModuleList(nn.Embedding(n, d) for n in cfg.attr_sizes)
        self.bos = nn.Parameter(torch.zeros(d))
        self.attr_token = nn.Parameter(torch.zeros(d))
        self.pos_emb = nn.Embedding(cfg.block_size, d)
        self.time_proj = nn.Linear(N_TIME, d)
        self.hour_emb = nn.Embedding(24, d)
        self.dow_emb = nn.Embedding(7, d)
        if cfg.plan:
            self.plan_proj = nn.Linear(N_PLAN, d)
        if cfg.numeric_inputs:
            at = torch.as_tensor(cfg.numeric_inputs, dtype=torch.long)
            self.register_buffer("numeric_at", at, persistent=False)
            # the last class of a bin sub-field is the null bin (the gap's: end of sequence)
            nulls = torch.as_tensor([cfg.event_sizes[j] - 1 for j in cfg.numeric_inputs], dtype=torch.long)
            self.register_buffer("numeric_null", nulls, persistent=False)
            steps = torch.as_tensor([cfg.event_sizes[j + 1] for j in cfg.numeric_inputs], dtype=torch.long)
            self.register_buffer("numeric_steps", steps, persistent=False)  # offset classes
            # (integer buffers: a bf16 copy of the network keeps them exact)
            self.numeric_proj = nn.Linear(2 * len(cfg.numeric_inputs), d)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(d)
        self.event_heads = FieldHeads(cfg.event_sizes, d)
        self.attr_heads = FieldHeads(cfg.attr_sizes, d)
        self.apply(self._init_weights)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):  # GPT-2's scaled init of residual projections
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def embed(self, pos: torch.Tensor, attrs: torch.Tensor, events: torch.Tensor, tfeat: torch.Tensor) -> torch.Tensor:
        """Inputs for positions ``pos`` (B, P): start token, attribute token or event (B, P, F)."""
        d, dtype = self.cfg.n_embd, self.pos_emb.weight.dtype  # bf16 when sampling in bf16
        ev = torch.zeros(*events.shape[:2], d, device=events.device, dtype=dtype)
        for j, emb in enumerate(self.event_emb):
            ev = ev + emb(events[..., j])
        at = torch.zeros(attrs.shape[0], d, device=attrs.device, dtype=dtype)
        for j, emb in enumerate(self.attr_emb):
            at = at + emb(attrs[:, j])
        # Attributes (and the label condition) reach every event position directly, not only
        # through attention to position 1: conditioning must hold over long sequences.
        x = torch.where((pos == 1)[..., None], self.attr_token, ev) + at[:, None, :]
        x = torch.where((pos == 0)[..., None], self.bos, x)
        clock = self.hour_emb(tfeat[..., N_TIME].long()) + self.dow_emb(tfeat[..., N_TIME + 1].long())
        if self.cfg.numeric_inputs:
            x = x + self.numeric_proj(self._numbers(events).to(dtype))
        x = x + self.pos_emb(pos) + self.time_proj(tfeat[..., :N_TIME].to(dtype)) + clock
        if self.cfg.plan:
            x = x + self.plan_proj(tfeat[..., N_TIME + 2 :].to(dtype))
        return x

    def _numbers(self, events: torch.Tensor) -> torch.Tensor:
        """(…, 2k) the numeric sub-fields of ``events`` as numbers: the bin plus its offset
        class's place in it, as a share of the bins (0 where null), then the null flags."""
        bins = events[..., self.numeric_at]
        offsets = events[..., self.numeric_at + 1].float()
        null = bins >= self.numeric_null
        place = (bins.float() + offsets / self.numeric_steps.float()) / self.numeric_null.float()
        place = torch.where(null, 0.0, place)
        return torch.cat([place, null.float()], dim=-1)

    def hidden(self, x: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        for i, block in enumerate(self.blocks):
            x = block(x, cache, i)
        return self.ln_f(x)

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Summed negative log-likelihood of a padded batch and the number of predicted items.

        ``batch``: ``events`` (B, P-1, F) events 1..P-1, ``attrs`` (B, A), ``tfeat`` (B, P, 7 or
        7 + N_PLAN),
        ``n_events`` (B,), ``censor`` (B,) bool, ``log_survival`` (B, V0).
        """
        events, attrs, n_events = batch["events"], batch["attrs"], batch["n_events"]
        b, p = events.shape[0], events.shape[1] + 1
        pos = torch.arange(p, device=events.device).expand(b, p)
        inputs = torch.zeros(b, p, events.shape[2], dtype=torch.long, device=events.device)
        inputs[:, 2:] = events[:, : p - 2]
        h = self.hidden(self.embed(pos, attrs, inputs, batch["tfeat"]))
        nll = torch.zeros((), device=h.device)
        for j, logits in enumerate(self.attr_heads.teacher_forced(h[:, 0], attrs)):
            nll = nll + F.cross_entropy(logits.float(), attrs[:, j], reduction="sum")
        valid = torch.arange(1, p, device=h.device)[None, :] <= n_events[:, None]
        hv, tv = h[:, 1:][valid], events[valid]
        for j, logits in enumerate(self.event_heads.teacher_forced(hv, tv)):
            nll = nll + F.cross_entropy(logits.float(), tv[:, j], reduction="sum")
        # After the last event: either the end of the sequence or a gap past the window's end.
        rows = torch.nonzero(batch["censor"]).squeeze(1)
        if rows.numel():
            hc = h[rows, n_events[rows] + 1]
            logp = F.log_softmax(self.event_heads.logits(0, hc).float(), dim=-1)
            nll = nll - torch.logsumexp(logp + batch["log_survival"][rows], dim=-1).sum()
        count = n_events.sum() + b
        return nll, count


def time_features(t_s: torch.Tensor, origin_s: float, window_s: torch.Tensor, span_s: float,
                  share: bool = True) -> torch.Tensor:
    """(…, 7) clock features of times ``t_s`` (seconds since ``origin_s``, an epoch second):
    the ``N_TIME`` continuous ones, then the hour of day and the day of week as whole numbers.

    ``window_s``: the start of each time's window, for the elapsed fraction of the window (0
    without ``share``: ``TransformerConfig.window_share``).
    """
    absolute = t_s + origin_s
    day = torch.remainder(absolute, 86_400.0) / 86_400.0 * (2 * math.pi)
    week = torch.remainder(absolute / 86_400.0 + 3.0, 7.0) / 7.0 * (2 * math.pi)  # Monday = 0
    frac = torch.clamp((t_s - window_s) / span_s, 0.0, 1.0) if share else torch.zeros_like(t_s)
    hour = torch.floor(torch.remainder(absolute, 86_400.0) / 3600.0).clamp(0, 23)
    dow = torch.floor(torch.remainder(absolute / 86_400.0 + 3.0, 7.0)).clamp(0, 6)
    feats = [torch.sin(day), torch.cos(day), torch.sin(week), torch.cos(week), frac, hour, dow]
    return torch.stack(feats, dim=-1).float()


def plan_features(t_s: torch.Tensor, last_s: torch.Tensor, left: torch.Tensor, span_s: float) -> torch.Tensor:
    """(…, N_PLAN) features of an entity's plan at times ``t_s``: the events it has left to make
    (``left``), the time to its planned last event ``last_s`` (same clock as ``t_s``) as a share
    of the span and in log seconds (sessions of seconds and customers of months alike), and that
    time per event left in log seconds (the pace the plan asks for, which a network finds harder
    to divide out itself)."""
    remaining = torch.clamp(last_s - t_s, min=0.0)
    left = left.clamp(min=0).double()
    scale = math.log1p(span_s)
    feats = [torch.log1p(left) / 8.0, remaining / span_s, torch.log1p(remaining) / scale,
             torch.log1p(remaining / left.clamp(min=1.0)) / scale]
    return torch.stack(feats, dim=-1).float()
