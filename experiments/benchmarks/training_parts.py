"""Parts of geoformer's training step, timed against the way they were done before: prints
JSON lines, asserts nothing. Run it alone:

    .venv/bin/python experiments/benchmarks/training_parts.py [--rounds 15]

- window gathers (grid tokens into window slots and back, forward and backward): autograd's
  index gathers, whose backward is a scatter-add, against geoformer.model's gather pairs;
- the bias table's backward (a stage-2 table at 1.5 deg): indexing's index_put against the
  embedding gather's backward;
- one stage-1 attention layer at 1.5 deg, forward and backward with a bias that takes a
  gradient: SDPA (its unfused path) against baddbmm + softmax + bmm.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
import torch.nn.functional as F

from geoformer.attention import earth_position_index
from geoformer.model import _FromWindows, _ToWindows


def _alternate(fns: dict, rounds: int) -> dict[str, float]:
    times = {k: [] for k in fns}
    for r in range(rounds + 1):
        for k, f in (fns.items() if r % 2 else reversed(fns.items())):
            t = time.perf_counter()
            f()
            if r:
                times[k].append(time.perf_counter() - t)
    return {k: sorted(v)[len(v) // 2] * 1e3 for k, v in times.items()}


def windows(rounds: int) -> dict[str, float]:
    B, L, C, S = 1, 3840, 384, 4320  # stage 2 at 1.5 deg
    g = torch.Generator().manual_seed(0)
    into = torch.cat([torch.randperm(L, generator=g) + 1, torch.zeros(S - L, dtype=torch.long)])
    into = into[torch.randperm(S, generator=g)]
    back = torch.empty(L, dtype=torch.long)
    back[into[into > 0] - 1] = torch.nonzero(into > 0).flatten()
    x = torch.randn(B, L, C, requires_grad=True)

    def indexing():
        t = torch.cat([x.new_zeros(B, 1, C), x], 1)[:, into]
        (t * 1.0)[:, back].sum().backward()

    def gathers():
        _FromWindows.apply(_ToWindows.apply(x, into, back) * 1.0, into, back).sum().backward()
    return _alternate({"index": indexing, "gather_pair": gathers}, rounds)


def bias_backward(rounds: int) -> dict[str, float]:
    rows, types, heads = 2736, 12, 12
    index = earth_position_index((2, 6, 10))
    table = torch.randn(rows, types, heads, requires_grad=True)

    def indexing():
        table[index.reshape(-1)].sum().backward()

    def embedding():
        F.embedding(index, table.view(rows, -1)).sum().backward()
    return _alternate({"index": indexing, "embedding": embedding}, rounds)


def attention(rounds: int) -> dict[str, float]:
    Bl, T, nh, N, hs = 6, 24, 6, 120, 32  # stage 1 at 1.5 deg
    q, k, v = (torch.randn(Bl, T * nh, N, hs, requires_grad=True) for _ in range(3))
    bias = torch.randn(1, T * nh, N, N, requires_grad=True)
    scale = hs**-0.5

    def sdpa():
        F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=scale).sum().backward()

    def baddbmm():
        logits = torch.baddbmm(bias.expand(Bl, -1, -1, -1).reshape(-1, N, N),
                               q.reshape(-1, N, hs), k.reshape(-1, N, hs).transpose(1, 2),
                               alpha=scale)
        logits.softmax(-1).bmm(v.reshape(-1, N, hs)).sum().backward()
    return _alternate({"sdpa": sdpa, "baddbmm": baddbmm}, rounds)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=15)
    a = p.parse_args()
    for name, fn in (("window_gathers", windows), ("bias_backward", bias_backward),
                     ("attention_fwd_bwd", attention)):
        row = {"bench": name, "threads": torch.get_num_threads(),
               **{f"{k}_ms": round(v, 2) for k, v in fn(a.rounds).items()}}
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
