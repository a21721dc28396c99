"""The benchmark suite in one command: ``make bench`` (or
``.venv/bin/python experiments/benchmarks/run.py [--output bench.jsonl] [--only NAME ...]``).

Runs every benchmark script of this folder in turn, each in its own process, streams what it
prints, keeps its JSON lines (with the benchmark's name, the date and the machine) in
``--output``, and ends with a table of the figures the performance goals are set on, next to
the goals (docs/benchmarks.md). Nothing is asserted: a benchmark is a measurement. Run it
alone, with nothing else on the machine; it takes about half an hour on 2 cores. On a machine
with a CUDA device the GPU section (``gpu_check.sh``: the GPU tests and the 0.25 deg
benchmarks) runs too.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
PY = sys.executable

#: name -> the command (run from the repository root)
SUITE: dict[str, list[str]] = {
    "pangu_side_by_side": [PY, str(HERE / "pangu_side_by_side.py")],
    "training_parts": [PY, str(HERE / "training_parts.py")],
    "data_pipeline": [PY, str(HERE / "data_pipeline.py"), "--workers", "0", "2"],
    "forecast_memory": [PY, str(HERE / "forecast_memory.py"), "--inits", "1", "8"],
    "evaluate_memory": [PY, str(HERE / "evaluate_memory.py"), "--repeats", "3"],
    "fluidgpt_speed": [PY, str(HERE / "fluidgpt_speed.py"), "--models",
                       "fluidgpt,paper-bilstm"],
}


def _machine() -> dict:
    import torch

    return {"date": dt.date.today().isoformat(), "host": platform.node(),
            "cpus": os.cpu_count(), "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None}


def run(name: str, command: list[str], machine: dict, out) -> list[dict]:
    """Run one benchmark, echoing its output; its JSON lines, tagged."""
    print(f"\n== {name}: {' '.join(Path(c).name if c == PY else c for c in command)}",
          flush=True)
    rows = []
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True,
                          cwd=HERE.parents[1]) as proc:
        for line in proc.stdout:
            print(line, end="", flush=True)
            if line.startswith("{"):
                try:
                    row = {"suite": name, **json.loads(line), **machine}
                except json.JSONDecodeError:
                    continue
                rows.append(row)
                out.write(json.dumps(row) + "\n")
                out.flush()
    if proc.returncode:
        print(f"!! {name} exited with status {proc.returncode}", flush=True)
    return rows


def _pick(rows: list[dict], **match) -> dict | None:
    found = [r for r in rows if all(r.get(k) == v for k, v in match.items())]
    return found[-1] if found else None


def summary(rows: list[dict]) -> list[tuple[str, str, str]]:
    """(figure, measured, goal) for the goals of docs/benchmarks.md that these rows measure."""
    out = []

    def add(what: str, value: float | None, fmt: str, goal: str) -> None:
        if value is not None:
            out.append((what, format(value, fmt), goal))

    for ours, label in (("geoformer", ""), ("geoformer-aten", " (F.linear)"),
                        ("geoformer-compiled", " (torch.compile)")):
        for bench, what, goal in (("forward", "forward", "<= 0.75"),
                                  ("train_step", "training step", "<= 0.80")):
            ratio = _pick(rows, bench=f"{bench}_ratio", model=ours)
            add(f"{what}, geoformer{label} / physicsnemo (1.5 deg, CPU), median of rounds",
                ratio and ratio.get("median_of_round_ratios"), ".3f", goal)
        fwd = _pick(rows, bench="forward", model=ours)
        add(f"forward{label}, fraction of the fp32 matmul rate (torch.mm)", fwd and fwd.get(
            "fraction_of_matmul_rate"), ".1%", ">= 75%")
        add(f"forward{label}, fraction of oneDNN's fp32 matmul rate", fwd and fwd.get(
            "fraction_of_onednn_rate"), ".1%", "(reported)")
    pipe = _pick(rows, suite="data_pipeline", reader="chunk files", workers=2)
    add("training pairs served, 2 workers (samples/s)", pipe and pipe["samples_per_s"],
        ".1f", ">= 100")
    one = _pick(rows, suite="forecast_memory", mode="streamed", initial_times=1)
    eight = _pick(rows, suite="forecast_memory", mode="streamed", initial_times=8)
    add("forecast peak RSS, 8 inits / 1 init", one and eight and
        eight["peak_rss_mib"] / one["peak_rss_mib"], ".3f", "<= 1.2")
    ratio = _pick(rows, suite="evaluate_memory", bench="ratio")
    add("evaluate peak RSS, 4x store / 1x", ratio and ratio.get("rss_ratio_4x_vs_1x"), ".3f",
        "<= 1.2")
    add("evaluate wall time / reading its inputs, 4x store (median of 3 pairs)",
        ratio and ratio.get("time_ratio_4x"), ".2f", "<= 3")
    gpt = _pick(rows, suite="fluidgpt_speed", model="fluidgpt")
    add("GPT rollout, recompute / KV cache (196 particles, 50 steps)", gpt and gpt.get(
        "rollout_recompute_s") and gpt["rollout_recompute_s"] / gpt["rollout_s"], ".2f",
        ">= 3")
    bilstm = _pick(rows, suite="fluidgpt_speed", model="paper-bilstm")
    add("training epoch, GPT / BiLSTM (s / s)", gpt and bilstm and
        gpt["epoch_s"] / bilstm["epoch_s"], ".2f", "(reported)")
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--output", type=Path, default=Path("bench.jsonl"))
    p.add_argument("--only", nargs="+", choices=sorted(SUITE), help="run only these")
    a = p.parse_args()
    machine, rows = _machine(), []
    with a.output.open("a") as out:
        for name in a.only or SUITE:
            rows += run(name, SUITE[name], machine, out)
        if machine["cuda"] and not a.only:
            print("\n== GPU section: gpu_check.sh", flush=True)
            subprocess.run(["bash", str(HERE / "gpu_check.sh"), str(a.output.parent / "gpu")],
                           cwd=HERE.parents[1], env={**os.environ, "PYTHON": PY})
    table = summary(rows)
    width = max((len(t[0]) for t in table), default=10)
    print(f"\n{'figure':<{width}}  {'measured':>9}  goal")
    for what, value, goal in table:
        print(f"{what:<{width}}  {value:>9}  {goal}")
    print(f"\nJSON lines appended to {a.output}")


if __name__ == "__main__":
    main()
