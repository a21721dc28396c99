"""The trajectory GPT: a decoder-only transformer over time steps.

One token per time step holds the state of all P particles; the network reads steps
s..s+T-1 and predicts steps s+1..s+T (teacher forcing in training, one step at a time in
:func:`fluidgpt.rollout.rollout`). Pure tensors in, tensors out: inputs are already scaled.

Shapes: B cases, T steps, P particles, F state features per particle (x, y, z [, u, v, w]),
K conditions, D = d_model, nh heads of size hs = D / nh, S tokens held by a KV cache.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F_
from torch import Tensor, nn

from .config import GPTConfig

__all__ = [
    "FluidGPT",
    "Block",
    "CausalSelfAttention",
    "KVCache",
    "particle_tokens",
    "sinusoidal_positions",
    "rotary_tables",
    "apply_rotary",
    "dropout",
    "attention",
    "Dropout",
]


# -------------------------------------------------------------------------- pure functions
def particle_tokens(states: Tensor, conditions: Tensor) -> Tensor:
    """The paper's raw token: states (B, T, P, F), conditions (B, K) -> (B, T, P (F + K)).

    Each particle's slot is its state followed by the K conditions, so the conditions are
    repeated P times (the published layout: 8 numbers per particle with F = 3, K = 5).
    """
    B, T, P, _ = states.shape
    cond = conditions[:, None, None, :].expand(B, T, P, conditions.shape[-1])  # (B, T, P, K)
    return torch.cat([states, cond], dim=-1).flatten(2)  # (B, T, P*(F+K))


def sinusoidal_positions(pos: Tensor, dim: int, trphysx: bool = False) -> Tensor:
    """Fixed position encoding: positions (T,) -> (T, dim) float32.

    Vaswani et al.: dimension 2i holds sin(pos w_i) and 2i + 1 holds cos(pos w_i), with
    w_i = 10000^(-2i/dim). ``trphysx=True`` reproduces the encoding FLUID-GPT inherited from
    TrPhysX, whose odd dimensions all use the frequency of index ``dim % 2`` (w_0 = 1 for an
    even dim): every odd dimension is the same cos(pos). Only the paper configuration uses it.
    """
    i = torch.arange((dim + 1) // 2, dtype=torch.float64, device=pos.device)  # even slots
    freq = 10000.0 ** (-2.0 * i / dim)
    angles = pos.to(torch.float64)[:, None] * freq  # (T, ceil(dim/2))
    pe = torch.zeros(pos.shape[0], dim, dtype=torch.float64, device=pos.device)
    pe[:, 0::2] = torch.sin(angles)
    n_odd = dim // 2
    if trphysx:
        w = 10000.0 ** (-2.0 * (dim % 2) / dim)
        pe[:, 1::2] = torch.cos(pos.to(torch.float64)[:, None] * w).expand(-1, n_odd)
    else:
        pe[:, 1::2] = torch.cos(angles[:, :n_odd])
    return pe.float()


def rotary_tables(pos: Tensor, head_dim: int, base: float = 10000.0) -> tuple[Tensor, Tensor]:
    """cos and sin (T, hs/2) of rotary position angles pos * base^(-2j/hs)."""
    j = torch.arange(head_dim // 2, dtype=torch.float64, device=pos.device)
    angles = pos.to(torch.float64)[:, None] * base ** (-2.0 * j / head_dim)  # (T, hs/2)
    return torch.cos(angles).float(), torch.sin(angles).float()


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate the (first half, second half) pairs of x (B, nh, T, hs) by the angles (T, hs/2).

    Rotating queries and keys by their absolute positions makes their dot product depend only
    on the distance, and a key rotated once stays valid in a KV cache.
    """
    x1, x2 = x.chunk(2, dim=-1)  # (B, nh, T, hs/2) each
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


# ---------------------------------------------------------------------------------- cache
class KVCache:
    """Keys and values of every layer for the S tokens seen so far, each (B, nh, S, hs)."""

    def __init__(self) -> None:
        self.layers: list[tuple[Tensor, Tensor]] = []

    def length(self, layer: int = 0) -> int:
        return self.layers[layer][0].shape[2] if layer < len(self.layers) else 0

    def update(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Append the new tokens' k, v (B, nh, T, hs); return all of them (B, nh, S + T, hs)."""
        if layer < len(self.layers):
            k0, v0 = self.layers[layer]
            k, v = torch.cat([k0, k], dim=2), torch.cat([v0, v], dim=2)
            self.layers[layer] = (k, v)
        elif layer == len(self.layers):
            self.layers.append((k, v))
        else:
            raise IndexError(f"layer {layer} updated before layer {len(self.layers)}")
        return k, v


def dropout(x: Tensor, p: float, training: bool = True) -> Tensor:
    """Inverted dropout: each element zeroed with probability p, the kept ones scaled by the
    inverse of the kept fraction. On the CPU p is rounded to a multiple of 2^-16 (p = 0.1:
    0.1000061); elsewhere this is ``F.dropout``.

    Hand-written because torch's CPU dropout draws one float Bernoulli per element (its
    ``bernoulli_`` took 12 % of the GPT's CPU training step in a profile); here each 64-bit
    draw of the generator gives four 16-bit uniforms compared with a threshold (0.72 against
    1.75 ms for 320 k elements, one thread; docs/fluidgpt.md, "The GPT's training step").
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability must be in [0, 1], found {p}")
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu" or p >= 1.0:
        return F_.dropout(x, p, training=True)
    n = x.numel()
    drop = min(round(p * 65536), 65535)  # dropped: 16-bit values below -32768 + drop
    bits = torch.empty((n + 3) // 4, dtype=torch.int64).random_(-2**63, None)
    kept = bits.view(torch.int16)[:n].view(x.shape) >= drop - 32768
    return x * kept * (65536 / (65536 - drop))


def attention(q: Tensor, k: Tensor, v: Tensor, p: float = 0.0) -> Tensor:
    """softmax(q k^T / sqrt(hs) + causal mask) v with :func:`dropout` p on the weights.

    q (B, nh, T, hs), k and v (B, nh, S, hs) with S >= T: query i is token S - T + i and sees
    keys 0..S - T + i. The unfused ``scaled_dot_product_attention``, used in CPU training with
    attention dropout, where torch's fused CPU kernel falls back to this same computation
    with its slower dropout.
    """
    T, S = q.shape[-2], k.shape[-2]
    if S < T:
        raise ValueError(f"attention needs at least as many keys as queries, found {S} < {T}")
    scores = (q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5  # (B, nh, T, S)
    if T > 1:
        seen = torch.ones(T, S, dtype=torch.bool, device=q.device).tril(S - T)
        scores = scores.masked_fill(~seen, float("-inf"))
    return dropout(scores.softmax(dim=-1), p) @ v


# -------------------------------------------------------------------------------- modules
class Dropout(nn.Module):
    """:func:`dropout` as a module (no state: checkpoints are those of ``nn.Dropout``)."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        return dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention with one fused qkv projection (GPT-2)."""

    def __init__(self, dim: int, n_head: int, dropout: float = 0.0, bias: bool = True,
                 attn_dropout: float | None = None) -> None:
        """dropout: of the output projection; attn_dropout: of the attention weights (None:
        the same, as GPT-2)."""
        super().__init__()
        self.n_head = n_head
        self.qkv = nn.Linear(dim, 3 * dim, bias=bias)
        self.proj = nn.Linear(dim, dim, bias=bias)
        self.dropout = dropout if attn_dropout is None else attn_dropout
        self.resid_drop = Dropout(dropout)

    def forward(self, x: Tensor, rope: tuple[Tensor, Tensor] | None = None,
                cache: KVCache | None = None, layer: int = 0) -> Tensor:
        """x (B, T, D) -> (B, T, D). With a cache, x are the T tokens after the cached ones."""
        B, T, D = x.shape
        nh = self.n_head
        q, k, v = self.qkv(x).split(D, dim=2)
        q, k, v = (t.view(B, T, nh, D // nh).transpose(1, 2) for t in (q, k, v))  # (B, nh, T, hs)
        if rope is not None:
            q, k = apply_rotary(q, *rope), apply_rotary(k, *rope)
        past = 0
        if cache is not None:
            past = cache.length(layer)
            k, v = cache.update(layer, k, v)  # (B, nh, past+T, hs)
        drop = self.dropout if self.training else 0.0
        if drop > 0.0 and x.device.type == "cpu":
            y = attention(q, k, v, drop)
        elif past == 0:
            y = F_.scaled_dot_product_attention(q, k, v, dropout_p=drop, is_causal=True)
        elif T == 1:  # one new token sees every cached one
            y = F_.scaled_dot_product_attention(q, k, v, dropout_p=drop)
        else:  # new token i sees the cache and new tokens 0..i
            mask = torch.ones(T, past + T, dtype=torch.bool, device=x.device).tril(past)
            y = F_.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=drop)
        y = y.transpose(1, 2).reshape(B, T, D)  # (B, T, D)
        return self.resid_drop(self.proj(y))


class MLP(nn.Module):
    """Linear(D, r D) -> GELU -> Linear(r D, D) -> dropout (GPT-2: the tanh GELU)."""

    def __init__(self, dim: int, ratio: float, dropout: float, bias: bool,
                 approximate: str = "tanh") -> None:
        super().__init__()
        hidden = int(dim * ratio)
        self.fc = nn.Linear(dim, hidden, bias=bias)
        self.act = nn.GELU(approximate=approximate)
        self.proj = nn.Linear(hidden, dim, bias=bias)
        self.drop = Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop(self.proj(self.act(self.fc(x))))


class Block(nn.Module):
    """Pre-LayerNorm decoder block: x + attn(ln1(x)), then x + mlp(ln2(x))."""

    def __init__(self, dim: int, n_head: int, mlp_ratio: float, dropout: float,
                 bias: bool, approximate: str = "tanh", attn_dropout: float | None = None) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(dim)
        self.attn = CausalSelfAttention(dim, n_head, dropout, bias, attn_dropout)
        self.ln2 = nn.LayerNorm(dim)
        self.mlp = MLP(dim, mlp_ratio, dropout, bias, approximate)

    def forward(self, x: Tensor, rope: tuple[Tensor, Tensor] | None = None,
                cache: KVCache | None = None, layer: int = 0) -> Tensor:
        x = x + self.attn(self.ln1(x), rope, cache, layer)
        return x + self.mlp(self.ln2(x))


class FluidGPT(nn.Module):
    """Next-step predictor of all particles, conditioned on the case conditions.

    Call with states (B, T, P, F) of steps start..start+T-1 and conditions (B, K); returns
    (B, T, P, F_out): output t predicts step start+t+1. F_out = F, or F + K for the paper's
    whole-token output (``config.predict_conditions``), whose condition slots are only there
    for the loss. With a :class:`KVCache`, pass only the steps after the cached ones and
    ``start`` = the first of them; the cache is filled in place.
    """

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = cfg = config
        P, F, K, D = cfg.n_particles, cfg.n_features, cfg.n_conditions, cfg.width
        approximate = "tanh" if cfg.activation == "gelu_tanh" else "none"
        if cfg.layout == "particle":
            P = 1  # one particle per sequence
        self._tokens_per_step = P
        if cfg.embedding == "linear":
            self.state_embed = nn.Linear(P * F, D)
            self.cond_embed = nn.Sequential(nn.Linear(K, D), nn.GELU(approximate=approximate),
                                            nn.Linear(D, D))
        n_pos = cfg.max_steps + cfg.prefix
        index = torch.arange(n_pos)
        if cfg.positions == "learned":
            self.pos_embed = nn.Embedding(n_pos, D)
        elif cfg.positions in ("sinusoidal", "trphysx"):
            table = sinusoidal_positions(index, D, trphysx=cfg.positions == "trphysx")
            self.register_buffer("pos_table", table, persistent=False)  # (n_pos, D)
        else:
            cos, sin = rotary_tables(index, D // cfg.n_head)
            self.register_buffer("rope_cos", cos, persistent=False)  # (n_pos, hs/2)
            self.register_buffer("rope_sin", sin, persistent=False)
        self.drop = Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(
            Block(D, cfg.n_head, cfg.mlp_ratio, cfg.dropout, cfg.bias, approximate,
                  cfg.attn_dropout) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(D)
        self.head = nn.Linear(D, P * cfg.out_features)
        self.apply(self._init_weights)
        for name, p in self.named_parameters():  # GPT-2: residual projections scaled by depth
            if name.endswith("attn.proj.weight") or name.endswith("mlp.proj.weight"):
                nn.init.normal_(p, std=0.02 / math.sqrt(2 * cfg.n_layer))

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, std=0.02)

    @classmethod
    def from_preset(cls, name: str, **overrides) -> FluidGPT:
        return cls(GPTConfig.from_preset(name, **overrides))

    # -------------------------------------------------------------------------- forward
    def _check_inputs(self, states: Tensor, conditions: Tensor, start: int,
                      cache: KVCache | None) -> None:
        cfg = self.config
        P, F, K = cfg.n_particles, cfg.n_features, cfg.n_conditions
        if cfg.layout == "particle":  # any number of particles: each is its own sequence
            P = states.shape[2] if states.ndim == 4 else P
        if states.ndim != 4 or tuple(states.shape[2:]) != (P, F):
            raise ValueError(f"states must be (B, T, P, F) = (B, T, {P}, {F}), found "
                             f"{tuple(states.shape)}")
        if conditions.shape != (states.shape[0], K):
            raise ValueError(f"conditions must be (B, K) = ({states.shape[0]}, {K}), found "
                             f"{tuple(conditions.shape)}")
        last = start + states.shape[1] - 1
        if start < 0 or last >= cfg.max_steps:
            raise ValueError(f"steps {start}..{last} are outside the {cfg.max_steps} positions "
                             "of this network (config.max_steps)")
        if cache is not None:
            if cfg.context:
                raise ValueError("a KV cache cannot be used with a sliding context "
                                 f"(config.context={cfg.context}): positions restart in every "
                                 "window")
            if cache.length() != start + (cfg.prefix if start > 0 else 0):
                raise ValueError(f"the cache holds {cache.length()} tokens, which does not "
                                 f"match start={start} (expected {start + cfg.prefix} after "
                                 "the first call, 0 before it)")

    def forward(self, states: Tensor, conditions: Tensor, start: int = 0,
                cache: KVCache | None = None) -> Tensor:
        """states (B, T, P, F), conditions (B, K) -> next steps (B, T, P, F_out)."""
        self._check_inputs(states, conditions, start, cache)
        cfg = self.config
        if cfg.layout == "particle":  # every particle its own sequence: (B P, T, 1, F)
            B, T, P, F = states.shape
            flat = states.transpose(1, 2).reshape(B * P, T, 1, F)
            out = self._forward(flat, conditions.repeat_interleave(P, dim=0), start, cache)
            return out.reshape(B, P, T, -1).transpose(1, 2)  # (B, T, P, F_out)
        return self._forward(states, conditions, start, cache)

    def _forward(self, states: Tensor, conditions: Tensor, start: int,
                 cache: KVCache | None) -> Tensor:
        """The network on (B', T, P', F) with P' = P (layout "case") or 1 ("particle")."""
        cfg = self.config
        B, T, P, F = states.shape
        if cfg.embedding == "raw":
            x = particle_tokens(states, conditions)  # (B, T, D)
        else:
            x = self.state_embed(states.flatten(2))  # (B, T, D)
            if cfg.conditioning == "add":
                x = x + self.cond_embed(conditions)[:, None]
        index = torch.arange(start, start + T, device=x.device) + cfg.prefix
        prefixed = cfg.prefix and (cache is None or cache.length() == 0)
        if prefixed:
            x = torch.cat([self.cond_embed(conditions)[:, None], x], dim=1)  # (B, 1+T, D)
            index = torch.cat([index.new_zeros(1), index])
        rope = None
        if cfg.positions == "learned":
            x = x + self.pos_embed(index)
        elif cfg.positions == "rotary":
            rope = (self.rope_cos[index], self.rope_sin[index])
        else:
            x = x + self.pos_table[index].to(x.dtype)
        x = self.drop(x)
        for i, block in enumerate(self.blocks):
            x = block(x, rope, cache, i)
        out = self.head(self.ln_f(x))  # (B, prefix+T, P*F_out)
        if prefixed:
            out = out[:, 1:]  # the conditioning token predicts no step
        out = out.reshape(B, T, P, cfg.out_features)  # (B, T, P, F_out)
        if cfg.residual:
            out = torch.cat([out[..., :F] + states, out[..., F:]], dim=-1)
        return out

    # --------------------------------------------------------------------- optimisation
    def no_weight_decay(self) -> set[str]:
        """Biases, norms and the position table are not decayed."""
        return {n for n, p in self.named_parameters() if p.ndim < 2 or n.startswith("pos_embed")}

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
