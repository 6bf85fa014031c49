#!/usr/bin/env bash
# Reproduces the shipped height-map detector src/particlesnn/model/weights/height/ (about
# 52 min on 2 CPU cores: ~1 min making the 3000 synthetic images with 2 processes, 45 min of
# optimisation (torch.compile), ~1 min export, ~3 min calibration).
# Same data and recipe as scripts/train_default.sh, but a U-Net twice as wide (16-32-64-128,
# 482 k parameters) with --pool-first --compile (13,144 steps in the shipped run). The shipped
# default model hands height maps in nm to this one (its config.json: "height_model": "height").
# Usage: scripts/train_height.sh [RUN_DIR]   (default build/train-height, git-ignored)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
RUN=${1:-build/train-height}
DATA=()
for SET in nuclei-dev stem-dev; do
  if [ -d "../shared/real/$SET" ]; then
    DATA+=(--data "../shared/real/$SET")
  else
    echo "../shared/real/$SET not found: training without it"
  fi
done
PYTHONPATH=src "$PY" -W ignore -m particlesnn train "${DATA[@]}" --out "$RUN" \
  --minutes 45 --n-synth 3000 --batch 8 --crop 160 --width 16 --lr 3e-3 --threads 2 --seed 0 \
  --pool-first --compile
PYTHONPATH=src "$PY" -W ignore -m particlesnn.training.calibrate "$RUN"
DEST=src/particlesnn/model/weights/height
mkdir -p "$DEST"
cp "$RUN/model.onnx" "$RUN/config.json" "$RUN/thresholds.json" "$RUN/weights.npz" "$DEST/"
"$PY" scripts/set_config.py "$DEST/config.json" name=particlesnn-unet-height
echo "shipped height-map model written to $DEST"
