#!/usr/bin/env bash
# Reproduces the shipped default detector src/particlesnn/model/weights/default/ (plain images:
# TEM/STEM, SEM, fluorescence), about 50 min on 2 CPU cores: ~1 min making 3000 synthetic images,
# 42 min of optimisation (torch.compile; 12,660 steps in the shipped run), ~1 min export, ~6 min
# calibration. A U-Net 16-32-64-128 (482 k parameters) with half of the crops from the real
# training parts (--real-fraction 0.5; the other models: 0.25).
# Its config.json links the other shipped models: height maps in nm go to "height"
# (scripts/train_height.sh), images the profile switch finds textured (HAADF-STEM) to "textured"
# (scripts/train_textured.sh), which must be in place first (the switch is calibrated with it).
# Usage: scripts/train_default.sh [RUN_DIR]   (default build/train-default, git-ignored)
set -euo pipefail
cd "$(dirname "$0")/.."
WIDTH=16 MINUTES=42 EXTRA="--pool-first --compile --real-fraction 0.5" \
  DEST=src/particlesnn/model/weights/default \
  SET="name=particlesnn-unet-plain height_model=height textured_model=textured" \
  exec scripts/train_model.sh "${1:-build/train-default}"
