"""Baselines every trajectory/erosion model must beat.

* :class:`SequenceLSTM`: the paper's LSTM and BiLSTM: the first raw token (P (F + K)
  numbers) repeated T times through 4 stacked recurrent layers of width d, predicting the
  whole sequence of tokens in one pass (no feedback).
* :class:`NearestCase`: copy the trajectories and erosion of the closest training case in
  (scaled) condition space. A model that does not beat it has learned nothing; with a
  random split of the paper's replicated cases it is (nearly) perfect, which shows the leak.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .config import LSTMConfig
from .gpt import particle_tokens

__all__ = ["SequenceLSTM", "NearestCase"]


class SequenceLSTM(nn.Module):
    """LSTM / BiLSTM over T copies of the first token.

    Call with first (B, P, F), conditions (B, K) and the number of steps T; returns
    (B, T, P, F_out): the whole sequence, step 0 included (F_out = F + K with
    ``config.predict_conditions``, the paper's whole-token output).
    """

    def __init__(self, config: LSTMConfig) -> None:
        super().__init__()
        self.config = cfg = config
        dirs = 2 if cfg.bidirectional else 1
        self.lstm = nn.LSTM(cfg.token_size, cfg.width, num_layers=cfg.n_layer, batch_first=True,
                            bidirectional=cfg.bidirectional, dropout=cfg.dropout)
        self.head = nn.Linear(dirs * cfg.width, cfg.n_particles * cfg.out_features)

    @classmethod
    def from_preset(cls, name: str, **overrides) -> SequenceLSTM:
        return cls(LSTMConfig.from_preset(name, **overrides))

    def forward(self, first: Tensor, conditions: Tensor, steps: int) -> Tensor:
        """first (B, P, F), conditions (B, K) -> (B, steps, P, F_out)."""
        cfg = self.config
        P, F, K = cfg.n_particles, cfg.n_features, cfg.n_conditions
        if first.ndim != 3 or tuple(first.shape[1:]) != (P, F):
            raise ValueError(f"first step must be (B, P, F) = (B, {P}, {F}), found "
                             f"{tuple(first.shape)}")
        if conditions.shape != (first.shape[0], K):
            raise ValueError(f"conditions must be (B, K) = ({first.shape[0]}, {K}), found "
                             f"{tuple(conditions.shape)}")
        if steps < 1:
            raise ValueError(f"steps must be >= 1, found {steps}")
        B = first.shape[0]
        token = particle_tokens(first[:, None], conditions)  # (B, 1, P*(F+K))
        h, _ = self.lstm(token.expand(B, steps, cfg.token_size))  # (B, T, dirs*width)
        return self.head(h).reshape(B, steps, P, cfg.out_features)  # (B, T, P, F_out)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


class NearestCase:
    """Copy the outputs of the nearest training case in condition space.

    Distance: weighted Euclidean over the (already scaled) conditions; a weight of 0 drops a
    condition (e.g. the paper's two inert pressures). Ties go to the first training case.

    Args:
        weights: (K,) non-negative weight of each condition; all ones when None.
    """

    def __init__(self, weights: Sequence[float] | Tensor | None = None) -> None:
        self.weights = None if weights is None else torch.as_tensor(weights, dtype=torch.float32)
        if self.weights is not None and (self.weights < 0).any():
            raise ValueError("condition weights must be non-negative")
        self.conditions: Tensor | None = None
        self.outputs: dict[str, Tensor] = {}

    def fit(self, conditions: Tensor, **outputs: Tensor) -> NearestCase:
        """conditions (N, K) of the training cases, and any outputs with N leading, e.g.
        ``trajectories=(N, T, P, F)``, ``erosion=(N, faces)``."""
        if conditions.ndim != 2 or conditions.shape[0] == 0:
            raise ValueError(f"conditions must be (N, K) with N >= 1, found "
                             f"{tuple(conditions.shape)}")
        if self.weights is not None and self.weights.numel() != conditions.shape[1]:
            raise ValueError(f"{self.weights.numel()} weights for {conditions.shape[1]} "
                             "conditions")
        for name, value in outputs.items():
            if value.shape[0] != conditions.shape[0]:
                raise ValueError(f"{name} has {value.shape[0]} cases, conditions have "
                                 f"{conditions.shape[0]}")
        self.conditions = conditions.detach().float()
        self.outputs = {k: v.detach() for k, v in outputs.items()}
        return self

    def index(self, conditions: Tensor) -> Tensor:
        """conditions (B, K) -> (B,) index of the nearest training case."""
        if self.conditions is None:
            raise RuntimeError("NearestCase.fit() must be called before predicting")
        if conditions.ndim != 2 or conditions.shape[1] != self.conditions.shape[1]:
            raise ValueError(f"conditions must be (B, {self.conditions.shape[1]}), found "
                             f"{tuple(conditions.shape)}")
        train = self.conditions.to(conditions.device)
        w = 1.0 if self.weights is None else self.weights.to(conditions.device)
        # Direct differences, not cdist's matmul shortcut: an identical case is at exactly 0.
        d2 = ((conditions.float()[:, None] - train[None]).square() * w).sum(-1)  # (B, N)
        return d2.argmin(dim=1)  # the first of equal minima

    def predict(self, conditions: Tensor) -> dict[str, Tensor]:
        """conditions (B, K) -> {"index": (B,), and every fitted output indexed (B, ...)}."""
        idx = self.index(conditions)
        out = {name: v[idx.to(v.device)] for name, v in self.outputs.items()}
        out["index"] = idx
        return out
