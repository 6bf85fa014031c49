#!/usr/bin/env bash
# Reproduces the shipped height-map detector src/particlesnn/model/weights/height/ (about
# 52 min on 2 CPU cores: ~1 min making the 3000 synthetic images with 2 processes, 45 min of
# optimisation (torch.compile; 13,144 steps in the shipped run), ~1 min export, ~3 min
# calibration). A U-Net 16-32-64-128 (482 k parameters), a quarter of the crops real.
# The shipped default hands height maps in nm to it (its config.json: "height_model").
# Usage: scripts/train_height.sh [RUN_DIR]   (default build/train-height, git-ignored)
set -euo pipefail
cd "$(dirname "$0")/.."
WIDTH=16 MINUTES=45 EXTRA="--pool-first --compile" DEST=src/particlesnn/model/weights/height \
  SET=name=particlesnn-unet-height exec scripts/train_model.sh "${1:-build/train-height}"
