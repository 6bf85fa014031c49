"""Synthetic microscope images with exact ground truth (``particlesnn.synth``).

The core call, used by the detector's training loop (fast, pure, deterministic)::

    from particlesnn.synth import generate
    si = generate("stm-mixed", rng=7)          # or generate(SynthParams(...), rng)
    si.height      # HeightMap, nm, pixel_size nm/px
    si.labels      # int32 instance labels, 0 = background
    si.particles   # truth table (pandas DataFrame), row k-1 = label k
    si.image       # float32 observation (height for STM, intensity for TEM/SEM/...)

Modules: :mod:`~particlesnn.synth.params` (parameters, units, ranges),
:mod:`~particlesnn.synth.substrate` (HOPG), :mod:`~particlesnn.synth.particles`,
:mod:`~particlesnn.synth.tip` (tip dilation), :mod:`~particlesnn.synth.instrument` (scan
artefacts), :mod:`~particlesnn.synth.truth` (footprints), :mod:`~particlesnn.synth.render`
(other modalities, palettes, overlays), :mod:`~particlesnn.synth.presets`,
:mod:`~particlesnn.synth.dataset` (writing sets).
"""
from particlesnn.synth.generate import TRUTH_COLUMNS, SynthImage, generate
from particlesnn.synth.params import (InstrumentParams, OpticsParams, OverlayParams,
                                      ParticleParams, SubstrateParams, SynthParams, TipParams)
from particlesnn.synth.presets import PRESETS

__all__ = [
    "generate", "SynthImage", "SynthParams", "SubstrateParams", "ParticleParams", "TipParams",
    "InstrumentParams", "OpticsParams", "OverlayParams", "PRESETS", "TRUTH_COLUMNS",
]
