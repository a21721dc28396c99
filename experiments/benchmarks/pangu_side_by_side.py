"""geoformer and NVIDIA physicsnemo's Pangu side by side, in one process: prints JSON lines
and a table, asserts nothing. Run it alone (nothing else on the machine):

    .venv/bin/python experiments/benchmarks/pangu_side_by_side.py [--repeats 5] [--no-memory]

Both networks at 1.5 deg (121 x 240, 13 levels), window 2 x 6 x 10 (so neither pads
longitude), the same layer sizes (30,144,009 parameters each), batch 1, fp32, on the CPU
with torch's default threads. Timed calls alternate between the two (the order flips every
round), one warm-up round first; the figures are medians. Measured:

* forward (inference, no_grad) and training step (forward, L1 loss, backward, AdamW), of
  geoformer as it is and through ``torch.compile`` (its compiling is the warm-up round);
* geoformer with its linear layers on ``F.linear`` (``geoformer-aten``: MKL's sgemm, as
  physicsnemo's ``nn.Linear``) instead of oneDNN (``geoformer.linear``), alternating too;
* the arithmetic of one forward, counted by ``torch.utils.flop_counter`` on the explicit
  attention of both networks, and the forward's achieved FLOP/s as a fraction of this
  machine's fp32 matmul rate: the median ``torch.mm`` of 4096 x 4096 matrices (MKL), and the
  same product through oneDNN, same threads (on AMD CPUs MKL's rate is about half oneDNN's);
* with memory on (default): the peak resident memory of a geoformer training step with and
  without activation checkpointing, and of physicsnemo's, each in a fresh process (its
  ``VmHWM``, and the increase over the resident memory just before the first step).

physicsnemo is installed by ``make bench`` (``pip install nvidia-physicsnemo``); without it
only geoformer's rows are printed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import torch

GRID, WINDOW = (121, 240), (2, 6, 10)


def _geoformer(**overrides):
    from geoformer import GeoFormer, GeoFormerConfig

    return GeoFormer(GeoFormerConfig.from_preset("pangu-1.5", **overrides))


def _physicsnemo():
    try:
        from physicsnemo.models.pangu import Pangu
    except ImportError:
        return None
    return Pangu(img_size=GRID, window_size=WINDOW)


def _has_physicsnemo() -> bool:
    import importlib.util

    return importlib.util.find_spec("physicsnemo") is not None


def _inputs() -> dict[str, tuple[torch.Tensor, ...]]:
    g = torch.Generator().manual_seed(0)
    upper = torch.randn(1, 5, 13, *GRID, generator=g)
    surface = torch.randn(1, 4, *GRID, generator=g)
    constants = torch.randn(1, 3, *GRID, generator=g)
    # physicsnemo takes one tensor: surface, the three constant masks, then upper air
    stacked = torch.cat([surface, constants, upper.flatten(1, 2)], dim=1)
    return {"geoformer": (upper, surface), "physicsnemo": (stacked,)}


def _step_fn(model: torch.nn.Module, args: tuple[torch.Tensor, ...]) -> Callable[[], None]:
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step() -> None:
        out = model(*args)
        loss = sum(o.abs().mean() for o in out)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return step


def _forward_fn(model: torch.nn.Module, args: tuple[torch.Tensor, ...]) -> Callable[[], None]:
    def forward() -> None:
        with torch.no_grad():
            model(*args)
    return forward


def _base(name: str) -> str:
    """The network a timed entry runs: geoformer-compiled and geoformer-aten are geoformer."""
    return "physicsnemo" if name == "physicsnemo" else "geoformer"


def _alternate(fns: dict[str, Callable[[], None]], repeats: int) -> dict[str, list[float]]:
    """Seconds of each call, alternating between the functions (one warm-up round)."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    names = list(fns)
    for r in range(repeats + 1):
        for name in names if r % 2 == 0 else names[::-1]:
            t0 = time.perf_counter()
            fns[name]()
            if r:
                times[name].append(time.perf_counter() - t0)
    return times


def matmul_rate(repeats: int = 7, n: int = 4096, onednn: bool = False) -> float:
    """The machine's fp32 matmul rate, FLOP/s: median of ``torch.mm`` on n x n matrices, or
    of the same product through oneDNN (``geoformer.linear.linear``)."""
    from geoformer.linear import linear

    a, b = torch.randn(n, n), torch.randn(n, n)
    product = (lambda: linear(a, b)) if onednn else (lambda: torch.mm(a, b))
    product()
    seconds = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        product()
        seconds.append(time.perf_counter() - t0)
    return 2 * n**3 / statistics.median(seconds)


def _aten(fn: Callable[[], None]) -> Callable[[], None]:
    """``fn`` with geoformer's linear layers on ``F.linear``."""
    from geoformer.linear import use_onednn

    def call() -> None:
        with use_onednn(False):
            fn()
    return call


def forward_flops() -> dict[str, int]:
    """FLOPs of one forward, counted on the explicit attention (the SDPA kernel's count
    leaves out the bias), for both networks."""
    from torch.utils.flop_counter import FlopCounterMode

    inputs, out = _inputs(), {}
    for name, model in (("geoformer", _geoformer(attention="reference")),
                        ("physicsnemo", _physicsnemo())):
        if model is None:
            continue
        # under the counter geoformer's linear layers take F.linear, which it counts
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model.eval()(*inputs[name])
        out[name] = int(counter.get_total_flops())
    return out


def _status_mib(key: str) -> float:
    """A memory figure of this process from /proc/self/status, MiB. VmHWM, the peak
    resident set of this program's address space, starts afresh at exec (ru_maxrss would
    carry over the parent's peak)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    raise KeyError(key)


def _memory_child(kind: str) -> None:
    model = _physicsnemo() if kind == "physicsnemo" else _geoformer(
        checkpoint_activations=kind == "geoformer-checkpointed")
    args = _inputs()["physicsnemo" if kind == "physicsnemo" else "geoformer"]
    step = _step_fn(model.train(), args)
    before = _status_mib("VmRSS")
    step()
    step()
    peak = _status_mib("VmHWM")
    print(json.dumps({"bench": "train_step_memory", "model": kind, "peak_rss_mib": round(peak, 1),
                      "step_increase_mib": round(peak - before, 1)}))


def _memory(kinds: list[str]) -> list[dict]:
    rows = []
    for kind in kinds:
        done = subprocess.run([sys.executable, __file__, "--memory-child", kind],
                              capture_output=True, text=True, check=True)
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--no-memory", action="store_true")
    p.add_argument("--no-compile", action="store_true",
                   help="leave out the torch.compile'd geoformer (its compiling takes minutes)")
    p.add_argument("--no-aten", action="store_true",
                   help="leave out geoformer with its linear layers on F.linear (MKL)")
    p.add_argument("--memory-child", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.memory_child:
        return _memory_child(a.memory_child)
    threads = torch.get_num_threads()
    memory = [] if a.no_memory else _memory(
        ["geoformer", "geoformer-checkpointed", *(["physicsnemo"] if _has_physicsnemo() else [])])
    from geoformer.linear import onednn_enabled

    rate = matmul_rate()
    print(json.dumps({"bench": "matmul", "n": 4096, "threads": threads, "library": "torch.mm",
                      "gflop_per_s": round(rate / 1e9, 1)}), flush=True)
    rate_dnn = matmul_rate(onednn=True) if onednn_enabled() else None
    if rate_dnn:
        print(json.dumps({"bench": "matmul", "n": 4096, "threads": threads,
                          "library": "oneDNN", "gflop_per_s": round(rate_dnn / 1e9, 1)}),
              flush=True)
    flops = forward_flops()
    inputs = _inputs()
    models = {"geoformer": _geoformer()}
    if onednn_enabled() and not a.no_aten:  # the same model (its own AdamW in the steps)
        models["geoformer-aten"] = models["geoformer"]
    if not a.no_compile:  # the same network through torch.compile (`forecast --compile`)
        models["geoformer-compiled"] = _geoformer()
        models["geoformer-compiled"].load_state_dict(models["geoformer"].state_dict())
        models["geoformer-compiled"].compile()
    if (pn := _physicsnemo()) is not None:
        models["physicsnemo"] = pn
    rows = []
    for bench, make in (("forward", _forward_fn), ("train_step", _step_fn)):
        fns = {name: make(m.train(bench == "train_step"), inputs[_base(name)])
               for name, m in models.items()}
        if "geoformer-aten" in fns:
            fns["geoformer-aten"] = _aten(fns["geoformer-aten"])
        for name, seconds in _alternate(fns, a.repeats).items():
            row = {"bench": bench, "model": name, "grid": list(GRID), "window": list(WINDOW),
                   "threads": threads, "median_s": round(statistics.median(seconds), 4),
                   "runs_s": [round(s, 4) for s in seconds]}
            counted = flops.get(_base(name))
            if bench == "forward" and counted:
                row["gflop"] = round(counted / 1e9, 2)
                row["fraction_of_matmul_rate"] = round(counted / row["median_s"] / rate, 3)
                if rate_dnn:
                    row["fraction_of_onednn_rate"] = round(
                        counted / row["median_s"] / rate_dnn, 3)
            rows.append(row)
            print(json.dumps(row), flush=True)
    print(f"\nfp32 matmul rate: {rate / 1e9:.1f} GFLOP/s torch.mm"
          + (f", {rate_dnn / 1e9:.1f} GFLOP/s oneDNN" if rate_dnn else "")
          + f" ({threads} threads)")
    print(f"{'bench':<11} {'model':<19} {'median s':>9} {'GFLOP':>7} {'of mm':>6} "
          f"{'of oneDNN':>9}")
    median = {(r["bench"], r["model"]): r["median_s"] for r in rows}
    runs = {(r["bench"], r["model"]): r["runs_s"] for r in rows}
    for r in rows:
        share = f"{r['fraction_of_matmul_rate']:.0%}" if "gflop" in r else ""
        share_dnn = f"{r['fraction_of_onednn_rate']:.0%}" if "fraction_of_onednn_rate" in r else ""
        print(f"{r['bench']:<11} {r['model']:<19} {r['median_s']:>9.3f} "
              f"{r.get('gflop', ''):>7} {share:>6} {share_dnn:>9}")
    for bench in ("forward", "train_step"):
        for ours in ("geoformer", "geoformer-aten", "geoformer-compiled"):
            if (bench, "physicsnemo") in median and (bench, ours) in median:
                ratio = median[bench, ours] / median[bench, "physicsnemo"]
                # each round times both back to back: the median of the rounds' ratios is
                # less swayed by the machine's load drifting between rounds
                rounds = [a / b for a, b in zip(runs[bench, ours], runs[bench, "physicsnemo"])]
                print(json.dumps({"bench": f"{bench}_ratio", "model": ours,
                                  "geoformer_over_physicsnemo": round(ratio, 3),
                                  "median_of_round_ratios": round(statistics.median(rounds), 3),
                                  "round_ratios": [round(x, 3) for x in rounds]}))
    for r in memory:
        print(f"train step memory {r['model']:<23} peak {r['peak_rss_mib']:>8.0f} MiB, "
              f"step {r['step_increase_mib']:>7.0f} MiB")


if __name__ == "__main__":
    main()
