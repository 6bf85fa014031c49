#!/usr/bin/env bash
# Reproduces the shipped detector src/particlesnn/model/weights/default/ (about 55 min on 2 CPU
# cores: 40 min of optimisation while 3000 synthetic images are generated in the background,
# ~1 min loading, ~1 min validation and export, ~10 min calibration of the decoding thresholds
# per profile and of the profile switch (particlesnn.training.calibrate)).
# Data: particlesnn.synth presets + the built-in generator, plus the training parts of
# ../shared/real/nuclei-dev (every 4th sorted id is held out for validation) and
# ../shared/real/stem-dev (Cu*, Ru*; boxes as weak ellipse labels; Pd* held out) when present.
# Usage: scripts/train_default.sh [RUN_DIR]   (default build/train-default, git-ignored); then it copies the model.
# scripts/train_height.sh runs this script with other settings (WIDTH, MINUTES, EXTRA, DEST, SET).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
RUN=${1:-build/train-default}
WIDTH=${WIDTH:-8}
MINUTES=${MINUTES:-40}
EXTRA=${EXTRA:-}
DEST=${DEST:-src/particlesnn/model/weights/default}
# height maps in nm go to the shipped height-map model (scripts/train_height.sh)
SET=${SET:-height_model=height}
DATA=()
for SET_NAME in nuclei-dev stem-dev; do
  if [ -d "../shared/real/$SET_NAME" ]; then
    DATA+=(--data "../shared/real/$SET_NAME")
  else
    echo "../shared/real/$SET_NAME not found: training without it"
  fi
done
# shellcheck disable=SC2086  # EXTRA holds several options
PYTHONPATH=src "$PY" -W ignore -m particlesnn train "${DATA[@]}" --out "$RUN" \
  --minutes "$MINUTES" --n-synth 3000 --batch 8 --crop 160 --width "$WIDTH" --lr 3e-3 --threads 2 \
  --seed 0 $EXTRA
# decoding thresholds per profile, then the profile switch (training parts of ../shared/real
# and synthetic images; ~10 min)
PYTHONPATH=src "$PY" -W ignore -m particlesnn.training.calibrate "$RUN"
mkdir -p "$DEST"
cp "$RUN/model.onnx" "$RUN/config.json" "$RUN/thresholds.json" "$RUN/weights.npz" "$DEST/"
"$PY" scripts/set_config.py "$DEST/config.json" $SET
echo "shipped model written to $DEST"
