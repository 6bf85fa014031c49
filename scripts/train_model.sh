#!/usr/bin/env bash
# Trains, calibrates and ships one detector model; the three shipped models are made by
# scripts/train_textured.sh, scripts/train_height.sh and scripts/train_default.sh, which run this
# script with their settings (in that order: the default links the other two, and its profile
# switch is calibrated with the textured model in place).
# Environment: WIDTH (U-Net first width), MINUTES (optimisation budget), EXTRA (more `particlesnn
# train` options), DEST (shipped model folder), SET (config.json keys written before calibration),
# SETS (the real sets of ../shared/real to train on; default "nuclei-dev stem-dev").
# Data: particlesnn.synth presets + the built-in generator (3000 images made in the background),
# plus the training parts of ../shared/real/nuclei-dev (every 4th sorted id is held out for
# validation) and ../shared/real/stem-dev (Cu*, Ru*; boxes as weak ellipse labels; Pd* held out)
# when present. After training: decoding thresholds per profile, then the profile switch
# (particlesnn.training.calibrate; training parts of ../shared/real and synthetic images, 3-10 min).
# Usage: WIDTH=.. MINUTES=.. DEST=.. scripts/train_model.sh RUN_DIR   (RUN_DIR git-ignored: build/...)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
RUN=${1:?usage: scripts/train_model.sh RUN_DIR}
WIDTH=${WIDTH:-8}
MINUTES=${MINUTES:-40}
EXTRA=${EXTRA:-}
DEST=${DEST:?DEST (the shipped model folder) must be set}
SET=${SET:-}
DATA=()
for SET_NAME in ${SETS:-nuclei-dev stem-dev}; do
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
# name and links first: the switch calibration runs the textured profile on the linked model
# shellcheck disable=SC2086  # SET holds several KEY=VALUE words
[ -z "$SET" ] || "$PY" scripts/set_config.py "$RUN/config.json" $SET
PYTHONPATH=src "$PY" -W ignore -m particlesnn.training.calibrate "$RUN"
mkdir -p "$DEST"
cp "$RUN/model.onnx" "$RUN/config.json" "$RUN/thresholds.json" "$RUN/weights.npz" "$DEST/"
echo "shipped model written to $DEST"
