#!/usr/bin/env bash
# Reproduces the shipped detector src/particlesnn/model/weights/default/ (about 55 min on 2 CPU
# cores: 40 min of optimisation while 3000 synthetic images are generated in the background,
# ~1 min loading, ~1 min validation and export, ~10 min calibration of the decoding thresholds
# per profile and of the profile switch (particlesnn.training.calibrate)).
# Data: particlesnn.synth presets + the built-in generator, plus the training parts of
# ../shared/real/nuclei-dev (every 4th sorted id is held out for validation) and
# ../shared/real/stem-dev (Cu*, Ru*; boxes as weak ellipse labels; Pd* held out) when present.
# Usage: scripts/train_default.sh [RUN_DIR]   (default build/train-default, git-ignored); then it copies the model.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
RUN=${1:-build/train-default}
DATA=()
for SET in nuclei-dev stem-dev; do
  if [ -d "../shared/real/$SET" ]; then
    DATA+=(--data "../shared/real/$SET")
  else
    echo "../shared/real/$SET not found: training without it"
  fi
done
PYTHONPATH=src "$PY" -W ignore -m particlesnn train "${DATA[@]}" --out "$RUN" \
  --minutes 40 --n-synth 3000 --batch 8 --crop 160 --width 8 --lr 3e-3 --threads 2 --seed 0
# decoding thresholds per profile, then the profile switch (training parts of ../shared/real
# and synthetic images; ~10 min)
PYTHONPATH=src "$PY" -W ignore -m particlesnn.training.calibrate "$RUN"
DEST=src/particlesnn/model/weights/default
mkdir -p "$DEST"
cp "$RUN/model.onnx" "$RUN/config.json" "$RUN/thresholds.json" "$RUN/weights.npz" "$DEST/"
# height maps in nm go to the shipped height-map model (scripts/train_height.sh)
"$PY" scripts/set_config.py "$DEST/config.json" height_model=height
echo "shipped model written to $DEST"
