"""Train only the erosion stage on the true CFD trajectories of an experiment's split (the
"cnn" row of ``fluidgpt compare``) and print its held-out erosion scores, next to the
zero-map and nearest-training-case baselines.

    OMP_NUM_THREADS=1 .venv/bin/python experiments/fluidgpt/erosion_cfd.py \
        --config experiments/fluidgpt/demo.yaml [--section.key=value ...]
"""

from __future__ import annotations

import argparse
import time

import torch

from fluidgpt.casetensors import case_tensors
from fluidgpt.compare import (
    _erosion_scores,
    _nearest,
    erosion_job,
    load_data,
    load_experiment,
    run_job,
    split_kinds,
    split_of,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="experiments/fluidgpt/demo.yaml")
    parser.add_argument("--split", default=None, choices=("interior", "block", "random"))
    args, overrides = parser.parse_known_args()  # the rest: --section.key=value
    torch.set_num_threads(1)
    config = load_experiment(args.config, overrides)
    kinds = split_kinds(args.split or config.split.kind)
    kind = kinds[0]
    if len(kinds) > 1:
        print(f"the config names the splits {kinds}; scoring on the first, {kind} "
              "(--split to choose)")
    ds = load_data(config)
    data = case_tensors(ds, config.data.conditions)
    split = split_of(ds, config, kind)
    truth = data.subset(split.test)
    init = config.erosion.model["init_args"]
    print(f"{split.description}; erosion model {init['model']}, train {init['train']}")
    start = time.perf_counter()
    result = run_job(erosion_job(config, data, split, None, None, "cfd"))
    seconds = time.perf_counter() - start
    scores = _erosion_scores(result.prediction, truth, result.magnitude_head, result.peak)
    print(f"cnn on CFD trajectories ({result.epochs} epochs, {seconds:.0f} s): "
          + ", ".join(f"{k} {v:.3f}" for k, v in scores.items()))
    own_max = _erosion_scores(result.prediction, truth, result.magnitude_head)
    print("  the same maps each divided by its own maximum instead of the predicted peak: "
          + ", ".join(f"{k} {v:.3f}" for k, v in own_max.items()))
    nearest, _ = _nearest(data, split)
    print("nearest: " + ", ".join(
        f"{k} {v:.3f}" for k, v in _erosion_scores(nearest["erosion"], truth, True).items()))
    zero = torch.zeros_like(truth.erosion)
    print("zero map: " + ", ".join(
        f"{k} {v:.3f}" for k, v in _erosion_scores(zero, truth, False).items()))


if __name__ == "__main__":
    main()
