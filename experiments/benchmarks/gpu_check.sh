#!/usr/bin/env bash
# The GPU checks in one go (the GPU tests, then the speed benchmarks), for a machine with a
# CUDA device and a Python that has torch, lightning, xarray and pytest:
#     bash experiments/benchmarks/gpu_check.sh [OUTDIR]
# Writes gpu_tests.log, geoformer_speed.jsonl and fluidgpt_speed.jsonl into OUTDIR (default .).
set -u
out=${1:-.}
py=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
$py -c "import torch, lightning; print('torch', torch.__version__, 'lightning', lightning.__version__)"

echo "== GPU tests"
timeout 300 $py -m pytest -q -p no:cacheprovider -m gpu tests/test_gpu.py 2>&1 | tee "$out/gpu_tests.log"

echo "== geoformer speed"
bench() { timeout 200 $py experiments/benchmarks/geoformer_speed.py --repeats 3 "$@" \
          | $py -c "import json,sys; print(json.dumps(json.load(sys.stdin)))" \
          | tee -a "$out/geoformer_speed.jsonl"; }
bench --preset pangu --precision bf16 --checkpointing
bench --preset pangu --precision bf16
bench --preset pangu --precision fp32 --checkpointing
bench --preset pangu-1.5 --precision bf16 --batch 8
bench --preset pangu-5.625 --precision bf16 --batch 32

echo "== fluidgpt speed"
timeout 200 $py experiments/benchmarks/fluidgpt_speed.py --precision bf16 | tee -a "$out/fluidgpt_speed.jsonl"
timeout 120 $py experiments/benchmarks/fluidgpt_speed.py --precision fp32 --models paper,fluidgpt \
    | tee -a "$out/fluidgpt_speed.jsonl"
echo "== done"
