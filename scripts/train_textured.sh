#!/usr/bin/env bash
# Reproduces the shipped textured-profile detector src/particlesnn/model/weights/textured/ (the
# default until 2026-12-03; about 55 min on 2 CPU cores: 40 min of optimisation while 3000
# synthetic images are generated in the background, ~1 min export, ~10 min calibration).
# A U-Net 8-16-32-64 (121 k parameters), a quarter of the crops from the real training parts.
# The shipped default runs the textured profile (small particles on a lumpy support) on it.
# Usage: scripts/train_textured.sh [RUN_DIR]   (default build/train-textured, git-ignored)
set -euo pipefail
cd "$(dirname "$0")/.."
WIDTH=8 MINUTES=40 DEST=src/particlesnn/model/weights/textured \
  SET="name=particlesnn-unet-textured" exec scripts/train_model.sh "${1:-build/train-textured}"
